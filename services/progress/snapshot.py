"""GetProgress: fold one job's events into a snapshot.

The stage runner is the one place that computes a job's overall percent and ETA (weighted
by its cost model's per-stage estimates) and every event it publishes carries them; the
snapshot takes them from the job's last event, so GetProgress and the event stream never
disagree. The fold adds what only the history knows: state, queue position, each stage.
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
    overall_percent: float = 0.0
    eta_seconds: float = 0.0
    last_seq: int = 0
    message: str = ""

    def apply(self, event: progress_pb2.ProgressEvent) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        # Every runner event carries the job's overall percent and ETA as of that event.
        self.overall_percent, self.eta_seconds = event.overall_percent, event.eta_seconds
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

    def skip_unstarted(self) -> None:
        for stage in self.stages.values():
            if stage.status == common_pb2.STAGE_STATUS_PENDING:
                stage.status = common_pb2.STAGE_STATUS_SKIPPED


def compute_snapshot(
    session_id: str,
    job_id: str,
    events: Iterable[progress_pb2.ProgressEvent],
) -> progress_pb2.ProgressSnapshot:
    fold = _JobFold()
    for event in events:
        fold.apply(event)
    if fold.state == common_pb2.JOB_STATE_FAILED:
        fold.end_unfinished(common_pb2.STAGE_STATUS_SKIPPED)
    elif fold.state == common_pb2.JOB_STATE_COMPLETED:
        fold.skip_unstarted()  # stages the job's plan left out (e.g. enhance when not asked for)
    return progress_pb2.ProgressSnapshot(
        session_id=session_id,
        job_id=job_id,
        job_state=fold.state,
        overall_percent=fold.overall_percent,
        stages=[
            progress_pb2.StageProgress(
                stage=stage, status=state.status, percent=round(state.percent, 2), backend=state.backend
            )
            for stage, state in sorted(fold.stages.items())
        ],
        eta_seconds=fold.eta_seconds,
        queue_position=fold.queue_position if fold.state == common_pb2.JOB_STATE_QUEUED else 0,
        last_seq=fold.last_seq,
        message=fold.message,
    )
