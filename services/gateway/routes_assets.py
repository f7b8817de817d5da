"""Uploads: `POST /v1/sessions/{session_id}/assets/{kind}` streams a multipart field
`file` (or a raw body) into ValidatorService.ValidateUpload chunk by chunk, never
holding the whole file; `GET /v1/upload-policy` publishes the limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import grpc
from fastapi import APIRouter, Query, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from libs.common.errors import FieldViolation, VidsynthError
from services.gateway import api_models as m
from services.gateway.api_enums import AssetKind
from services.gateway.auth import CurrentUser
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.state import gateway_state
from services.gateway.views import ASSET_KIND_VALUES, upload_policy_view, upload_view
from vidsynth.v1 import validator_pb2

router = APIRouter(tags=["assets"], route_class=ContractRoute)

# Multipart framing (boundaries, part headers, small extra fields) on top of the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
FILE_FIELD = "file"
# Longest a partial chunk waits for more bytes before it goes to the validator.
MAX_HOLD_SECONDS = 5.0


async def upload_limits(request: Request) -> validator_pb2.UploadPolicy:
    """The validator's published policy, cached briefly on the app."""
    state = gateway_state(request.app)
    policy = state.upload_policy.fresh()
    if policy is None:
        policy = await state.clients.validator.GetUploadPolicy(validator_pb2.GetUploadPolicyRequest())
        state.upload_policy.keep(policy)
    return policy


def _cap(policy: validator_pb2.UploadPolicy, kind: int) -> int:
    return next(k.max_bytes for k in policy.kinds if k.kind == kind)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise VidsynthError("INVALID_ARGUMENT", "Content-Length is not a number.")
    return int(value)


class Rechunker:
    """Joins the small pieces HTTP delivers into messages of about `size` bytes; a slow
    client's bytes are sent on after `max_hold_seconds` anyway, so the validator's idle
    timeout measures the client, not this buffer."""

    def __init__(self, size: int, max_hold_seconds: float = MAX_HOLD_SECONDS) -> None:
        self.size = size
        self.max_hold_seconds = max_hold_seconds
        self._parts: list[bytes] = []
        self._buffered = 0
        self._since = 0.0

    def add(self, data: bytes) -> bytes | None:
        if not self._parts:
            self._since = time.monotonic()
        self._parts.append(data)
        self._buffered += len(data)
        held_too_long = time.monotonic() - self._since >= self.max_hold_seconds
        return self.flush() if self._buffered >= self.size or held_too_long else None

    def flush(self) -> bytes | None:
        if not self._buffered:
            return None
        joined = b"".join(self._parts)
        self._parts, self._buffered = [], 0
        return joined


class MultipartFile:
    """Streaming multipart parser that surfaces only the `file` field's bytes."""

    def __init__(self, boundary: bytes) -> None:
        self.filename = ""
        self.content_type = ""
        self.found = False
        self.complete = False
        self._in_file = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._out: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._append_field(d[s:e]),
                "on_header_value": lambda d, s, e: self._append_value(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}

    def _append_field(self, data: bytes) -> None:
        self._header_field += data

    def _append_value(self, data: bytes) -> None:
        self._header_value += data

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == FILE_FIELD.encode() and not self.found:
            self.found = self._in_file = True
            # Not UTF-8: replaced, never smuggled on as surrogates nothing downstream can encode.
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.content_type = self._headers.get(b"content-type", b"").decode("latin-1").strip()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.complete = True

    def feed(self, data: bytes) -> list[bytes]:
        """The file bytes contained in `data` (possibly none)."""
        try:
            self._parser.write(data)
        except Exception as exc:  # python-multipart raises its own error types
            raise VidsynthError("INVALID_ARGUMENT", "The multipart body is malformed.") from exc
        out, self._out = self._out, []
        return out


@dataclass
class UploadSource:
    """The file's bytes and what the client called it, from either body shape."""

    filename: str
    content_type: str
    pending: list[bytes]
    body: AsyncIterator[bytes]
    multipart: MultipartFile | None

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pending:
            yield piece
        async for data in self.body:
            if self.multipart is None:
                yield data
                continue
            for piece in self.multipart.feed(data):
                yield piece
        if self.multipart is not None and not self.multipart.complete:
            raise VidsynthError("INVALID_ARGUMENT", "The multipart body ended before the file did.")


