"""The one interface every stage backend implements: one input per stage call,
named output files back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from libs.common.enums import enum_label
from services.stage_runner.media.progress import ProgressCallback
from vidsynth.v1 import common_pb2, stage_runner_pb2

STAGE_ORDER: tuple[int, ...] = (
    common_pb2.STAGE_SCRIPT,
    common_pb2.STAGE_VOICE,
    common_pb2.STAGE_FACE,
    common_pb2.STAGE_ANIMATE,
    common_pb2.STAGE_ENHANCE,
    common_pb2.STAGE_ASSEMBLE,
)


def stage_name(stage: int) -> str:
    """`STAGE_ANIMATE` -> "animate"."""
    return enum_label(common_pb2.Stage, stage)


def stage_from_name(name: str) -> int:
    return common_pb2.Stage.Value("STAGE_" + name.upper())


@dataclass
class StageInput:
    """Everything one stage call needs. `inputs` names the files earlier stages (and
    the session's assets) produced: script, voice_sample, face_image, audio, face, video."""

    job_id: str
    session_id: str
    stage: int
    work_dir: Path
    inputs: dict[str, Path]
    spec: stage_runner_pb2.JobSpec
    on_progress: ProgressCallback
    # Values earlier stages measured (e.g. speech_seconds), for estimates and arguments.
    facts: dict[str, float] = field(default_factory=dict)
    timeout_seconds: float = 3600.0


@runtime_checkable
class StageBackend(Protocol):
    name: str
    stage: int
    kind: int  # BackendKind
    needs_gpu: bool
    # Its own time limit for a stage when longer than the runner's default; 0 for none.
    timeout_seconds: float

    def available(self) -> tuple[bool, str]:
        """Whether it can run here, and why (not). Cheap: reads cached detection."""
        ...

    async def run(self, inp: StageInput) -> dict[str, Path]:
        """Writes its outputs inside `inp.work_dir` and returns them by name."""
        ...
