"""The production mode manager: which backend each stage uses in each processing mode,
and the Capabilities report (cached detection, refreshed on demand)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf import timestamp_pb2

from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from services.stage_runner.backends.base import STAGE_ORDER, StageBackend, stage_name
from services.stage_runner.detection import Detection
from vidsynth.v1 import common_pb2, stage_runner_pb2

KIND_PREFERENCE = {
    stage_runner_pb2.BACKEND_KIND_EXTERNAL: 0,
    stage_runner_pb2.BACKEND_KIND_API: 1,
    stage_runner_pb2.BACKEND_KIND_BUILTIN: 2,
    stage_runner_pb2.BACKEND_KIND_SIMULATION: 3,
}
PRODUCTION_KINDS = {stage_runner_pb2.BACKEND_KIND_EXTERNAL, stage_runner_pb2.BACKEND_KIND_API}
# The user's own script text needs no model in any mode.
USER_SCRIPT_BACKEND = "user-script"
# Stages every job runs (enhance only on request; script may be the user's text).
ALWAYS_RUN = (
    common_pb2.STAGE_VOICE,
    common_pb2.STAGE_FACE,
    common_pb2.STAGE_ANIMATE,
    common_pb2.STAGE_ASSEMBLE,
)


class BackendRegistry:
    def __init__(
        self,
        backends: list[StageBackend],
        detection: Detection,
        redetect: Callable[[], Awaitable[Detection]],
        mode: int,
    ) -> None:
        self._backends = backends
        self.detection = detection
        self._redetect = redetect
        self.mode = mode

    def for_stage(self, stage: int) -> list[StageBackend]:
        candidates = [b for b in self._backends if b.stage == stage]
        return sorted(candidates, key=lambda b: KIND_PREFERENCE.get(b.kind, 9))

    def by_name(self, name: str) -> StageBackend | None:
        return next((b for b in self._backends if b.name == name), None)

    async def refresh(self) -> None:
        self.detection.replace_with(await self._redetect())

    def _production_candidates(self, stage: int) -> list[StageBackend]:
        """External/API backends where the stage has any; else the built-in ones (face, assemble)."""
        candidates = [b for b in self.for_stage(stage) if b.kind in PRODUCTION_KINDS]
        return candidates or [
            b for b in self.for_stage(stage) if b.kind == stage_runner_pb2.BACKEND_KIND_BUILTIN
        ]

    def select(self, stage: int, mode: int, spec: stage_runner_pb2.JobSpec | None = None) -> StageBackend:
        """The backend `mode` runs `stage` with; STAGE_UNAVAILABLE naming what to install."""
        if (
            stage == common_pb2.STAGE_SCRIPT
            and spec is not None
            and spec.WhichOneof("script") == "script_text"
        ):
            user_script = self.by_name(USER_SCRIPT_BACKEND)
            if user_script is not None:
                return user_script
        if mode == common_pb2.PROCESSING_MODE_SIMULATION:
            pool = [b for b in self.for_stage(stage) if b.kind == stage_runner_pb2.BACKEND_KIND_SIMULATION]
        elif mode == common_pb2.PROCESSING_MODE_PRODUCTION:
            pool = self._production_candidates(stage)
        else:
            pool = self.for_stage(stage)
        reasons = []
        for backend in pool:
            if backend.name == USER_SCRIPT_BACKEND:
                continue
            available, reason = backend.available()
            if available:
                return backend
            reasons.append(f"{backend.name}: {reason}")
        detail = "; ".join(reasons) or "no backend is configured"
        raise VidsynthError(
            "STAGE_UNAVAILABLE",
            f"The {stage_name(stage)} stage has no usable backend in {mode_name(mode)} mode ({detail}).",
        )

    def production_available(self, stage: int) -> bool:
        return any(b.available()[0] for b in self._production_candidates(stage))

    def missing_for_production(self) -> list[str]:
        missing = []
        for stage in (*ALWAYS_RUN, common_pb2.STAGE_ENHANCE):
            checks = [b.available() for b in self._production_candidates(stage)]
            if not any(available for available, _ in checks):
                reasons = "; ".join(reason for _, reason in checks)
                missing.append(f"{stage_name(stage)}: {reasons or 'no production backend configured'}")
        return missing

    def capabilities(self) -> stage_runner_pb2.Capabilities:
        backends = []
        for backend in self._backends:
            available, reason = backend.available()
            if backend.needs_gpu and not self.detection.gpu_available:
                reason += " (no GPU: slow on CPU)"
            backends.append(
                stage_runner_pb2.Backend(
                    name=backend.name,
                    stage=backend.stage,
                    kind=backend.kind,
                    available=available,
                    reason=reason,
                    needs_gpu=backend.needs_gpu,
                )
            )
        stages = []
        for stage in STAGE_ORDER:
            try:
                selected = self.select(stage, self.mode).name
            except VidsynthError:
                selected = ""
            stages.append(
                stage_runner_pb2.StageCapability(
                    stage=stage,
                    selected_backend=selected,
                    production_available=self.production_available(stage),
                )
            )
        detect_time = timestamp_pb2.Timestamp()
        detect_time.FromDatetime(self.detection.detect_time)
        missing = self.missing_for_production()
        return stage_runner_pb2.Capabilities(
            mode=self.mode,
            production_ready=not missing,
            backends=backends,
            stages=stages,
            gpu_available=self.detection.gpu_available,
            gpu_name=self.detection.gpu_name,
            detect_time=detect_time,
            missing=missing,
        )


MODE_META_KEY = "processing_mode"
MODE_BASE_META_KEY = "processing_mode_configured"


async def initial_mode(store, configured: str) -> int:
    """The admin's last SetProcessingMode survives restarts, unless the configured
    mode (VIDSYNTH_PROCESSING_MODE) changed since: an explicit new setting wins."""
    stored = await store.get_meta(MODE_META_KEY)
    if stored and await store.get_meta(MODE_BASE_META_KEY) == configured:
        return int(stored)
    return mode_from_name(configured)


async def remember_mode(store, mode: int, configured: str) -> None:
    await store.set_meta(MODE_META_KEY, str(mode))
    await store.set_meta(MODE_BASE_META_KEY, configured)


def mode_name(mode: int) -> str:
    return enum_label(common_pb2.ProcessingMode, mode)


def mode_from_name(name: str) -> int:
    return common_pb2.ProcessingMode.Value("PROCESSING_MODE_" + name.upper())
