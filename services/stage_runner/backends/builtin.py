"""Built-in backends: the real media functions of `services.stage_runner.media` behind the stage
backend interface. Voice: Piper (a long-lived worker process) matched to the sample, espeak-ng
when Piper is not installed; face: the face mesh with the OpenCV cascade as its fallback;
animate: visemes on the mesh rig; enhance and assemble: ffmpeg."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stage_runner.backends.base import StageInput, stage_name
from services.stage_runner.detection import Detection
from services.stage_runner.media import animate, assemble, enhance, face
from services.stage_runner.media.captions import write_captions
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.media.neural_voice import NOT_CLONING, synthesize_matched
from services.stage_runner.media.speech_engine import PIPER_VOICE_NAME, SpeechEngine
from vidsynth.v1 import common_pb2, stage_runner_pb2

MIN_SIZE, MAX_SIZE = 256, 1024
# Voice backends whose alignments give a job its captions outputs.
CAPTIONED_VOICES = ("piper", "espeak-ng")
CAPTION_OUTPUTS = ("captions", "captions_srt")
_NEEDS = {
    "piper": ("ffmpeg", "ffprobe", "espeak-ng"),
    "espeak-ng": ("espeak-ng", "ffmpeg", "ffprobe"),
    "face-mesh": (),
    "builtin-animate": ("ffmpeg", "ffprobe"),
    "ffmpeg-lanczos": ("ffmpeg", "ffprobe"),
    "ffmpeg-assemble": ("ffmpeg", "ffprobe"),
}
_STAGES = {
    "piper": common_pb2.STAGE_VOICE,
    "espeak-ng": common_pb2.STAGE_VOICE,
    "face-mesh": common_pb2.STAGE_FACE,
    "builtin-animate": common_pb2.STAGE_ANIMATE,
    "ffmpeg-lanczos": common_pb2.STAGE_ENHANCE,
    "ffmpeg-assemble": common_pb2.STAGE_ASSEMBLE,
}
_DESCRIPTIONS = {
    "piper": f"Piper {PIPER_VOICE_NAME} (neural, a separate long-lived process) pitch-matched to the sample "
    f"by PSOLA and rate-matched by length scale; espeak-ng for voices it cannot follow: {NOT_CLONING}",
    "espeak-ng": f"espeak-ng matched to the sample's pitch and rate: {NOT_CLONING}",
    "builtin-animate": "phoneme visemes warped on the face mesh, with a mouth interior, blinks and head motion "
    "(loudness-driven on the OpenCV fallback)",
    "ffmpeg-lanczos": "ffmpeg lanczos upscale and sharpen",
    "ffmpeg-assemble": "ffmpeg H.264 + AAC, thumbnail, captions burned in on request",
}


def frame_size(spec: stage_runner_pb2.JobSpec, default: int) -> int:
    size = min(MAX_SIZE, max(MIN_SIZE, spec.options.size or default))
    return size + size % 2  # H.264 4:2:0 needs even dimensions


class BuiltinBackend:
    kind = stage_runner_pb2.BACKEND_KIND_BUILTIN
    needs_gpu = False
    timeout_seconds = 0.0

    def __init__(
        self, name: str, detection: Detection, media_settings: MediaSettings, speech: SpeechEngine
    ) -> None:
        self.name = name
        self.stage = _STAGES[name]
        self._detection = detection
        self._media = media_settings
        self._speech = speech

    def available(self) -> tuple[bool, str]:
        missing = [tool for tool in _NEEDS[self.name] if tool not in self._detection.executables]
        if missing:
            return False, f"missing executables: {', '.join(missing)} (apt-get install {' '.join(missing)})"
        if self.name == "piper" and not self._detection.piper_voice:
            return False, self._detection.piper_reason
        if self.name == "face-mesh":
            if self._detection.face_mesh:
                return True, "mediapipe face mesh (478 landmarks); OpenCV cascade when it finds no face"
            return True, f"OpenCV cascade only: {self._detection.face_mesh_reason}"
        return True, _DESCRIPTIONS.get(self.name, f"built-in {stage_name(self.stage)}")

    async def run(self, inp: StageInput) -> dict[str, Path]:
        runner = {
            common_pb2.STAGE_VOICE: self._voice,
            common_pb2.STAGE_FACE: self._face,
            common_pb2.STAGE_ANIMATE: self._animate,
            common_pb2.STAGE_ENHANCE: self._enhance,
        }.get(self.stage, self._assemble)
        return await runner(inp)

    async def _voice(self, inp: StageInput) -> dict[str, Path]:
        text = await asyncio.to_thread(inp.inputs["script"].read_text, "utf-8")
        out = inp.work_dir / "voice.wav"
        speech = await synthesize_matched(
            text,
            inp.inputs["voice_sample"],
            out,
            self._speech if self.name == "piper" else None,
            inp.on_progress,
            seconds_per_chunk=self._media.media_seconds_per_chunk,
            words_per_minute=self._media.media_words_per_minute,
        )
        alignment = inp.work_dir / "alignment.json"
        await asyncio.to_thread(speech.alignment.write, alignment)
        captions = await asyncio.to_thread(
            write_captions, speech.alignment.words, speech.duration_seconds, inp.work_dir
        )
        for message in speech.messages:
            await inp.on_progress(100.0, message)
        return {"audio": out, "alignment": alignment, **captions}

    async def _face(self, inp: StageInput) -> dict[str, Path]:
        out, landmarks = inp.work_dir / "face.png", inp.work_dir / "landmarks.json"
        size = frame_size(inp.spec, self._media.media_default_size)
        found = await face.crop_face(inp.inputs["face_image"], out, size, landmarks)
        if found.finder == "mesh":
            await inp.on_progress(100.0, f"face mesh: 478 landmarks, cropped to {size}x{size}")
            return {"face": out, "landmarks": landmarks}
        await inp.on_progress(
            100.0,
            f"{found.fallback_reason}: the OpenCV cascade found the face instead (fallback: a simpler "
            f"loudness-driven mouth), cropped to {size}x{size}",
        )
        return {"face": out}

    async def _animate(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "animated.mp4"
        result = await animate.animate(
            inp.inputs["face"],
            inp.inputs["audio"],
            out,
            fps=inp.spec.options.fps or 25,
            expression_scale=animate.expression_scale_for(inp.spec.emotion, inp.spec.tone),
            on_progress=inp.on_progress,
            landmarks_json=inp.inputs.get("landmarks"),
            alignment_json=inp.inputs.get("alignment"),
        )
        rig = "face mesh" if result.rig == "mesh" else "OpenCV fallback rig"
        driver = "phoneme visemes" if result.mouth_driver == "visemes" else "the loudness envelope"
        await inp.on_progress(100.0, f"animated on the {rig}, mouth from {driver}")
        return {"video": out}

    async def _enhance(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "enhanced.mp4"
        await enhance.enhance(inp.inputs["video"], out, inp.spec.options.upscale_factor or 2, inp.on_progress)
        return {"video": out}

    async def _assemble(self, inp: StageInput) -> dict[str, Path]:
        burn = inp.inputs.get("captions_srt") if inp.spec.options.burn_captions else None
        produced = await assemble.assemble(
            inp.inputs["video"], inp.inputs["audio"], inp.work_dir, inp.on_progress, burn_captions=burn
        )
        return {"video": produced["video"], "thumbnail": produced["thumbnail"]}


def builtin_backends(
    detection: Detection, media_settings: MediaSettings, speech: SpeechEngine | None = None
) -> list[BuiltinBackend]:
    engine = speech or SpeechEngine()
    return [BuiltinBackend(name, detection, media_settings, engine) for name in _STAGES]
