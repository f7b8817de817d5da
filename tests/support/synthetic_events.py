"""Publishes synthetic progress event sequences, so progress can be tested without a runner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc

from libs.common.ids import new_id
from libs.common.progress_events import STAGES_BY_NAME
from tests.support.identities import mesh_metadata
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import common_pb2, progress_pb2

E = progress_pb2
PIPELINE = ("script", "voice", "face", "animate", "enhance", "assemble")


def job_events(
    job_id: str | None = None,
    *,
    stages: Sequence[str] = PIPELINE,
    ticks_per_stage: int = 3,
    outcome: str = "completed",
    queue_position: int = 1,
    eta_seconds: float = 60.0,
) -> list[progress_pb2.ProgressEvent]:
    """One job's life: queued, started, each stage started/progress.../completed, then the outcome
    ("completed", "failed" at the last stage, or "cancelled"). Like the runner's, every event
    carries the job's overall percent and ETA, here with the stages weighing the same."""
    job_id = job_id or new_id("job")
    events = [
        E.ProgressEvent(
            type=E.EVENT_TYPE_JOB_QUEUED,
            job_id=job_id,
            queue_position=queue_position,
            eta_seconds=eta_seconds,
        ),
        E.ProgressEvent(type=E.EVENT_TYPE_JOB_STARTED, job_id=job_id, eta_seconds=eta_seconds),
    ]

    def at(index: int, stage_percent: float) -> dict[str, float]:
        overall = 100.0 * (index + stage_percent / 100.0) / len(stages)
        return {"overall_percent": overall, "eta_seconds": eta_seconds * (1.0 - overall / 100.0)}

    for index, name in enumerate(stages):
        stage = STAGES_BY_NAME[name]
        failing = outcome == "failed" and index == len(stages) - 1
        events.append(
            E.ProgressEvent(
                type=E.EVENT_TYPE_STAGE_STARTED, job_id=job_id, stage=stage, backend="builtin", **at(index, 0)
            )
        )
        for tick in range(1, ticks_per_stage + 1):
            percent = 100.0 * tick / (ticks_per_stage + 1)
            events.append(
                E.ProgressEvent(
                    type=E.EVENT_TYPE_STAGE_PROGRESS,
                    job_id=job_id,
                    stage=stage,
                    stage_percent=percent,
                    message=f"{name} {percent:.0f}%",
                    **at(index, percent),
                )
            )
        if failing:
            reached = at(index, 100.0 * ticks_per_stage / (ticks_per_stage + 1))
            events.append(
                E.ProgressEvent(
                    type=E.EVENT_TYPE_STAGE_FAILED,
                    job_id=job_id,
                    stage=stage,
                    error=common_pb2.ErrorSummary(code="STAGE_FAILED", message="A processing stage failed."),
                    **reached,
                )
            )
            events.append(
                E.ProgressEvent(
                    type=E.EVENT_TYPE_JOB_FAILED,
                    job_id=job_id,
                    error=common_pb2.ErrorSummary(code="STAGE_FAILED", message="A processing stage failed."),
                    overall_percent=reached["overall_percent"],
                )
            )
            return events
        events.append(
            E.ProgressEvent(type=E.EVENT_TYPE_STAGE_COMPLETED, job_id=job_id, stage=stage, **at(index + 1, 0))
        )
    if outcome == "cancelled":
        events.append(E.ProgressEvent(type=E.EVENT_TYPE_JOB_CANCELLED, job_id=job_id, overall_percent=100.0))
    else:
        events.append(E.ProgressEvent(type=E.EVENT_TYPE_JOB_COMPLETED, job_id=job_id, overall_percent=100.0))
    return events


def progress_ticks(
    count: int, job_id: str | None = None, stage: str = "animate"
) -> list[progress_pb2.ProgressEvent]:
    """`count` stage.progress events (numbered in `message`), for volume and ordering tests."""
    job_id = job_id or new_id("job")
    return [
        E.ProgressEvent(
            type=E.EVENT_TYPE_STAGE_PROGRESS,
            job_id=job_id,
            stage=STAGES_BY_NAME[stage],
            stage_percent=100.0 * i / max(count, 1),
            message=f"tick {i}",
        )
        for i in range(count)
    ]


async def publish(
    channel: grpc.aio.Channel,
    session_id: str,
    events: Iterable[progress_pb2.ProgressEvent],
    *,
    batch_size: int = 1,
    user: str = "",
) -> list[int]:
    """Publishes `events` as the mesh would (mesh credential), `batch_size` per call; returns the seqs."""
    stub = progress_internal_pb2_grpc.ProgressInternalServiceStub(channel)
    pending = list(events)
    seqs: list[int] = []
    for start in range(0, len(pending), batch_size):
        response = await stub.PublishEvents(
            progress_internal_pb2.PublishEventsRequest(
                session_id=session_id, events=pending[start : start + batch_size]
            ),
            metadata=mesh_metadata(user),
            timeout=30,
        )
        seqs.extend(response.seqs)
    return seqs
