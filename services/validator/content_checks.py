"""The content half of an upload's checks, once all its bytes are spooled: the type by
libmagic against the kind's allowlist, then the kind's deep checks, which also produce
the normalised safe copy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.validator import audio, faces, images, policy
from services.validator.audio_prestart import PrestartedDecode
from services.validator.config import ValidatorSettings
from services.validator.filetype import check_type, detect_mime
from services.validator.safe_copies import SafeCopy
from services.validator.timings import PhaseTimings
from vidsynth.v1 import common_pb2, validator_pb2


@dataclass(frozen=True)
class VoiceOutput:
    """Where a voice upload's safe copy is written, and the ffmpeg that may have been
    started for it while the upload arrived."""

    partial: Path
    early: PrestartedDecode | None = None


async def check_content(
    header: validator_pb2.UploadHeader,
    path: Path,
    report: common_pb2.ValidationReport,
    settings: ValidatorSettings,
    timings: PhaseTimings,
    voice: VoiceOutput | None,
) -> SafeCopy:
    """Type, then the kind's checks; fills `report` and returns the safe copy."""
    with timings.phase("magic"):
        report.detected_type = await asyncio.to_thread(detect_mime, path)
    allowed = check_type(header.kind, report.detected_type, header.original_filename, header.content_type)
    report.checks.add(name="type", passed=True, detail=allowed.canonical)
    if header.kind == policy.FACE:
        return await check_face(path, report, settings, timings)
    if voice is None:
        raise RuntimeError("a voice upload needs a place for its safe copy")
    return await check_voice(path, voice, report, settings, timings)


async def check_face(
    path: Path, report: common_pb2.ValidationReport, settings: ValidatorSettings, timings: PhaseTimings
) -> SafeCopy:
    # One full decode; the same pixels serve the detector and the re-encode.
    with timings.phase("image_decode"):
        image = await asyncio.to_thread(images.decode_image, path, report.detected_type, settings)
    report.width, report.height = image.width, image.height
    report.checks.add(name="image", passed=True, detail=f"{image.width}x{image.height} decoded")
    # Both release the GIL in C: detect and re-encode side by side.
    with timings.phase("faces_and_encode"):
        box, (encoded, sha256) = await asyncio.gather(
            asyncio.to_thread(faces.single_face, image, settings.validator_face_min_size_ratio),
            asyncio.to_thread(images.encode_safe_copy, image),
        )
    report.face_box.CopyFrom(common_pb2.FaceBox(x=box.x, y=box.y, width=box.width, height=box.height))
    report.checks.add(name="face", passed=True, detail="exactly one face")
    return SafeCopy(encoded, images.SAFE_COPY_SUFFIX, images.SAFE_COPY_CONTENT_TYPE, sha256)


async def check_voice(
    path: Path,
    voice: VoiceOutput,
    report: common_pb2.ValidationReport,
    settings: ValidatorSettings,
    timings: PhaseTimings,
) -> SafeCopy:
    with timings.phase("audio"):
        facts = await audio.inspect_audio(path, report.detected_type, voice.partial, settings, voice.early)
    report.duration_seconds = facts.duration_seconds
    report.sample_rate, report.channels = facts.sample_rate, facts.channels
    report.checks.add(name="audio", passed=True, detail=f"{facts.duration_seconds:.2f} s decoded")
    report.checks.add(name="loudness", passed=True, detail=f"{facts.rms_dbfs:.1f} dBFS RMS")
    return SafeCopy(
        voice.partial, audio.SAFE_COPY_SUFFIX, audio.SAFE_COPY_CONTENT_TYPE, facts.safe_copy_sha256
    )
