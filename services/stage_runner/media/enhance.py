"""Built-in enhance stage: ffmpeg lanczos upscale with an unsharp mask (the Real-ESRGAN stand-in)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from libs.common.errors import VidsynthError
from services.stage_runner.media.ffmpeg import H264_ENCODE, duration_of, probe_input, run_ffmpeg, stream_of
from services.stage_runner.media.progress import ProgressCallback

MAX_FACTOR = 4
# Longest side after upscaling; beyond this the encode gets slow for no visible gain.
MAX_OUTPUT_SIDE = 2048


async def enhance(
    in_mp4: Path, out_mp4: Path, factor: int = 2, on_progress: ProgressCallback | None = None
) -> Path:
    """Upscale `in_mp4` by `factor` (lanczos) and sharpen; audio, if any, is copied unchanged."""
    if not 1 <= factor <= MAX_FACTOR:
        raise VidsynthError("INVALID_ARGUMENT", f"The upscale factor must be between 1 and {MAX_FACTOR}.")
    info = await probe_input(in_mp4, "video to enhance")
    video = stream_of(info, "video")
    if video is None:
        raise VidsynthError("STAGE_FAILED", "The video to enhance has no picture.")
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    if max(width, height) * factor > MAX_OUTPUT_SIDE:
        factor = max(1, MAX_OUTPUT_SIDE // max(width, height, 1))
    await asyncio.to_thread(out_mp4.parent.mkdir, parents=True, exist_ok=True)
    partial = out_mp4.with_name(f".{out_mp4.stem}.partial.mp4")
    # Even dimensions for yuv420p; light unsharp so lanczos' softness does not look blurry.
    filters = f"scale=trunc(iw*{factor}/2)*2:trunc(ih*{factor}/2)*2:flags=lanczos,unsharp=5:5:0.8:5:5:0.0"
    try:
        await run_ffmpeg(
            [
                *("-i", in_mp4, "-map", "0:v:0", "-map", "0:a?", "-vf", filters),
                *H264_ENCODE,
                *("-pix_fmt", "yuv420p"),
                *("-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", partial),
            ],
            expected_seconds=duration_of(info),
            on_progress=on_progress,
            failure_message="Enhancing the video failed.",
        )
        partial.replace(out_mp4)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return out_mp4
