"""Built-in animate stage: a talking head rendered with numpy/OpenCV, piped into ffmpeg.

With the face stage's landmarks the mesh rig animates lips and jaw from phoneme visemes (or,
without alignments, from the loudness envelope); without landmarks the OpenCV rig does (the
fallback). Frames are rendered in batches in a worker thread and written straight to ffmpeg's
stdin as raw BGR (no file per frame); ffmpeg encodes H.264 yuv420p. Progress is frames done.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from libs.common.errors import VidsynthError
from services.stage_runner.media.alignment import Alignment
from services.stage_runner.media.face import read_landmarks
from services.stage_runner.media.face_rig import FaceRig, Pose, mouth_envelope, poses_for, render
from services.stage_runner.media.ffmpeg import (
    H264_ENCODE,
    decode_audio,
    probe,
    probe_input,
    run_ffmpeg,
    stream_of,
)
from services.stage_runner.media.mesh_rig import MeshPose, MeshRig
from services.stage_runner.media.progress import ProgressCallback, report
from services.stage_runner.media.visemes import mouth_track

_ENVELOPE_RATE = 16_000
_BATCH_FRAMES = 25

# How strongly the face moves for an emotion or tone, as SadTalker's --expression_scale did.
_EMOTION_SCALE = {
    "neutral": 1.0,
    "happy": 1.25,
    "joyful": 1.3,
    "excited": 1.4,
    "enthusiastic": 1.35,
    "surprised": 1.35,
    "angry": 1.3,
    "passionate": 1.3,
    "confident": 1.1,
    "sad": 0.75,
    "calm": 0.8,
    "serious": 0.9,
    "tired": 0.7,
    "fearful": 1.1,
}
_TONE_SCALE = {
    "professional": 0.9,
    "formal": 0.85,
    "academic": 0.85,
    "informative": 0.95,
    "conversational": 1.05,
    "casual": 1.1,
    "friendly": 1.1,
    "humorous": 1.2,
    "energetic": 1.25,
    "dramatic": 1.3,
    "persuasive": 1.15,
    "inspirational": 1.2,
    "soft": 0.8,
    "soothing": 0.8,
}
MIN_EXPRESSION_SCALE, MAX_EXPRESSION_SCALE = 0.5, 1.6


def expression_scale_for(emotion: str, tone: str) -> float:
    """Expression strength for an emotion and a tone (unknown words count as neutral)."""
    scale = _EMOTION_SCALE.get(emotion.strip().lower(), 1.0) * _TONE_SCALE.get(tone.strip().lower(), 1.0)
    return round(min(MAX_EXPRESSION_SCALE, max(MIN_EXPRESSION_SCALE, scale)), 3)


@dataclass(frozen=True)
class AnimationResult:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    duration_seconds: float
    mouth_box: tuple[int, int, int, int]
    rig: str = "opencv"  # "mesh" or "opencv"
    mouth_driver: str = "loudness"  # "visemes" or "loudness"


def _load_rig(face_png: Path, landmarks_json: Path | None) -> FaceRig | MeshRig:
    image = cv2.imdecode(np.fromfile(face_png, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VidsynthError("STAGE_FAILED", "The face image could not be read.")
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        # yuv420p needs even dimensions.
        image = image[: h - h % 2, : w - w % 2]
    image = np.ascontiguousarray(image)
    if landmarks_json is not None and landmarks_json.exists():
        return MeshRig.from_landmarks(image, read_landmarks(landmarks_json))
    return FaceRig.from_image(image)


def _render_batch(rig: FaceRig | MeshRig, poses: list[Pose | MeshPose]) -> list[np.ndarray]:
    # Frames go to ffmpeg's pipe as they are (the pipe's buffer takes the one copy): joining
    # them into bytes first cost about a quarter of the rendering time.
    if isinstance(rig, MeshRig):
        frames = [rig.render(pose) for pose in poses]  # type: ignore[arg-type]
    else:
        frames = [render(rig, pose) for pose in poses]  # type: ignore[arg-type]
    return [np.ascontiguousarray(frame) for frame in frames]


def _mesh_poses(opening: np.ndarray, width: np.ndarray, fps: int, expression_scale: float) -> list[MeshPose]:
    """Blinks and head motion as the OpenCV rig has them, with the mouth's opening and width."""
    motion = poses_for(opening, fps, expression_scale)
    return [
        MeshPose(p.mouth_open, float(width[i]), p.blink, p.angle_degrees, p.shift_x, p.shift_y)
        for i, p in enumerate(motion)
    ]


