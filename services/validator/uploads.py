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

from libs.common.clients import MeshClients
from libs.common.errors import FieldViolation, VidsynthError
from libs.common.identity import Identity
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import SessionPaths, session_paths
from services.validator import audio, faces, images, policy, quarantine, safe_copies
from services.validator.config import ValidatorSettings
from services.validator.filenames import check_filename
from services.validator.filetype import check_type, detect_mime
from services.validator.scanner import ClamdScanner, ScannerUnavailable, ScanVerdict, StreamingScan
from services.validator.spool import Spool
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
    if header.declared_size > policy.max_bytes(settings, header.kind):
        raise VidsynthError("FILE_TOO_LARGE")


class UploadValidator:
    def __init__(
        self,
        settings: ValidatorSettings,
        sessions_dir: Path,
        quarantine_root: Path,
        clients: MeshClients,
        scanner: ClamdScanner | None,
        storage_guard: StorageGuard | None = None,
    ) -> None:
        self.settings = settings
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
        check_header(header, self.settings)
        paths = session_paths(self.sessions_dir, header.session_id)
        session = await self._owned_session(header.session_id)
        structlog.contextvars.bind_contextvars(session_id=header.session_id)
        if self.storage_guard is not None:
            await self.storage_guard()
        await asyncio.to_thread(paths.create)
        scan = await self._open_scan()
        try:
            return await self._check_and_store(identity, header, chunks, session, paths, scan)
        finally:
            if scan.stream is not None:
                scan.stream.abort()  # no-op once the verdict is in

    async def _check_and_store(
        self,
        identity: Identity,
        header: validator_pb2.UploadHeader,
        chunks: AsyncIterator[bytes],
        session: session_pb2.Session,
        paths: SessionPaths,
        scan: ScanState,
    ) -> validator_pb2.ValidateUploadResponse:
        started = time.perf_counter()
        async with Spool(paths.root, policy.max_bytes(self.settings, header.kind)) as spool:
            async for chunk in chunks:
                await spool.write(chunk)
                if scan.stream is not None:
                    await scan.stream.feed(chunk)
            await spool.finish()
            received_at = time.perf_counter()
            if header.declared_size and header.declared_size != spool.size:
                raise VidsynthError(
                    "FILE_CORRUPT", f"Received {spool.size} bytes but {header.declared_size} were declared."
                )
            verdict = await self._verdict(scan)
            structlog.contextvars.bind_contextvars(
                size=spool.size,
                receive_ms=round((received_at - started) * 1000, 1),
                scan_wait_ms=round((time.perf_counter() - received_at) * 1000, 1),
            )
            report = common_pb2.ValidationReport(
                kind=header.kind, sha256=spool.sha256, size_bytes=spool.size, warnings=scan.warnings
            )
            report.scan.CopyFrom(self._scan_result(scan, verdict))
            if verdict is not None and not verdict.clean:
                await self._quarantine(identity, header, spool, report, verdict)
            report.detected_type = await asyncio.to_thread(detect_mime, spool.path)
            allowed = check_type(
                header.kind, report.detected_type, header.original_filename, header.content_type
            )
            report.checks.add(name="type", passed=True, detail=allowed.canonical)
            if header.kind == policy.FACE:
                partial, suffix, content_type = await self._check_face(spool.path, report)
            else:
                partial, suffix, content_type = await self._check_voice(spool.path, paths.assets, report)
        return await self._store(session, paths.assets, partial, suffix, content_type, report)

    async def _verdict(self, scan: ScanState) -> ScanVerdict | None:
        if scan.stream is None:
            return None
        try:
            return await scan.stream.finish()
        except ScannerUnavailable:
            log.warning("scan.unavailable_midway")
            self._scanner_unreachable(scan)
            return None

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

    async def _check_face(self, path: Path, report: common_pb2.ValidationReport) -> tuple[bytes, str, str]:
        facts = await asyncio.to_thread(images.inspect_image, path, report.detected_type, self.settings)
        report.width, report.height = facts.width, facts.height
        report.checks.add(name="image", passed=True, detail=f"{facts.width}x{facts.height} decoded")
        # Both release the GIL in C: detect and re-encode side by side.
        box, encoded = await asyncio.gather(
            asyncio.to_thread(faces.single_face, facts.image, self.settings.validator_face_min_size_ratio),
            asyncio.to_thread(images.encode_safe_copy, facts.image),
        )
        report.face_box.CopyFrom(common_pb2.FaceBox(x=box.x, y=box.y, width=box.width, height=box.height))
        report.checks.add(name="face", passed=True, detail="exactly one face")
        return encoded, images.SAFE_COPY_SUFFIX, images.SAFE_COPY_CONTENT_TYPE

    async def _check_voice(
        self, path: Path, assets_dir: Path, report: common_pb2.ValidationReport
    ) -> tuple[Path, str, str]:
        partial = safe_copies.partial_path(assets_dir, audio.SAFE_COPY_SUFFIX)
        try:
            facts = await audio.inspect_audio(path, report.detected_type, partial, self.settings)
        except BaseException:
            await asyncio.to_thread(safe_copies.discard, partial)
            raise
        report.duration_seconds = facts.duration_seconds
        report.sample_rate, report.channels = facts.sample_rate, facts.channels
        report.checks.add(name="audio", passed=True, detail=f"{facts.duration_seconds:.2f} s decoded")
        report.checks.add(name="loudness", passed=True, detail=f"{facts.rms_dbfs:.1f} dBFS RMS")
        return partial, audio.SAFE_COPY_SUFFIX, audio.SAFE_COPY_CONTENT_TYPE

    async def _store(
        self,
        session: session_pb2.Session,
        assets_dir: Path,
        safe_copy: bytes | Path,
        suffix: str,
        content_type: str,
        report: common_pb2.ValidationReport,
    ) -> validator_pb2.ValidateUploadResponse:
        """Publishes the safe copy, registers it, then drops the asset it replaces."""
        partial = (
            safe_copy
            if isinstance(safe_copy, Path)
            else await asyncio.to_thread(safe_copies.write_partial, assets_dir, safe_copy, suffix)
        )
        try:
            stored = await asyncio.to_thread(safe_copies.publish, partial, suffix)
        except BaseException:
            await asyncio.to_thread(safe_copies.discard, partial)
            raise
        report.accepted = True
        asset = common_pb2.Asset(
            asset_id=stored.asset_id,
            kind=report.kind,
            stored_name=stored.stored_name,
            content_type=content_type,
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            report=report,
        )
        asset.create_time.GetCurrentTime()
        try:
            await self.clients.session.RegisterAsset(
                session_pb2.RegisterAssetRequest(session_id=session.session_id, asset=asset)
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
        log.info("upload.accepted", asset_id=stored.asset_id, kind=policy.KIND_NAMES[report.kind])
        return validator_pb2.ValidateUploadResponse(asset=asset, report=report)