async def _counted(body: AsyncIterator[bytes], limit: int, idle_seconds: float) -> AsyncIterator[bytes]:
    """The body, refused once it passes `limit` bytes (a body without Content-Length) or
    when the client sends nothing for `idle_seconds` (a slow drip holding resources)."""
    received = 0
    pieces = aiter(body)
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                data = await anext(pieces, None)
        except TimeoutError:
            raise VidsynthError(
                "DEADLINE_EXCEEDED", f"The upload stalled: nothing arrived for {idle_seconds:g} s."
            ) from None
        if data is None:
            return
        received += len(data)
        if received > limit:
            raise VidsynthError("FILE_TOO_LARGE")
        yield data


async def open_source(request: Request, limit: int, filename: str = "") -> UploadSource:
    """Reads just far enough to know the file's name and type (multipart headers)."""
    content_type = request.headers.get("content-type", "")
    body = _counted(
        request.stream(), limit, gateway_state(request.app).gateway_settings.gateway_upload_idle_seconds
    )
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        return UploadSource(filename, content_type, [], body, None)
    boundary = options.get(b"boundary")
    if not boundary:
        raise VidsynthError("INVALID_ARGUMENT", "The multipart body has no boundary.")
    parser = MultipartFile(boundary)
    pending: list[bytes] = []
    async for data in body:
        pending.extend(parser.feed(data))
        if parser.found:
            return UploadSource(parser.filename, parser.content_type, pending, body, parser)
    raise VidsynthError(
        "INVALID_ARGUMENT", "The multipart body has no file field.", [FieldViolation(FILE_FIELD, "missing")]
    )


@dataclass
class _StreamFailure:
    error: VidsynthError | None = None
    # Set once the whole body went to the validator: from then on the client only waits.
    body_sent: asyncio.Event = field(default_factory=asyncio.Event)
    call: grpc.aio.StreamUnaryCall | None = None

    def answered(self) -> bool:
        """The validator already ended the call (refused mid-stream): send nothing more. A
        write racing the end of the call fails as a bare INTERNAL instead of the validator's
        refusal (grpc/grpc#36066)."""
        return self.call is not None and self.call.done()


async def _requests(
    header: validator_pb2.UploadHeader, source: UploadSource, chunk_size: int, failure: _StreamFailure
) -> AsyncIterator[validator_pb2.ValidateUploadRequest]:
    yield validator_pb2.ValidateUploadRequest(header=header)
    rechunker = Rechunker(chunk_size)
    try:
        async for data in source.chunks():
            if (ready := rechunker.add(data)) is not None:
                if failure.answered():
                    return
                yield validator_pb2.ValidateUploadRequest(chunk=ready)
    except VidsynthError as error:
        failure.error = error
        raise
    except ClientDisconnect:
        failure.error = VidsynthError("INVALID_ARGUMENT", "The upload was interrupted.")
        raise
    if (rest := rechunker.flush()) is not None:
        yield validator_pb2.ValidateUploadRequest(chunk=rest)
    failure.body_sent.set()


async def _cancel_when_abandoned(request: Request, call: grpc.aio.Call, body_sent: asyncio.Event) -> None:
    """Cancels the validator call when the client hangs up while its upload is being
    checked, so the checks (a photo's decode worker, ffmpeg, clamd) stop at once instead
    of running on for nobody. Once the body is read, the next ASGI message is the
    disconnect."""
    await body_sent.wait()
    while (await request.receive())["type"] != "http.disconnect":
        pass
    call.cancel()


