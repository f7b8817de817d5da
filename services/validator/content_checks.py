"""The content half of an upload's checks, once all its bytes are spooled: the type by
libmagic against the kind's allowlist, then the kind's deep checks, which also write
the normalised safe copy to the upload's partial file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from libs.common import tracing
from services.validator import audio, images, policy
from services.validator.audio_prestart import PrestartedDecode
from services.validator.config import ValidatorSettings
from services.validator.decode_workers import DecodeWorkers
from services.validator.filetype import check_type, detect_mime
from services.validator.safe_copies import SafeCopy
from services.validator.timings import PhaseTimings
from vidsynth.v1 import common_pb2, validator_pb2


@dataclass(frozen=True)
class CopyTarget:
    """Where an upload's safe copy is written (removed by the caller unless published),
    and, for a voice, the ffmpeg that may have been started for it while it arrived."""

    partial: Path
    early: PrestartedDecode | None = None


async def check_content(
    header: validator_pb2.UploadHeader,
    path: Path,
    report: common_pb2.ValidationReport,
    settings: ValidatorSettings,
    timings: PhaseTimings,
    target: CopyTarget,
    workers: DecodeWorkers,
) -> SafeCopy:
    """Type, then the kind's checks; fills `report` and returns the safe copy."""
    with tracing.span("check type") as type_check:
        with timings.phase("magic"):
            report.detected_type = await asyncio.to_thread(detect_mime, path)
        type_check.set_attribute("vidsynth.upload.detected_type", report.detected_type)
        allowed = check_type(header.kind, report.detected_type, header.original_filename, header.content_type)
    report.checks.add(name="type", passed=True, detail=allowed.canonical)
    if header.kind == policy.FACE:
        return await check_face(path, report, timings, target, workers)
    return await check_voice(path, target, report, settings, timings)


async def check_face(
    path: Path,
    report: common_pb2.ValidationReport,
    timings: PhaseTimings,
    target: CopyTarget,
    workers: DecodeWorkers,
) -> SafeCopy:
    # Decode, detection and re-encode all happen in a worker process with capped CPU
    # and memory, killed if the upload is abandoned.
    with timings.phase("image_worker"), tracing.span("check image"):
        photo = await workers.decode_face(path, report.detected_type, target.partial)
    report.width, report.height = photo.width, photo.height
    report.checks.add(name="image", passed=True, detail=f"{photo.width}x{photo.height} decoded")
    box = photo.box
    report.face_box.CopyFrom(common_pb2.FaceBox(x=box.x, y=box.y, width=box.width, height=box.height))
    report.checks.add(name="face", passed=True, detail="exactly one face")
    return SafeCopy(target.partial, images.SAFE_COPY_SUFFIX, images.SAFE_COPY_CONTENT_TYPE, photo.sha256)


async def check_voice(
    path: Path,
    target: CopyTarget,
    report: common_pb2.ValidationReport,
    settings: ValidatorSettings,
    timings: PhaseTimings,
) -> SafeCopy:
    with timings.phase("audio"), tracing.span("check audio"):
        facts = await audio.inspect_audio(path, report.detected_type, target.partial, settings, target.early)
    report.duration_seconds = facts.duration_seconds
    report.sample_rate, report.channels = facts.sample_rate, facts.channels
    report.checks.add(name="audio", passed=True, detail=f"{facts.duration_seconds:.2f} s decoded")
    report.checks.add(name="loudness", passed=True, detail=f"{facts.rms_dbfs:.1f} dBFS RMS")
    return SafeCopy(
        target.partial, audio.SAFE_COPY_SUFFIX, audio.SAFE_COPY_CONTENT_TYPE, facts.safe_copy_sha256
    )
