"""GetProgress: fold one job's events into a snapshot.

Overall percent weighs each stage by the configured weights. The ETA starts from the
runner's own estimate and leans on the observed speed (overall percent per second since
the job started) the further the job gets, since early speed says little.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from libs.common.progress_events import STAGE_NAMES
from vidsynth.v1 import common_pb2, progress_pb2

_E = progress_pb2
_JOB_STATE_BY_EVENT = {
    _E.EVENT_TYPE_JOB_QUEUED: common_pb2.JOB_STATE_QUEUED,
    _E.EVENT_TYPE_JOB_STARTED: common_pb2.JOB_STATE_RUNNING,
    _E.EVENT_TYPE_STAGE_STARTED: common_pb2.JOB_STATE_RUNNING,
    _E.EVENT_TYPE_STAGE_PROGRESS: common_pb2.JOB_STATE_RUNNING,
    _E.EVENT_TYPE_STAGE_COMPLETED: common_pb2.JOB_STATE_RUNNING,
    _E.EVENT_TYPE_STAGE_FAILED: common_pb2.JOB_STATE_RUNNING,
    _E.EVENT_TYPE_JOB_COMPLETED: common_pb2.JOB_STATE_COMPLETED,
    _E.EVENT_TYPE_JOB_FAILED: common_pb2.JOB_STATE_FAILED,
    _E.EVENT_TYPE_JOB_CANCELLED: common_pb2.JOB_STATE_CANCELLED,
}
_FINISHED_JOB_STATES = {
    common_pb2.JOB_STATE_COMPLETED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


@dataclass
class _StageState:
    status: int = common_pb2.STAGE_STATUS_PENDING
    percent: float = 0.0
    backend: str = ""


@dataclass
class _JobFold:
    state: int = common_pb2.JOB_STATE_UNSPECIFIED
    stages: dict[int, _StageState] = field(default_factory=lambda: {s: _StageState() for s in STAGE_NAMES})
    queue_position: int = 0
    runner_eta: float = 0.0
    started_at: float | None = None
    last_at: float = 0.0
    last_seq: int = 0
    message: str = ""

    def apply(self, event: progress_pb2.ProgressEvent) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        moment = event.timestamp.seconds + event.timestamp.nanos / 1e9
        self.last_at = max(self.last_at, moment)
        if event.message:
            self.message = event.message
        if event.type == _E.EVENT_TYPE_WARNING:
            return
        if event.type in _JOB_STATE_BY_EVENT and self.state not in _FINISHED_JOB_STATES:
            self.state = _JOB_STATE_BY_EVENT[event.type]
        if event.type == _E.EVENT_TYPE_JOB_QUEUED:
            self.queue_position = event.queue_position
        elif self.state == common_pb2.JOB_STATE_RUNNING:
            self.queue_position = 0
            if self.started_at is None:
                self.started_at = moment
        if event.eta_seconds:
            self.runner_eta = event.eta_seconds
        self._apply_stage(event)

    def _apply_stage(self, event: progress_pb2.ProgressEvent) -> None:
        stage = self.stages.get(event.stage)
        if stage is None:
            if event.type == _E.EVENT_TYPE_JOB_CANCELLED:
                self.end_unfinished(common_pb2.STAGE_STATUS_CANCELLED)
            return
        if event.backend:
            stage.backend = event.backend
        if event.type in (_E.EVENT_TYPE_STAGE_STARTED, _E.EVENT_TYPE_STAGE_PROGRESS):
            stage.status = common_pb2.STAGE_STATUS_RUNNING
            stage.percent = max(stage.percent, min(100.0, max(0.0, event.stage_percent)))
        elif event.type == _E.EVENT_TYPE_STAGE_COMPLETED:
            stage.status, stage.percent = common_pb2.STAGE_STATUS_COMPLETED, 100.0
        elif event.type == _E.EVENT_TYPE_STAGE_FAILED:
            stage.status = common_pb2.STAGE_STATUS_FAILED

    def end_unfinished(self, status: int) -> None:
        for stage in self.stages.values():
            if stage.status in (common_pb2.STAGE_STATUS_PENDING, common_pb2.STAGE_STATUS_RUNNING):
                stage.status = status


def overall_percent(fold: _JobFold, weights: dict[str, float]) -> float:
    if fold.state == common_pb2.JOB_STATE_COMPLETED:
        return 100.0
    total = sum(weights.values())
    done = sum(
        weights.get(STAGE_NAMES[stage], 0.0) * state.percent / 100.0 for stage, state in fold.stages.items()
    )
    return round(100.0 * done / total, 2) if total else 0.0


def estimate_eta(fold: _JobFold, percent: float, now: float) -> float:
    """Seconds left: the runner's estimate blended with observed speed, by progress made."""
    if fold.state in _FINISHED_JOB_STATES:
        return 0.0
    runner_eta = max(0.0, fold.runner_eta - max(0.0, now - fold.last_at)) if fold.runner_eta else 0.0
    if fold.started_at is None or percent <= 0.0 or now <= fold.started_at:
        return round(runner_eta, 3)
    observed = (100.0 - percent) / (percent / (now - fold.started_at))
    if not runner_eta:
        return round(observed, 3)
    trust_observed = percent / 100.0
    return round(trust_observed * observed + (1.0 - trust_observed) * runner_eta, 3)


def compute_snapshot(
    session_id: str,
    job_id: str,
    events: Iterable[progress_pb2.ProgressEvent],
    weights: dict[str, float],
    now: float,
) -> progress_pb2.ProgressSnapshot:
    fold = _JobFold()
    for event in events:
        fold.apply(event)
    if fold.state == common_pb2.JOB_STATE_FAILED:
        fold.end_unfinished(common_pb2.STAGE_STATUS_SKIPPED)
    percent = overall_percent(fold, weights)
    return progress_pb2.ProgressSnapshot(
        session_id=session_id,
        job_id=job_id,
        job_state=fold.state,
        overall_percent=percent,
        stages=[
            progress_pb2.StageProgress(
                stage=stage, status=state.status, percent=round(state.percent, 2), backend=state.backend
            )
            for stage, state in sorted(fold.stages.items())
            if STAGE_NAMES[stage] in weights or state.status != common_pb2.STAGE_STATUS_PENDING
        ],
        eta_seconds=estimate_eta(fold, percent, now),
        queue_position=fold.queue_position if fold.state == common_pb2.JOB_STATE_QUEUED else 0,
        last_seq=fold.last_seq,
        message=fold.message,
    )
