"""Generated scripts: the GenerateScript RPC and the script stage's Gemini backend,
both through `script_writer` (google-genai)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stage_runner import script_writer
from services.stage_runner.backends.base import StageInput
from services.stage_runner.media.config import MediaSettings
from vidsynth.v1 import common_pb2, stage_runner_pb2


def to_writer_prompt(prompt: stage_runner_pb2.ScriptPrompt) -> script_writer.ScriptPrompt:
    return script_writer.ScriptPrompt(
        topic=prompt.topic,
        duration_minutes=prompt.duration_minutes or 1.0,
        tone=prompt.tone,
        emotion=prompt.emotion,
        audience=prompt.audience,
        content_type=prompt.content_type,
    )


class ScriptService:
    def __init__(self, settings: MediaSettings) -> None:
        self._settings = settings

    def available(self) -> tuple[bool, str]:
        return script_writer.gemini_available(self._settings)

    async def generate(self, prompt: stage_runner_pb2.ScriptPrompt) -> script_writer.GeneratedScript:
        return await script_writer.generate_script(to_writer_prompt(prompt), self._settings)


class GeminiScriptBackend:
    """Script stage for jobs sent with a script prompt."""

    name = "gemini"
    stage = common_pb2.STAGE_SCRIPT
    kind = stage_runner_pb2.BACKEND_KIND_API
    needs_gpu = False
    timeout_seconds = 0.0

    def __init__(self, scripts: ScriptService) -> None:
        self._scripts = scripts

    def available(self) -> tuple[bool, str]:
        return self._scripts.available()

    async def run(self, inp: StageInput) -> dict[str, Path]:
        await inp.on_progress(5.0, "asking Gemini for the script")
        script = await self._scripts.generate(inp.spec.script_prompt)
        out = inp.work_dir / "script.txt"
        await asyncio.to_thread(out.write_text, script.text + "\n", "utf-8")
        await inp.on_progress(100.0, f"script written by {script.model}")
        return {"script": out}
