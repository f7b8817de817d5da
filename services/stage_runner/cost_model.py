"""Per-backend time estimates: seconds per unit of work (a second of speech, a
megapixel of photo, a second of video times its megapixels), learned from measured
runs (exponential moving average) and persisted in the job store."""

from __future__ import annotations

import structlog

from libs.common.metrics import STAGE_SECONDS
from libs.common.progress_events import stage_name
from libs.common.redis_outage import REDIS_OUTAGE_ERRORS
from services.stage_runner.store import CostRate, JobStore
from vidsynth.v1 import common_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.cost")

LEARNING_RATE = 0.3
_S = common_pb2
_K = stage_runner_pb2
# Starting rates before anything was measured, by (kind, stage): seconds per unit.
DEFAULT_RATES: dict[tuple[int, int], float] = {
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_SCRIPT): 0.05,
    (_K.BACKEND_KIND_API, _S.STAGE_SCRIPT): 15.0,
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_VOICE): 0.3,
    (_K.BACKEND_KIND_EXTERNAL, _S.STAGE_VOICE): 3.0,
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_FACE): 0.5,
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_ANIMATE): 1.0,
    (_K.BACKEND_KIND_EXTERNAL, _S.STAGE_ANIMATE): 10.0,
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_ENHANCE): 4.0,
    (_K.BACKEND_KIND_EXTERNAL, _S.STAGE_ENHANCE): 40.0,
    (_K.BACKEND_KIND_BUILTIN, _S.STAGE_ASSEMBLE): 0.2,
}
SIMULATION_UNIT_SECONDS = 0.05


def work_units(
    stage: int, speech_seconds: float, face_megapixels: float, spec: stage_runner_pb2.JobSpec
) -> float:
    """How much work a stage has, in the unit its rate is measured in."""
    size = spec.options.size or 256
    if stage == _S.STAGE_SCRIPT:
        return 1.0
    if stage == _S.STAGE_FACE:
        return max(face_megapixels, 0.01)
    if stage == _S.STAGE_ANIMATE:
        return speech_seconds * (size / 256) ** 2
    if stage == _S.STAGE_ENHANCE:
        factor = spec.options.upscale_factor or 2
        return speech_seconds * (size * factor) ** 2 / 1e6
    return speech_seconds  # voice, assemble


class CostModel:
    def __init__(self, store: JobStore, simulation_seconds: float) -> None:
        self._store = store
        self._simulation_seconds = simulation_seconds
        self._rates: dict[tuple[str, int], CostRate] = {}

    async def load(self) -> None:
        self._rates = {(r.backend, r.stage): r for r in await self._store.cost_rates()}

    def estimate(self, backend: str, kind: int, stage: int, units: float) -> float:
        learned = self._rates.get((backend, stage))
        if learned is not None:
            return learned.rate * units
        if kind == _K.BACKEND_KIND_SIMULATION:
            return self._simulation_seconds + SIMULATION_UNIT_SECONDS * units
        return DEFAULT_RATES.get((kind, stage), 1.0) * units

    async def record(self, backend: str, stage: int, units: float, seconds: float) -> None:
        """Folds one measured run into the backend's rate and persists it."""
        STAGE_SECONDS.labels(stage_name(stage) or "unspecified", backend).observe(seconds)
        if units <= 0 or seconds <= 0:
            return
        measured = seconds / units
        previous = self._rates.get((backend, stage))
        if previous is None:
            rate = CostRate(backend, stage, measured, 1)
        else:
            blended = previous.rate * (1 - LEARNING_RATE) + measured * LEARNING_RATE
            rate = CostRate(backend, stage, blended, previous.samples + 1)
        self._rates[(backend, stage)] = rate
        try:
            await self._store.save_cost_rate(rate)
        except REDIS_OUTAGE_ERRORS as error:
            # Learned in memory all the same, and saved with the next run: a job does not
            # fail because its estimate for the next job could not be stored.
            log.warning("cost.save_failed", backend=backend, stage=stage, error=type(error).__name__)
            return
        log.debug(
            "cost.learned", backend=backend, stage=stage, rate=round(rate.rate, 4), samples=rate.samples
        )
