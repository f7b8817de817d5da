"""ValidatorService RPC handlers: thin adapters over the upload pipeline, the
published policy and the quarantine listing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import grpc

from libs.common.errors import VidsynthError
from libs.common.identity import require_identity
from libs.common.metrics import UPLOAD_REJECTIONS
from services.validator import quarantine
from services.validator.admission import UploadSlots
from services.validator.config import ValidatorSettings
from services.validator.pacing import TransferPace
from services.validator.policy import upload_policy
from services.validator.scanner import ClamdScanner
from services.validator.uploads import UploadValidator
from vidsynth.v1 import validator_pb2, validator_pb2_grpc

# After refusing mid-stream, keep reading (and dropping) what the client still sends, up
# to these bounds, before answering: ending the call while the client is mid-write can
# surface on its side as a bare INTERNAL instead of the refusal (a gRPC core race). A
# client that pauses between messages is not mid-write: a trickle is answered at once.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_SECONDS = 10.0
DRAIN_GAP_SECONDS = 1.0


class RequestStream:
    """The chunks after the header, paced (see pacing.py), and whether the client has
    finished sending."""

    def __init__(
        self, requests: AsyncIterator[validator_pb2.ValidateUploadRequest], pace: TransferPace
    ) -> None:
        self._requests = requests
        self.pace = pace
        self.exhausted = False

    async def next(self) -> validator_pb2.ValidateUploadRequest | None:
        """The next message; DEADLINE_EXCEEDED when the client stalls, UPLOAD_TOO_SLOW when
        it trickles (slow drip) or takes too long in all."""
        limit, bound = self.pace.next_wait()
        if limit <= 0:
            raise self.pace.refusal(bound)
        try:
            async with asyncio.timeout(limit):
                request = await anext(self._requests, None)
        except TimeoutError:
            raise self.pace.refusal(bound) from None
        if request is not None:
            self.pace.record(request.ByteSize())
        return request

    async def chunks(self) -> AsyncIterator[bytes]:
        while (request := await self.next()) is not None:
            if request.WhichOneof("payload") != "chunk":
                raise VidsynthError("INVALID_ARGUMENT", "Only the first message may be the header.")
            yield request.chunk
        self.exhausted = True

    async def drain(self) -> None:
        if self.exhausted:
            return
        dropped = 0
        with contextlib.suppress(TimeoutError, grpc.RpcError, asyncio.CancelledError):
            async with asyncio.timeout(DRAIN_MAX_SECONDS):
                while (
                    request := await asyncio.wait_for(anext(self._requests, None), DRAIN_GAP_SECONDS)
                ) is not None:
                    dropped += request.ByteSize()
                    if dropped > DRAIN_MAX_BYTES:
                        return


def _entry(record: quarantine.QuarantineRecord) -> validator_pb2.QuarantineEntry:
    entry = validator_pb2.QuarantineEntry(
        quarantine_id=record.quarantine_id,
        session_id=record.session_id,
        user_id=record.user_id,
        original_filename=record.original_filename,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        signature=record.signature,
        reason_code=record.reason_code,
    )
    entry.create_time.FromDatetime(datetime.fromisoformat(record.create_time))
    return entry


class ValidatorService(validator_pb2_grpc.ValidatorServiceServicer):
    def __init__(
        self,
        settings: ValidatorSettings,
        uploads: UploadValidator,
        scanner: ClamdScanner | None,
        quarantine_root: Path,
    ) -> None:
        self._settings = settings
        self._uploads = uploads
        self._scanner = scanner
        self._quarantine_root = quarantine_root
        self._slots = UploadSlots(
            settings.validator_max_concurrent_uploads, settings.validator_max_concurrent_uploads_per_user
        )

    def _pace(self) -> TransferPace:
        settings = self._settings
        return TransferPace(
            idle_seconds=settings.validator_upload_idle_seconds,
            min_bytes_per_second=settings.validator_upload_min_bytes_per_second,
            grace_seconds=settings.validator_upload_rate_grace_seconds,
            max_seconds=settings.validator_upload_max_seconds,
        )

    async def ValidateUpload(self, request_iterator, context) -> validator_pb2.ValidateUploadResponse:
        identity = require_identity()
        stream = RequestStream(aiter(request_iterator), self._pace())
        try:
            # The slot is given back before any draining below: a refused client's
            # leftovers never hold one.
            with self._slots.hold(identity.user_id):
                first = await stream.next()
                if first is None or first.WhichOneof("payload") != "header":
                    raise VidsynthError("INVALID_ARGUMENT", "The first message must be the upload header.")
                return await self._uploads.validate(identity, first.header, stream.chunks())
        except VidsynthError as error:
            UPLOAD_REJECTIONS.labels(error.code).inc()
            await stream.drain()
            raise

    async def GetUploadPolicy(self, request, context) -> validator_pb2.UploadPolicy:
        available, signature_db = await self._scanner.status() if self._scanner else (False, "")
        return upload_policy(self._settings, scanner_available=available, signature_db=signature_db)

    async def ListQuarantine(self, request, context) -> validator_pb2.ListQuarantineResponse:
        records, next_token = await asyncio.to_thread(
            quarantine.list_records, self._quarantine_root, request.page_size, request.page_token
        )
        return validator_pb2.ListQuarantineResponse(
            entries=[_entry(r) for r in records], next_page_token=next_token
        )
