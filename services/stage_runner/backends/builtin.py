"""Built-in backends: the real media functions of `services.stage_runner.media`
(espeak-ng voice, OpenCV face crop, audio-driven animation, ffmpeg enhance and assembly)
behind the stage backend interface."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stage_runner.backends.base import StageInput, stage_name
from services.stage_runner.backends.simulation import frame_size
from services.stage_runner.detection import Detection
from services.stage_runner.media import animate, assemble, enhance, face, voice
from services.stage_runner.media.config import MediaSettings
from vidsynth.v1 import common_pb2, stage_runner_pb2

_NEEDS = {
    common_pb2.STAGE_VOICE: ("espeak-ng", "ffmpeg", "ffprobe"),
    common_pb2.STAGE_FACE: (),
    common_pb2.STAGE_ANIMATE: ("ffmpeg", "ffprobe"),
    common_pb2.STAGE_ENHANCE: ("ffmpeg", "ffprobe"),
    common_pb2.STAGE_ASSEMBLE: ("ffmpeg", "ffprobe"),
}
_NAMES = {
    common_pb2.STAGE_VOICE: "espeak-ng",
    common_pb2.STAGE_FACE: "opencv-face",
    common_pb2.STAGE_ANIMATE: "builtin-animate",
    common_pb2.STAGE_ENHANCE: "ffmpeg-lanczos",
    common_pb2.STAGE_ASSEMBLE: "ffmpeg-assemble",
}


class BuiltinBackend:
    kind = stage_runner_pb2.BACKEND_KIND_BUILTIN
    needs_gpu = False
    timeout_seconds = 0.0

    def __init__(self, stage: int, detection: Detection, media_settings: MediaSettings) -> None:
        self.stage = stage
        self.name = _NAMES[stage]
        self._detection = detection
        self._media = media_settings

    def available(self) -> tuple[bool, str]:
        missing = [tool for tool in _NEEDS[self.stage] if tool not in self._detection.executables]
        if missing:
            return False, f"missing executables: {', '.join(missing)} (apt-get install {' '.join(missing)})"
        return True, f"built-in {stage_name(self.stage)} ({', '.join(_NEEDS[self.stage]) or 'OpenCV'})"

    async def run(self, inp: StageInput) -> dict[str, Path]:
        spec, work = inp.spec, inp.work_dir
        if self.stage == common_pb2.STAGE_VOICE:
            text = await asyncio.to_thread(inp.inputs["script"].read_text, "utf-8")
            out = work / "voice.wav"
            await voice.synthesize(
                text,
                inp.inputs["voice_sample"],
                out,
                inp.on_progress,
                seconds_per_chunk=self._media.media_seconds_per_chunk,
            )
            return {"audio": out}
        if self.stage == common_pb2.STAGE_FACE:
            out = work / "face.png"
            await face.crop_face(inp.inputs["face_image"], out, frame_size(spec))
            await inp.on_progress(100.0, "face cropped")
            return {"face": out}
        if self.stage == common_pb2.STAGE_ANIMATE:
            out = work / "animated.mp4"
            await animate.animate(
                inp.inputs["face"],
                inp.inputs["audio"],
                out,
                fps=spec.options.fps or 25,
                expression_scale=animate.expression_scale_for(spec.emotion, spec.tone),
                on_progress=inp.on_progress,
            )
            return {"video": out}
        if self.stage == common_pb2.STAGE_ENHANCE:
            out = work / "enhanced.mp4"
            await enhance.enhance(inp.inputs["video"], out, spec.options.upscale_factor or 2, inp.on_progress)
            return {"video": out}
        produced = await assemble.assemble(inp.inputs["video"], inp.inputs["audio"], work, inp.on_progress)
        return {"video": produced["video"], "thumbnail": produced["thumbnail"]}


def builtin_backends(detection: Detection, media_settings: MediaSettings) -> list[BuiltinBackend]:
    return [BuiltinBackend(stage, detection, media_settings) for stage in _NAMES]
