"""Assemble stage: mux the video with the speech into a verified H.264 + AAC MP4 and a thumbnail.

Everything is written under a temporary name and renamed only once ffprobe has confirmed it,
so `out_dir` never holds a broken `video.mp4`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from libs.common.errors import VidsynthError
from services.stage_runner.media.ffmpeg import (
    H264_ENCODE,
    duration_of,
    probe,
    probe_input,
    run_ffmpeg,
    stream_of,
)
from services.stage_runner.media.progress import ProgressCallback, report, scaled

VIDEO_NAME = "video.mp4"
THUMBNAIL_NAME = "thumbnail.jpg"
DURATION_TOLERANCE_SECONDS = 0.1


def _stream_seconds(stream: dict | None) -> float:
    try:
        return float((stream or {}).get("duration", 0.0))
    except (TypeError, ValueError):
        return 0.0


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _check_muxed(info: dict, audio_seconds: float) -> None:
    video, audio = stream_of(info, "video"), stream_of(info, "audio")
    problems = []
    if video is None or video.get("codec_name") != "h264" or video.get("pix_fmt") != "yuv420p":
        problems.append("no H.264 yuv420p video stream")
    if audio is None or audio.get("codec_name") != "aac":
        problems.append("no AAC audio stream")
    # The container lasts as long as its longest stream, so check the picture's own length too.
    for label, seconds in (("video", duration_of(info)), ("picture", _stream_seconds(video))):
        if abs(seconds - audio_seconds) > DURATION_TOLERANCE_SECONDS:
            problems.append(f"{label} lasts {seconds:.2f}s, the speech {audio_seconds:.2f}s")
    if problems:
        raise VidsynthError(
            "STAGE_OUTPUT_INVALID", "The final video failed verification: " + "; ".join(problems)
        )


def _filter_path(path: Path) -> str:
    """`path` quoted for an ffmpeg filter option (our generated paths, escaped all the same)."""
    text = str(path)
    for ch in ("\\", ":", "'", "[", "]", ",", ";"):
        text = text.replace(ch, "\\" + ch)
    return text


def burn_filter(captions_srt: Path) -> str:
    """libass subtitles at the bottom. libass sizes SRT styles on a 288-line canvas scaled to the
    picture, so these read as about 1/22 of the height at any size."""
    style = "FontName=DejaVu Sans,FontSize=13,Outline=1,Shadow=0,MarginV=8"
    return f"subtitles=filename={_filter_path(captions_srt)}:force_style='{style}'"


async def _decode_check(video_mp4: Path, video_info: dict) -> None:
    # A damaged intermediate can still be copied into an MP4 that probes fine; decode every
    # frame so it fails here instead (-xerror: stop at the first decoding error).
    await run_ffmpeg(
        ["-xerror", "-i", video_mp4, "-map", "0:v:0", "-f", "null", "-"],
        expected_seconds=duration_of(video_info),
        failure_message="The animation is damaged and cannot be used.",
    )


async def _mux_checked(
    video_mp4: Path,
    video_info: dict,
    audio_wav: Path,
    audio_seconds: float,
    video_codec: list[str],
    partial_video: Path,
    on_progress: ProgressCallback | None,
) -> None:
    """Mux into `partial_video` while the intermediate is decoded in full: the two run at once
    (one mostly copies, the other mostly decodes). Both finish before either verdict counts, so
    a damaged intermediate is reported as such whatever the mux said; a cancel ends both."""
    outcomes = await asyncio.gather(
        _decode_check(video_mp4, video_info),
        run_ffmpeg(
            [
                *("-i", video_mp4, "-i", audio_wav, "-map", "0:v:0", "-map", "1:a:0"),
                *video_codec,
                *("-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "1"),
                *("-movflags", "+faststart", "-f", "mp4", partial_video),
            ],
            expected_seconds=audio_seconds,
            on_progress=scaled(on_progress, 0.0, 80.0),
            failure_message="Combining the video and the speech failed.",
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def assemble(
    video_mp4: Path,
    audio_wav: Path,
    out_dir: Path,
    on_progress: ProgressCallback | None = None,
    *,
    burn_captions: Path | None = None,
) -> dict[str, Path]:
    """Write `out_dir/video.mp4` (H.264 yuv420p + AAC, faststart) and `out_dir/thumbnail.jpg`.

    With `burn_captions` (an SRT file) the captions are drawn into the picture (re-encoded)."""
    audio_info = await probe_input(audio_wav, "speech audio")
    if stream_of(audio_info, "audio") is None:
        raise VidsynthError("STAGE_FAILED", "The speech audio has no sound track.")
    audio_seconds = duration_of(audio_info)
    video_info = await probe_input(video_mp4, "animation")
    video = stream_of(video_info, "video")
    if video is None:
        raise VidsynthError("STAGE_FAILED", "The animation has no picture.")
    # The animation is already H.264 yuv420p from our own stages; re-encode only what is not.
    copy_video = video.get("codec_name") == "h264" and video.get("pix_fmt") == "yuv420p" and not burn_captions
    video_codec = ["-c:v", "copy"] if copy_video else list(H264_ENCODE)
    if burn_captions is not None:
        video_codec = ["-vf", burn_filter(burn_captions), *video_codec]
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    partial_video = out_dir / f".{VIDEO_NAME}.partial.mp4"
    partial_thumb = out_dir / f".{THUMBNAIL_NAME}.partial.jpg"
    try:
        await _mux_checked(
            video_mp4, video_info, audio_wav, audio_seconds, video_codec, partial_video, on_progress
        )
        await report(on_progress, 80.0, "verifying the video")
        _check_muxed(await probe(partial_video), audio_seconds)
        await run_ffmpeg(
            [
                *("-ss", f"{audio_seconds / 3:.3f}", "-i", partial_video, "-frames:v", "1"),
                *("-q:v", "3", "-f", "image2", "-c:v", "mjpeg", partial_thumb),
            ],
            expected_seconds=0.0,
            failure_message="Writing the thumbnail failed.",
        )
        if not await asyncio.to_thread(_non_empty, partial_thumb):
            raise VidsynthError("STAGE_OUTPUT_INVALID", "The thumbnail is empty.")
        outputs = {"video": out_dir / VIDEO_NAME, "thumbnail": out_dir / THUMBNAIL_NAME}
        partial_video.replace(outputs["video"])
        partial_thumb.replace(outputs["thumbnail"])
    finally:
        for leftover in (partial_video, partial_thumb):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    await report(on_progress, 100.0, "video ready")
    return outputs