UPLOAD_REFUSALS = (
    "SESSION_NOT_FOUND",
    "SESSION_EXPIRED",
    "INVALID_SESSION_STATE",
    "FILE_TOO_LARGE",
    "FILE_EMPTY",
    "FILE_TYPE_NOT_ALLOWED",
    "FILE_CONTENT_MISMATCH",
    "FILE_CORRUPT",
    "INVALID_FILENAME",
    "IMAGE_TOO_SMALL",
    "IMAGE_TOO_LARGE",
    "IMAGE_TOO_COMPLEX",
    "NO_FACE_DETECTED",
    "MULTIPLE_FACES_DETECTED",
    "AUDIO_TOO_SHORT",
    "AUDIO_TOO_LONG",
    "AUDIO_SILENT",
    "AUDIO_FORMAT_UNSUPPORTED",
    "MALWARE_DETECTED",
    "SCAN_UNAVAILABLE",
    "SCAN_FAILED",
    "INSUFFICIENT_STORAGE",
    "INSUFFICIENT_MEMORY",
    "TOO_MANY_UPLOADS",
    "UPLOAD_TOO_SLOW",
)
_FILE_BYTES = {"type": "string", "format": "binary"}
# Names the validator accepts, conservatively: word characters and common punctuation, and
# not "." or ".." (so: empty, or one character besides dots, or three dots or more).
_NAME_CHAR = r"\w\-()+,@&'~!#$%=\[\]{} "
FILENAME_PATTERN = rf"^(?:[{_NAME_CHAR}.]*[{_NAME_CHAR}][{_NAME_CHAR}.]*|\.{{3,}})?$"
UPLOAD_BODY = {
    "required": True,
    "description": "The file, as multipart field `file` (what browsers send), or as the raw body "
    "(then `?filename=` names it and Content-Type declares its type).",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [FILE_FIELD], "properties": {FILE_FIELD: _FILE_BYTES}}
        },
        "application/octet-stream": {"schema": _FILE_BYTES},
        "image/*": {"schema": _FILE_BYTES},
        "audio/*": {"schema": _FILE_BYTES},
    },
}


@router.post(
    "/v1/sessions/{session_id}/assets/{kind}",
    status_code=201,
    summary="Upload a face photo or voice sample (multipart field `file`, or a raw body)",
    openapi_extra={"requestBody": UPLOAD_BODY, **problems(*UPLOAD_REFUSALS)},
)
async def upload_asset(
    session_id: m.SessionIdPath,
    kind: AssetKind,
    request: Request,
    user: CurrentUser,
    filename: Annotated[
        str,
        Query(
            max_length=255,
            pattern=FILENAME_PATTERN,
            description="The file's name, for a raw body (multipart carries its own): no path, no "
            "control characters.",
        ),
    ] = "",
) -> m.UploadResult:
    asset_kind = ASSET_KIND_VALUES[kind]
    policy = await upload_limits(request)
    cap = _cap(policy, asset_kind)
    length = _content_length(request)
    multipart = request.headers.get("content-type", "").startswith("multipart/")
    if length is not None and length > cap + (MULTIPART_OVERHEAD_BYTES if multipart else 0):
        raise VidsynthError("FILE_TOO_LARGE")
    source = await open_source(request, cap + MULTIPART_OVERHEAD_BYTES, filename)
    header = validator_pb2.UploadHeader(
        session_id=session_id,
        kind=asset_kind,
        original_filename=source.filename,
        declared_size=length if (length is not None and not multipart) else 0,
        content_type=source.content_type,
    )
    failure = _StreamFailure()
    call = failure.call = gateway_state(request.app).clients.validator.ValidateUpload(
        _requests(header, source, policy.chunk_size_bytes, failure)
    )
    watcher = asyncio.ensure_future(_cancel_when_abandoned(request, call, failure.body_sent))
    try:
        response = await call
    except (grpc.RpcError, asyncio.CancelledError):
        if failure.error is not None:
            raise failure.error from None
        if watcher.done() and not watcher.cancelled():
            # Answered to nobody: the client is gone.
            raise VidsynthError("INVALID_ARGUMENT", "The upload was abandoned.") from None
        raise
    finally:
        watcher.cancel()
    return upload_view(response)


@router.get("/v1/upload-policy", summary="Upload limits and accepted types")
async def get_upload_policy(request: Request, user: CurrentUser) -> m.UploadPolicy:
    policy = await gateway_state(request.app).clients.validator.GetUploadPolicy(
        validator_pb2.GetUploadPolicyRequest()
    )
    return upload_policy_view(policy)
