"""ValidatorService settings (env `VIDSYNTH_VALIDATOR_*`), read once at build time."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field

from libs.common.settings import MeshSettings, VidsynthSettings

MB = 1024 * 1024


class ValidatorSettings(VidsynthSettings):
    """Limits and policies of upload validation."""

    validator_face_max_bytes: int = Field(15 * MB, description="Largest face photo accepted, in bytes.")
    validator_voice_max_bytes: int = Field(50 * MB, description="Largest voice sample accepted, in bytes.")
    validator_chunk_bytes: int = Field(
        1 * MB, description="Chunk size clients (and the gateway) should stream uploads in."
    )
    validator_image_min_side: int = Field(128, description="Smallest accepted image width and height (px).")
    validator_image_max_side: int = Field(8192, description="Largest accepted image width and height (px).")
    validator_image_max_pixels: int = Field(
        40_000_000, description="Pixel-bomb guard: most pixels an image header may declare."
    )
    validator_image_max_scans: int = Field(
        64,
        ge=1,
        description="Most scans (SOS markers) a JPEG may hold; encoders write about 10, while a "
        "progressive JPEG that repeats a refinement scan hundreds of times costs minutes to decode.",
    )
    validator_image_max_expansion: float = Field(
        100.0,
        gt=0,
        description="Most decoded bytes per byte of file for an image decoding to more than "
        "`VIDSYNTH_VALIDATOR_IMAGE_EXPANSION_FREE_BYTES` (a tiny file that inflates to hundreds of MB is refused).",
    )
    validator_image_expansion_free_bytes: int = Field(
        64 * MB,
        ge=0,
        description="Images decoding to at most this many bytes are exempt from the expansion limit.",
    )
    validator_decode_cpu_seconds: float = Field(
        4.0,
        gt=0,
        description="CPU time one photo's decode, face detection and re-encode may use (its process "
        "is killed past it: IMAGE_TOO_COMPLEX); a 40 MP photo needs about 1 s.",
    )
    validator_decode_wall_seconds: float = Field(
        10.0,
        gt=0,
        description="Wall-clock deadline of one photo's decode process (IMAGE_TOO_COMPLEX past it).",
    )
    validator_decode_memory_bytes: int = Field(
        1024 * MB,
        ge=64 * MB,
        description="Address space a photo's decode process may add to the decode worker's it is "
        "forked from (a MemoryError past it: IMAGE_TOO_COMPLEX).",
    )
    validator_face_min_size_ratio: float = Field(
        0.08, description="Smallest face the detector looks for, as a fraction of the image's shorter side."
    )
    validator_audio_min_seconds: float = Field(1.0, description="Shortest voice sample accepted (s).")
    validator_audio_max_seconds: float = Field(300.0, description="Longest voice sample accepted (s).")
    validator_audio_min_sample_rate: int = Field(8000, description="Lowest accepted sample rate (Hz).")
    validator_audio_max_channels: int = Field(2, description="Most audio channels accepted.")
    validator_audio_silence_dbfs: float = Field(
        -50.0, description="Audio whose RMS level is below this (dBFS) counts as silent."
    )
    validator_audio_length_tolerance: float = Field(
        0.1, description="Largest relative gap between declared and decoded audio length."
    )
    validator_media_timeout_seconds: float = Field(
        60.0, description="Deadline of each ffprobe/ffmpeg run on an upload."
    )
    validator_max_concurrent_uploads: int = Field(
        8,
        ge=1,
        description="Uploads checked at once; more are refused at once with RATE_LIMITED (Retry-After) "
        "instead of all slowing down until they time out.",
    )
    validator_max_concurrent_uploads_per_user: int = Field(
        4,
        ge=1,
        description="Uploads one user may have in progress at once (TOO_MANY_UPLOADS with Retry-After "
        "past it); kept below the global cap so one user never holds every slot.",
    )
    validator_upload_idle_seconds: float = Field(
        60.0,
        gt=0,
        description="An upload stream that sends nothing for this long is refused (DEADLINE_EXCEEDED) "
        "and its spool freed, so a slow-drip client cannot hold one open forever.",
    )
    validator_upload_min_bytes_per_second: int = Field(
        8 * 1024,
        ge=0,
        description="Slowest average transfer rate an upload may keep after its grace period "
        "(UPLOAD_TOO_SLOW below it), so a trickle of bytes cannot hold a slot; 0 turns it off.",
    )
    validator_upload_rate_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds an upload gets before the minimum transfer rate applies.",
    )
    validator_upload_max_seconds: float = Field(
        900.0,
        gt=0,
        description="Longest an upload may take to arrive in full (UPLOAD_TOO_SLOW past it).",
    )
    validator_scan_policy: Literal["required", "optional"] = Field(
        "required",
        description="clamd unreachable: `required` refuses uploads (SCAN_UNAVAILABLE), `optional` accepts "
        "them with a warning.",
    )
    validator_clamd_address: str = Field(
        "",
        description="clamd to scan with: `unix:/path/clamd.sock` or `tcp:host:port` "
        "(default: the socket `vidsynth up` starts under <data_dir>/clamd).",
    )
    validator_clamd_timeout_seconds: float = Field(60.0, description="Socket timeout of each clamd call.")
    validator_quarantine_dir: Path | None = Field(
        None, description="Where infected uploads are kept (default: <data_dir>/quarantine)."
    )


@functools.cache
def get_validator_settings() -> ValidatorSettings:
    return ValidatorSettings()


def quarantine_dir(settings: ValidatorSettings, mesh: MeshSettings) -> Path:
    return settings.validator_quarantine_dir or mesh.data_dir / "quarantine"
