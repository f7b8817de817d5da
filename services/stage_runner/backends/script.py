"""Script stage backends that need no model: the user's own text."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stage_runner.backends.base import StageInput
from services.stage_runner.capabilities import USER_SCRIPT_BACKEND
from vidsynth.v1 import common_pb2, stage_runner_pb2


class UserScriptBackend:
    """Writes the job's `script_text` as the script, unchanged but trimmed."""

    name = USER_SCRIPT_BACKEND
    stage = common_pb2.STAGE_SCRIPT
    kind = stage_runner_pb2.BACKEND_KIND_BUILTIN
    needs_gpu = False
    timeout_seconds = 0.0

    def available(self) -> tuple[bool, str]:
        return True, "uses the script text sent with the job"

    async def run(self, inp: StageInput) -> dict[str, Path]:
        out = inp.work_dir / "script.txt"
        await asyncio.to_thread(out.write_text, inp.spec.script_text.strip() + "\n", "utf-8")
        await inp.on_progress(100.0, "script ready")
        return {"script": out}
