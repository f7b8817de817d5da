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
    validator_upload_idle_seconds: float = Field(
        60.0,
        gt=0,
        description="An upload stream that sends nothing for this long is refused (DEADLINE_EXCEEDED) "
        "and its spool freed, so a slow-drip client cannot hold one open forever.",
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
