"""Fast stand-ins that still write valid media with ffmpeg, for frontend work and tests:
a tone for the voice, the photo scaled for the face, a still-frame MP4 for animation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stage_runner.backends.base import StageInput, stage_name
from services.stage_runner.media.ffmpeg import run_ffmpeg
from services.stage_runner.script_text import script_for_spec
from vidsynth.v1 import common_pb2, stage_runner_pb2

SIMULATION = stage_runner_pb2.BACKEND_KIND_SIMULATION
PROGRESS_STEPS = 5


# Fast, valid H.264 with no audio track: what the stand-in video stages write.
_SILENT_H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an")


class SimulationBackend:
    """One stand-in per stage; `seconds` of pretend work reported as progress."""

    kind = SIMULATION
    needs_gpu = False
    timeout_seconds = 0.0

    def __init__(self, stage: int, seconds: float, words_per_minute: float) -> None:
        self.stage = stage
        self.name = f"simulated-{stage_name(stage)}"
        self._seconds = seconds
        self._wpm = words_per_minute

    def available(self) -> tuple[bool, str]:
        return True, "simulation: valid stand-in media, not a real model"

    async def _pretend_work(self, inp: StageInput) -> None:
        for step in range(PROGRESS_STEPS):
            await asyncio.sleep(self._seconds / PROGRESS_STEPS)
            await inp.on_progress(100.0 * (step + 1) / PROGRESS_STEPS, f"simulated {stage_name(self.stage)}")

    async def run(self, inp: StageInput) -> dict[str, Path]:
        await self._pretend_work(inp)
        runner = _RUNNERS[self.stage]
        return await runner(self, inp)

    async def _script(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "script.txt"
        text = script_for_spec(inp.spec, self._wpm)
        await asyncio.to_thread(out.write_text, text, "utf-8")
        return {"script": out}

    async def _voice(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "voice.wav"
        seconds = max(1.0, inp.facts.get("speech_seconds", 1.0))
        await _ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=220:sample_rate=22050:duration={seconds:.2f}",
                "-ac",
                "1",
                "-c:a",
                "pcm_s16le",
                str(out),
            ]
        )
        return {"audio": out}

    async def _face(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "face.png"
        size = frame_size(inp.spec)
        await _ffmpeg(
            [
                "-i",
                str(inp.inputs["face_image"]),
                "-frames:v",
                "1",
                "-vf",
                f"scale={size}:{size}:force_original_aspect_ratio=increase,crop={size}:{size}",
                str(out),
            ]
        )
        return {"face": out}

    async def _animate(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "animated.mp4"
        fps = inp.spec.options.fps or 25
        await _ffmpeg(
            [
                "-loop",
                "1",
                "-framerate",
                str(fps),
                "-i",
                str(inp.inputs["face"]),
                "-t",
                f"{max(1.0, inp.facts.get('speech_seconds', 1.0)):.2f}",
                *_SILENT_H264,
                str(out),
            ]
        )
        return {"video": out}

    async def _enhance(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "enhanced.mp4"
        factor = inp.spec.options.upscale_factor or 2
        await _ffmpeg(
            [
                "-i",
                str(inp.inputs["video"]),
                "-vf",
                f"scale=iw*{factor}:ih*{factor}:flags=lanczos",
                *_SILENT_H264,
                str(out),
            ]
        )
        return {"video": out}

    async def _assemble(self, inp: StageInput) -> dict[str, Path]:
        video = inp.work_dir / "video.mp4"
        thumbnail = inp.work_dir / "thumbnail.jpg"
        await _ffmpeg(
            [
                "-i",
                str(inp.inputs["video"]),
                "-i",
                str(inp.inputs["audio"]),
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "copy",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-shortest",
                "-movflags",
                "+faststart",
                str(video),
            ]
        )
        await _ffmpeg(["-i", str(video), "-frames:v", "1", "-q:v", "4", str(thumbnail)])
        return {"video": video, "thumbnail": thumbnail}


async def _ffmpeg(args: list[str]) -> None:
    # Stand-in media is tiny; its progress is the pretend work's, not ffmpeg's.
    await run_ffmpeg(args, expected_seconds=1.0, failure_message="Writing the stand-in media failed.")


def frame_size(spec: stage_runner_pb2.JobSpec) -> int:
    size = spec.options.size or 256
    return size + size % 2  # H.264 4:2:0 needs even dimensions


_RUNNERS = {
    common_pb2.STAGE_SCRIPT: SimulationBackend._script,
    common_pb2.STAGE_VOICE: SimulationBackend._voice,
    common_pb2.STAGE_FACE: SimulationBackend._face,
    common_pb2.STAGE_ANIMATE: SimulationBackend._animate,
    common_pb2.STAGE_ENHANCE: SimulationBackend._enhance,
    common_pb2.STAGE_ASSEMBLE: SimulationBackend._assemble,
}
