"""A job is one trace: its run (first or resumed, on any replica) continues the trace of
the StartJob call that accepted it, from the `traceparent` stored with the job; each
stage is a span of that run, and the stage's children (ffmpeg, external model
commands) and calls (progress publishes, session updates) are spans inside it.

A runner killed mid-job loses only its spans not yet exported; the replica that resumes
the job opens its run in the same trace, with the stages restored from checkpoints as
short spans marked `vidsynth.stage.restored`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from libs.common import tracing
from libs.common.enums import enum_label
from libs.common.rpc_status import error_from_status_proto
from services.stage_runner.backends.base import stage_name
from vidsynth.v1 import common_pb2

if TYPE_CHECKING:
    from services.stage_runner.execution import JobRunner, LiveJob
    from services.stage_runner.pipeline import JobRun, Pipeline

R = TypeVar("R")


def traced_job_run(
    run: Callable[[JobRunner, LiveJob], Awaitable[None]],
) -> Callable[[JobRunner, LiveJob], Awaitable[None]]:
    """Wraps JobRunner.run in the job's `job run` span (nothing when tracing is off)."""

    @functools.wraps(run)
    async def in_job_trace(runner: JobRunner, live: LiveJob) -> None:
        if not tracing.enabled():
            return await run(runner, live)
        job = live.job
        parent = tracing.context_from_traceparent(await runner._store.trace_parent(job.job_id))
        attributes = {
            "vidsynth.job.id": job.job_id,
            "vidsynth.session.id": job.session_id,
            "vidsynth.job.resumed": job.state == common_pb2.JOB_STATE_RUNNING,
            "vidsynth.job.mode": enum_label(common_pb2.ProcessingMode, job.mode),
        }
        # `parent=None` (a job from before tracing) must not inherit whatever context the
        # queue's task happened to be created in: it starts a trace of its own.
        with tracing.span("job run", attributes, parent=parent or tracing.empty_context()) as job_span:
            await run(runner, live)
            job_span.set_attribute("vidsynth.job.state", enum_label(common_pb2.JobState, job.state))
            if job.state == common_pb2.JOB_STATE_FAILED:
                error = error_from_status_proto(job.error)
                job_span.set_attribute("vidsynth.error.code", error.code if error else "INTERNAL")
                tracing.set_error(job_span, error.code if error else "INTERNAL")
        return None

    return in_job_trace


def traced_stage(*, restored: bool) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Wraps a Pipeline method taking (run, stage, ...) in the stage's span."""

    def decorate(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(method)
        async def in_stage_span(pipeline: Pipeline, run: JobRun, stage: int, *args: Any) -> R:
            if not tracing.enabled():
                return await method(pipeline, run, stage, *args)
            name = stage_name(stage)
            backend = run.backends.get(stage)
            attributes = {
                "vidsynth.stage": name,
                "vidsynth.backend": backend.name if backend is not None else "",
                "vidsynth.stage.restored": restored,
                "vidsynth.job.id": run.job.job_id,
            }
            with tracing.span(f"stage {name}", attributes):
                return await method(pipeline, run, stage, *args)

        return in_stage_span

    return decorate