async def animate(
    face_png: Path,
    audio_wav: Path,
    out_mp4: Path,
    *,
    fps: int = 25,
    expression_scale: float = 1.0,
    on_progress: ProgressCallback | None = None,
    landmarks_json: Path | None = None,
    alignment_json: Path | None = None,
) -> AnimationResult:
    """Render `face_png` speaking `audio_wav` into a silent H.264 MP4 of round(duration x fps) frames.

    `landmarks_json` (from the face stage) selects the mesh rig; `alignment_json` (from the voice
    stage) drives the mouth by visemes when it has phones, else the loudness envelope does."""
    if not 1 <= fps <= 60:
        raise VidsynthError("INVALID_ARGUMENT", "Frames per second must be between 1 and 60.")
    expression_scale = min(MAX_EXPRESSION_SCALE, max(MIN_EXPRESSION_SCALE, expression_scale))
    audio_info = await probe_input(audio_wav, "speech audio")
    if stream_of(audio_info, "audio") is None:
        raise VidsynthError("STAGE_FAILED", "The speech audio has no sound track.")
    samples = await decode_audio(audio_wav, _ENVELOPE_RATE)
    duration = samples.size / _ENVELOPE_RATE
    frames = frames_for(duration, fps)
    rig = await asyncio.to_thread(_load_rig, face_png, landmarks_json)
    alignment = None
    if alignment_json is not None and await asyncio.to_thread(alignment_json.exists):
        alignment = await asyncio.to_thread(Alignment.read, alignment_json)
    driver = "visemes" if alignment is not None and alignment.phones else "loudness"
    poses: list = []
    if driver == "visemes":
        assert alignment is not None
        opening, mouth_width = await asyncio.to_thread(
            mouth_track, alignment.phones, samples, _ENVELOPE_RATE, fps, frames
        )
    else:
        opening = await asyncio.to_thread(mouth_envelope, samples, _ENVELOPE_RATE, fps, frames)
        mouth_width = np.zeros(frames)
    if isinstance(rig, MeshRig):
        poses = await asyncio.to_thread(_mesh_poses, opening, mouth_width, fps, expression_scale)
    else:
        poses = await asyncio.to_thread(poses_for, opening, fps, expression_scale)
    height, width = rig.base.shape[:2]
    await asyncio.to_thread(out_mp4.parent.mkdir, parents=True, exist_ok=True)
    partial = out_mp4.with_name(f".{out_mp4.stem}.partial.mp4")

    async def feed_frames(stdin: asyncio.StreamWriter) -> None:
        for start in range(0, frames, _BATCH_FRAMES):
            batch = poses[start : start + _BATCH_FRAMES]
            for frame in await asyncio.to_thread(_render_batch, rig, batch):
                stdin.write(memoryview(frame).cast("B"))
            await stdin.drain()
            done = start + len(batch)
            await report(on_progress, 100.0 * done / frames, f"rendered frame {done} of {frames}")

    await report(on_progress, 0.0, f"rendering {frames} frames")
    try:
        await run_ffmpeg(
            [
                *("-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", str(fps)),
                *("-i", "pipe:0", "-an", *H264_ENCODE),
                *("-pix_fmt", "yuv420p", "-r", str(fps), "-movflags", "+faststart", "-f", "mp4", partial),
            ],
            expected_seconds=frames / fps,
            feed_stdin=feed_frames,
            failure_message="Encoding the animation failed.",
        )
        video = stream_of(await probe(partial), "video")
        if video is None or int(video.get("nb_read_packets", -1)) != frames:
            raise VidsynthError("STAGE_OUTPUT_INVALID", "The animation is missing frames.")
        partial.replace(out_mp4)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    rig_name = "mesh" if isinstance(rig, MeshRig) else "opencv"
    return AnimationResult(out_mp4, frames, fps, width, height, frames / fps, rig.mouth_box, rig_name, driver)


def frames_for(duration_seconds: float, fps: int) -> int:
    """How many frames `animate` renders for audio of `duration_seconds`."""
    return max(1, math.floor(duration_seconds * fps + 0.5))
