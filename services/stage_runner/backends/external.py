"""A stage backend that runs a configured external model command (XTTS, SadTalker,
Real-ESRGAN) through `services.stage_runner.external`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.common.errors import VidsynthError
from services.stage_runner.backends.base import StageInput, stage_from_name
from services.stage_runner.config import ExternalBackendConfig
from services.stage_runner.detection import Detection
from services.stage_runner.external import render_template, run_command
from services.stage_runner.media_check import check_media
from vidsynth.v1 import common_pb2, stage_runner_pb2

# SadTalker's --expression_scale: livelier for excited delivery, calmer for serious.
_EXPRESSION_BY_MOOD = {
    "excited": 1.4,
    "happy": 1.2,
    "enthusiastic": 1.3,
    "energetic": 1.3,
    "playful": 1.2,
    "neutral": 1.0,
    "friendly": 1.1,
    "professional": 0.9,
    "calm": 0.8,
    "serious": 0.8,
    "sad": 0.8,
}


def expression_scale_for(emotion: str, tone: str) -> float:
    scales = [
        _EXPRESSION_BY_MOOD[m]
        for m in (emotion.strip().lower(), tone.strip().lower())
        if m in _EXPRESSION_BY_MOOD
    ]
    return sum(scales) / len(scales) if scales else 1.0


OUTPUT_NAME_BY_STAGE = {
    common_pb2.STAGE_SCRIPT: "script",
    common_pb2.STAGE_VOICE: "audio",
    common_pb2.STAGE_FACE: "face",
    common_pb2.STAGE_ANIMATE: "video",
    common_pb2.STAGE_ENHANCE: "video",
    common_pb2.STAGE_ASSEMBLE: "video",
}


class ExternalBackend:
    kind = stage_runner_pb2.BACKEND_KIND_EXTERNAL

    def __init__(self, config: ExternalBackendConfig, detection: Detection, conda_executable: str) -> None:
        self.config = config
        self.name = config.name
        self.stage = stage_from_name(config.stage)
        self.needs_gpu = config.needs_gpu
        self.timeout_seconds = config.timeout_seconds
        self._detection = detection
        self._conda = conda_executable

    def _missing(self) -> str:
        hint = f" (install: {self.config.install_hint})" if self.config.install_hint else ""
        if self.config.conda_env:
            if not self._detection.conda_path:
                return f"conda not found; needs conda env {self.config.conda_env}{hint}"
            if self.config.conda_env not in self._detection.conda_envs:
                return f"conda env {self.config.conda_env} not found{hint}"
        elif self.config.interpreter and not Path(self.config.interpreter).is_file():
            return f"interpreter {self.config.interpreter} not found{hint}"
        if self.config.cwd:
            try:
                cwd = Path(render_template(self.config.cwd, dict(self.config.variables)))
            except VidsynthError:
                return "its cwd may only use the backend's own variables"
            if not cwd.is_dir():
                return f"directory {cwd} not found{hint}"
        return ""

    def available(self) -> tuple[bool, str]:
        missing = self._missing()
        if missing:
            return False, missing
        where = f"conda env {self.config.conda_env}" if self.config.conda_env else self.config.interpreter
        return True, where or "configured command"

    def _prefix(self) -> list[str]:
        if self.config.conda_env:
            return [
                self._detection.conda_path or self._conda,
                "run",
                "--no-capture-output",
                "-n",
                self.config.conda_env,
            ]
        if self.config.interpreter:
            return [self.config.interpreter]
        return []

    async def _values(self, inp: StageInput) -> dict[str, str]:
        options = inp.spec.options
        values = {
            "work_dir": str(inp.work_dir.resolve()),
            "size": str(options.size or 256),
            "fps": str(options.fps or 25),
            "upscale_factor": str(options.upscale_factor or 2),
            "expression_scale": f"{expression_scale_for(inp.spec.emotion, inp.spec.tone):.2f}",
            "language": "en",
            **self.config.variables,
        }
        for name, key in (
            ("voice_sample", "voice_sample"),
            ("face", "face"),
            ("audio", "audio"),
            ("video", "video"),
            ("text_file", "script"),
        ):
            if key in inp.inputs:
                values[name] = str(inp.inputs[key].resolve())
        if "face" not in values and "face_image" in inp.inputs:
            values["face"] = str(inp.inputs["face_image"].resolve())
        if "script" in inp.inputs:
            values["text"] = (await asyncio.to_thread(inp.inputs["script"].read_text, "utf-8")).strip()
        values["out"] = render_template(self.config.output, values) if self.config.output else ""
        values["output_dir"] = (
            render_template(self.config.output_dir, values) if self.config.output_dir else ""
        )
        return values

    async def run(self, inp: StageInput) -> dict[str, Path]:
        missing = self._missing()
        if missing:
            raise VidsynthError("STAGE_UNAVAILABLE", f"Backend {self.name} is not installed: {missing}.")
        values = await self._values(inp)
        if values["output_dir"]:
            await asyncio.to_thread(Path(values["output_dir"]).mkdir, parents=True, exist_ok=True)
        argv = self._prefix() + [render_template(arg, values) for arg in self.config.argv]
        cwd = Path(render_template(self.config.cwd, values)) if self.config.cwd else inp.work_dir
        timeout = self.timeout_seconds or inp.timeout_seconds
        await run_command(
            argv,
            cwd=cwd,
            timeout_seconds=timeout,
            on_progress=inp.on_progress,
            label=self.name,
            progress_bars=self.config.progress_bars,
        )
        output = await asyncio.to_thread(self._find_output, values)
        await check_media(output, self.config.output_format)
        return {OUTPUT_NAME_BY_STAGE[self.stage]: output}

    def _find_output(self, values: dict[str, str]) -> Path:
        if values["out"]:
            return Path(values["out"])
        found = sorted(
            Path(values["output_dir"]).glob(self.config.output_glob), key=lambda p: p.stat().st_mtime
        )
        if not found:
            raise VidsynthError("STAGE_OUTPUT_INVALID", f"Backend {self.name} wrote no output.")
        return found[-1]
