"""Checks that a file a stage produced is the media it claims to be (via the media
package's ffprobe wrapper)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.common.errors import VidsynthError
from services.stage_runner.media.ffmpeg import probe

# ffprobe format names that count as each expected format.
_FORMAT_NAMES = {
    "wav": {"wav"},
    "mp4": {"mov,mp4,m4a,3gp,3g2,mj2"},
    "png": {"png_pipe", "image2"},
    "jpg": {"jpeg_pipe", "image2"},
}


def _non_empty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


async def check_media(path: Path, expected_format: str) -> dict:
    """Verifies `path` exists, is non-empty and is `expected_format` with a decodable stream."""
    if not await asyncio.to_thread(_non_empty_file, path):
        raise VidsynthError("STAGE_OUTPUT_INVALID", "The stage wrote no output.")
    if not expected_format:
        return {}
    info = await probe(path)
    format_name = info.get("format", {}).get("format_name", "")
    streams = info.get("streams", [])
    if format_name not in _FORMAT_NAMES.get(expected_format, {expected_format}) or not streams:
        raise VidsynthError(
            "STAGE_OUTPUT_INVALID", f"The stage output is not a valid {expected_format.upper()} file."
        )
    if expected_format == "mp4" and not any(s.get("codec_type") == "video" for s in streams):
        raise VidsynthError("STAGE_OUTPUT_INVALID", "The stage output has no video stream.")
    return info
