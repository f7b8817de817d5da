"""One upload from header to registered asset: ownership, streaming spool and scan,
type and content checks, quarantine or safe copy, registration on the session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

from libs.common import tracing
from libs.common.asset_kinds import KIND_NAMES
from libs.common.clients import MeshClients
from libs.common.errors import FieldViolation, VidsynthError
from libs.common.identity import Identity
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import SessionPaths, session_paths
from services.validator import audio, images, policy, quarantine, safe_copies, storage
from services.validator.audio_prestart import PrestartedDecode
from services.validator.config import ValidatorSettings
from services.validator.content_checks import CopyTarget, check_content
from services.validator.decode_workers import DecodeWorkers
from services.validator.filenames import check_filename
from services.validator.filetype import detect_mime
from services.validator.scanner import ClamdScanner, ScannerUnavailable, ScanVerdict, StreamingScan
from services.validator.spool import Spool
from services.validator.timings import PhaseTimings
from vidsynth.internal.v1 import session_internal_pb2
from vidsynth.v1 import common_pb2, session_pb2, validator_pb2

log = structlog.get_logger("vidsynth.validator")

# Awaited before any byte is accepted; raises INSUFFICIENT_STORAGE when the disk is
# short (e.g. `libs.common.backpressure.ResourceGate.check_upload`, wired in `build`).
StorageGuard = Callable[[], Awaitable[None]]


@dataclass
class ScanState:
    scanner: ClamdScanner | None
    signature_db: str = ""
    stream: StreamingScan | None = None
    warnings: list[str] = field(default_factory=list)
    # The scan runs while the bytes arrive: its span starts with the stream.
    started_ns: int = field(default_factory=time.time_ns)


def check_header(header: validator_pb2.UploadHeader, settings: ValidatorSettings) -> None:
    """Everything about the header that can be refused before touching the session."""
    if header.kind not in policy.ALLOWED_TYPES:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            "kind must be FACE_IMAGE or VOICE_AUDIO.",
            [FieldViolation("kind", "must be ASSET_KIND_FACE_IMAGE or ASSET_KIND_VOICE_AUDIO")],
        )
    check_filename(header.original_filename)
    if header.declared_size < 0:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            "declared_size must not be negative.",
            [FieldViolation("declared_size", "< 0")],
        )
    limit = policy.max_bytes(settings, header.kind)
    if header.declared_size > limit:
        raise VidsynthError(
            "FILE_TOO_LARGE",
            metadata={"declared_size": str(header.declared_size), "limit_bytes": str(limit)},
        )


class UploadValidator:
    def __init__(
        self,
        settings: ValidatorSettings,
        sessions_dir: Path,
        quarantine_root: Path,
        clients: MeshClients,
        scanner: ClamdScanner | None,
        workers: DecodeWorkers,
        storage_guard: StorageGuard | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.sessions_dir = sessions_dir
        self.quarantine_root = quarantine_root
        self.clients = clients
        self.scanner = scanner
        self.storage_guard = storage_guard

    async def _owned_session(self, session_id: str) -> session_pb2.Session:
        """The caller's session (the identity travels with the call), or its catalogued refusal."""
        try:
            return await self.clients.session.GetSession(session_pb2.GetSessionRequest(session_id=session_id))
        except grpc.RpcError as exc:
            raise error_from_rpc_error(exc) from None

    async def _open_scan(self) -> ScanState:
        state = ScanState(self.scanner)
        available, state.signature_db = await self.scanner.status() if self.scanner else (False, "")
        if available:
            state.stream = self.scanner.start_stream()
        else:
            self._scanner_unreachable(state)
        return state

    def _scanner_unreachable(self, state: ScanState) -> None:
        if self.settings.validator_scan_policy == "required":
            raise VidsynthError("SCAN_UNAVAILABLE", retry_after_seconds=30)
        state.scanner = None
        state.warnings.append("The virus scanner was unavailable; the file was not scanned for malware.")

    async def validate(
        self,
        identity: Identity,
        header: validator_pb2.UploadHeader,
        chunks: AsyncIterator[bytes],
    ) -> validator_pb2.ValidateUploadResponse:
        try:
            return await self._validate(identity, header, chunks)
        except OSError as error:
            # A full disk anywhere on the way (spool, safe copy, quarantine): a retryable
            # refusal; every partial file is already gone by the time it gets here.
            if storage.out_of_space(error):
                log.warning("upload.disk_full", error=str(error))
                raise storage.insufficient_storage() from None
            raise

    async def _validate(
        self,
        identity: Identity,
        header: validator_pb2.UploadHeader,
        chunks: AsyncIterator[bytes],
    ) -> validator_pb2.ValidateUploadResponse:
        timings = PhaseTimings()
        check_header(header, self.settings)
        paths = session_paths(self.sessions_dir, header.session_id)
        with timings.phase("session"):
            session = await self._owned_session(header.session_id)
        structlog.contextvars.bind_contextvars(session_id=header.session_id)
        with timings.phase("storage_guard"):
            if self.storage_guard is not None:
                await self.storage_guard()
            await asyncio.to_thread(paths.create)
        with timings.phase("scan_open"):
            scan = await self._open_scan()
        try:
            return await self._check_and_store(identity, header, chunks, session, paths, scan, timings)
        finally:
            if scan.stream is not None:
                scan.stream.abort()  # no-op once the verdict is in
            timings.log()

    async def _check_and_store(
        self,
        identity: Identity,
        header: validator_pb2.UploadHeader,
        chunks: AsyncIterator[bytes],
        session: session_pb2.Session,
        paths: SessionPaths,
        scan: ScanState,
        timings: PhaseTimings,
    ) -> validator_pb2.ValidateUploadResponse:
        target = self._copy_target(header, paths)
        try:
            async with Spool(paths.root, policy.max_bytes(self.settings, header.kind)) as spool:
                await self._receive(chunks, spool, scan, target, timings)
                if header.declared_size and header.declared_size != spool.size:
                    raise VidsynthError(
                        "FILE_CORRUPT",
                        f"Received {spool.size} bytes but {header.declared_size} were declared.",
                    )
                report = common_pb2.ValidationReport(
                    kind=header.kind, sha256=spool.sha256, size_bytes=spool.size
                )
                # clamd works through the tail of the stream while the content is checked
                # (both only read the spool); a bad verdict outranks whatever the checks found.
                verdict, checked = await asyncio.gather(
                    timings.timed("scan_verdict", self._verdict(scan)),
                    timings.timed(
                        "content",
                        check_content(
                            header, spool.path, report, self.settings, timings, target, self.workers
                        ),
                    ),
                    return_exceptions=True,
                )
                if isinstance(verdict, BaseException):
                    raise verdict
                report.warnings.extend(scan.warnings)
                report.scan.CopyFrom(self._scan_result(scan, verdict))
                if verdict is not None and not verdict.clean:
                    await self._quarantine(identity, header, spool, report, verdict)
                if isinstance(checked, BaseException):
                    raise checked
            return await self._store(session, paths.assets, checked, report, timings)
        except BaseException:
            # Refused or cancelled: no decoder keeps writing, no safe copy stays behind.
            if target.early is not None:
                await target.early.abort()
            await asyncio.to_thread(safe_copies.discard, target.partial)
            raise

    def _copy_target(self, header: validator_pb2.UploadHeader, paths: SessionPaths) -> CopyTarget:
        if header.kind == policy.FACE:
            return CopyTarget(safe_copies.partial_path(paths.assets, images.SAFE_COPY_SUFFIX))
        partial = safe_copies.partial_path(paths.assets, audio.SAFE_COPY_SUFFIX)
        return CopyTarget(partial, PrestartedDecode(partial, self.settings.validator_audio_max_seconds))

    async def _receive(
        self,
        chunks: AsyncIterator[bytes],
        spool: Spool,
        scan: ScanState,
        target: CopyTarget,
        timings: PhaseTimings,
    ) -> None:
        """Spools, hashes, scans and (voice) starts decoding each chunk as it arrives."""
        started = waited = time.perf_counter()
        async for chunk in chunks:
            timings.add("recv_wait", time.perf_counter() - waited)
            with timings.phase("spool_write"):
                await spool.write(chunk)
            with timings.phase("scan_feed"):
                if scan.stream is not None:
                    await scan.stream.feed(chunk)
            if target.early is not None:
                with timings.phase("decode_prestart"):
                    await target.early.observe(chunk)
            waited = time.perf_counter()
        timings.add("recv_wait", time.perf_counter() - waited)
        await spool.finish()
        structlog.contextvars.bind_contextvars(
            size=spool.size, receive_ms=round((time.perf_counter() - started) * 1000, 1)
        )

    async def _verdict(self, scan: ScanState) -> ScanVerdict | None:
        if scan.stream is None:
            return None
        with tracing.span("check scan", start_time=scan.started_ns) as check:
            try:
                verdict = await scan.stream.finish()
            except ScannerUnavailable:
                log.warning("scan.unavailable_midway")
                self._scanner_unreachable(scan)
                check.set_attribute("vidsynth.scan.scanned", False)
                return None
            check.set_attributes({"vidsynth.scan.scanned": True, "vidsynth.scan.clean": verdict.clean})
            return verdict

    @staticmethod
    def _scan_result(scan: ScanState, verdict: ScanVerdict | None) -> common_pb2.ScanResult:
        if verdict is None:
            return common_pb2.ScanResult(engine="none", scanned=False, clean=False)
        return common_pb2.ScanResult(
            engine="clamd",
            signature_db=scan.signature_db,
            scanned=True,
            clean=verdict.clean,
            signature=verdict.signature,
        )

    async def _quarantine(
        self,
        identity: Identity,
        header: validator_pb2.UploadHeader,
        spool: Spool,
        report: common_pb2.ValidationReport,
        verdict: ScanVerdict,
    ) -> None:
        code = "MALWARE_DETECTED" if verdict.signature else "SCAN_FAILED"
        detected = await asyncio.to_thread(detect_mime, spool.path)
        record = quarantine.new_record(
            session_id=header.session_id,
            user_id=identity.user_id,
            original_filename=header.original_filename,
            declared_content_type=header.content_type,
            detected_type=detected,
            sha256=report.sha256,
            size_bytes=report.size_bytes,
            signature=verdict.signature or verdict.error,
            reason_code=code,
        )
        await asyncio.to_thread(quarantine.quarantine, self.quarantine_root, spool.path, record)
        log.warning("upload.quarantined", code=code, signature=record.signature, sha256=record.sha256)
        if code == "MALWARE_DETECTED":
            raise VidsynthError("MALWARE_DETECTED", metadata={"quarantine_id": record.quarantine_id})
        raise VidsynthError("SCAN_FAILED", f"The virus scanner could not check this file ({verdict.error}).")

    async def _store(
        self,
        session: session_pb2.Session,
        assets_dir: Path,
        safe_copy: safe_copies.SafeCopy,
        report: common_pb2.ValidationReport,
        timings: PhaseTimings,
    ) -> validator_pb2.ValidateUploadResponse:
        """Publishes the safe copy, registers it, then drops the asset it replaces."""
        partial = safe_copy.partial
        try:
            with timings.phase("copy_publish"), tracing.span("store safe copy"):
                stored = await asyncio.to_thread(
                    safe_copies.publish, partial, safe_copy.suffix, safe_copy.sha256
                )
        except BaseException:
            await asyncio.to_thread(safe_copies.discard, partial)
            raise
        report.accepted = True
        asset = common_pb2.Asset(
            asset_id=stored.asset_id,
            kind=report.kind,
            stored_name=stored.stored_name,
            content_type=safe_copy.content_type,
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            report=report,
        )
        asset.create_time.GetCurrentTime()
        try:
            with timings.phase("register"):
                await self.clients.session_internal.RegisterAsset(
                    session_internal_pb2.RegisterAssetRequest(session_id=session.session_id, asset=asset)
                )
        except grpc.RpcError as exc:
            await asyncio.to_thread(safe_copies.remove, assets_dir, stored.stored_name)
            raise error_from_rpc_error(exc) from None
        replaced = [
            a.stored_name
            for a in session.assets
            if a.kind == report.kind and a.stored_name != stored.stored_name
        ]
        for name in replaced:
            await asyncio.to_thread(safe_copies.remove, assets_dir, name)
        log.info("upload.accepted", asset_id=stored.asset_id, kind=KIND_NAMES[report.kind])
        return validator_pb2.ValidateUploadResponse(asset=asset, report=report)
