"""CleanupService RPC handlers: thin, over the scheduler and the monitor."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2

from libs.common.errors import FieldViolation, VidsynthError
from libs.common.identity import Identity, require_identity
from libs.common.pagination import int_cursor, open_page
from services.cleanup.monitor import HealthSnapshot, Usage
from services.cleanup.scheduler import CleanupScheduler, TaskState
from services.cleanup.tasks import Outcome
from vidsynth.v1 import cleanup_pb2, cleanup_pb2_grpc


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _usage(usage: Usage) -> cleanup_pb2.ResourceUsage:
    return cleanup_pb2.ResourceUsage(
        used_percent=usage.used_percent,
        used_bytes=usage.used_bytes,
        total_bytes=usage.total_bytes,
        level=int(usage.level),
    )


def health_to_proto(snapshot: HealthSnapshot, retry_after_seconds: float) -> cleanup_pb2.ResourceHealth:
    retry_after = duration_pb2.Duration()
    retry_after.FromTimedelta(timedelta(seconds=retry_after_seconds))
    return cleanup_pb2.ResourceHealth(
        level=int(snapshot.level),
        immediate_actions_needed=snapshot.immediate_actions_needed,
        memory=_usage(snapshot.memory),
        disk=_usage(snapshot.disk),
        cpu_percent=snapshot.cpu_percent,
        open_files=snapshot.open_files,
        processes=[
            cleanup_pb2.ProcessUsage(name=p.name, pid=p.pid, rss_bytes=p.rss_bytes)
            for p in snapshot.processes
        ],
        actions=snapshot.actions,
        observe_time=_timestamp(snapshot.observed_at),
        retry_after=retry_after,
    )


def sees_host_figures(identity: Identity) -> bool:
    """Admins and the mesh's own services (which decide what to show further) see the
    figures that describe the host; a user's API key sees levels and percentages."""
    return identity.is_admin or identity.via_mesh


def for_users(health: cleanup_pb2.ResourceHealth) -> cleanup_pb2.ResourceHealth:
    """The report without the host's byte totals, open files and processes (PIDs, RSS)."""
    trimmed = cleanup_pb2.ResourceHealth()
    trimmed.CopyFrom(health)
    for usage in (trimmed.memory, trimmed.disk):
        usage.used_bytes = 0
        usage.total_bytes = 0
    trimmed.open_files = 0
    del trimmed.processes[:]
    return trimmed


def outcome_to_proto(outcome: Outcome, with_paths: bool = True) -> cleanup_pb2.CleanupResult:
    return cleanup_pb2.CleanupResult(
        task_name=outcome.task_name,
        items_removed=outcome.items_removed,
        bytes_freed=outcome.bytes_freed,
        removed=outcome.removed if with_paths else [],
        error_code=outcome.error_code,
        start_time=_timestamp(outcome.started_at),
        end_time=_timestamp(outcome.ended_at),
    )


def task_to_proto(state: TaskState, with_paths: bool) -> cleanup_pb2.CleanupTask:
    interval = duration_pb2.Duration()
    interval.FromMilliseconds(int(state.spec.interval_seconds * 1000))
    return cleanup_pb2.CleanupTask(
        name=state.spec.name,
        priority=int(state.spec.priority),
        interval=interval,
        last_run_time=_timestamp(state.last_run),
        next_run_time=_timestamp(state.next_run),
        last_result=outcome_to_proto(state.last_result, with_paths) if state.last_result else None,
    )


class CleanupService(cleanup_pb2_grpc.CleanupServiceServicer):
    def __init__(self, scheduler: CleanupScheduler, retry_after_seconds: float) -> None:
        self._scheduler = scheduler
        self._retry_after_seconds = retry_after_seconds

    async def GetResourceHealth(self, request, context) -> cleanup_pb2.ResourceHealth:
        identity = require_identity()
        health = health_to_proto(await self._scheduler.health(), self._retry_after_seconds)
        return health if sees_host_figures(identity) else for_users(health)

    async def RunCleanup(self, request, context) -> cleanup_pb2.RunCleanupResponse:
        outcomes = await self._scheduler.run(request.task_name)
        return cleanup_pb2.RunCleanupResponse(
            results=[outcome_to_proto(o) for o in outcomes], bytes_freed=sum(o.bytes_freed for o in outcomes)
        )

    async def EmergencyCleanup(self, request, context) -> cleanup_pb2.EmergencyCleanupResponse:
        if request.target_free_bytes < 0:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                "target_free_bytes must not be negative.",
                [FieldViolation("target_free_bytes", "must be >= 0 (0 runs every step)")],
            )
        report = await self._scheduler.emergency(request.target_free_bytes)
        return cleanup_pb2.EmergencyCleanupResponse(
            results=[outcome_to_proto(o) for o in report.outcomes],
            bytes_freed=report.bytes_freed,
            level_before=int(report.level_before),
            level_after=int(report.level_after),
        )

    async def ListCleanupTasks(self, request, context) -> cleanup_pb2.ListCleanupTasksResponse:
        # Removed paths name other users' sessions: only admins see them.
        with_paths = require_identity().is_admin
        # The task list is fixed at start-up, so a position in it is a stable cursor.
        page = open_page("ListCleanupTasks", request.page_size, request.page_token, int_cursor)
        offset = page.cursor or 0
        window = list(enumerate(self._scheduler.states))[offset : offset + page.limit]
        shown, next_token = page.finish(window, lambda numbered: [numbered[0] + 1])
        return cleanup_pb2.ListCleanupTasksResponse(
            tasks=[task_to_proto(state, with_paths) for _, state in shown], next_page_token=next_token
        )
