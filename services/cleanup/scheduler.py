"""Runs the cleanup tasks on their intervals (highest priority first), watches the
resource level, and starts the emergency cleanup by itself at critical disk.

One lock serialises every run (scheduled, RunCleanup, EmergencyCleanup), so two
sweeps never race over the same directories.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from libs.common.errors import FieldViolation, VidsynthError
from libs.common.metrics import (
    CLEANUP_BYTES_FREED,
    CLEANUP_ITEMS_REMOVED,
    RESOURCE_LEVEL,
    RESOURCE_USED_PERCENT,
)
from services.cleanup.emergency import EmergencyReport, emergency_cleanup
from services.cleanup.monitor import HealthSnapshot, Level, ResourceMonitor
from services.cleanup.state_file import StateFile
from services.cleanup.tasks import CleanupContext, Outcome, TaskSpec, run_outcome

log = structlog.get_logger("vidsynth.cleanup.scheduler")

MIN_TICK_SECONDS = 0.05
MAX_TICK_SECONDS = 30.0


@dataclass
class TaskState:
    spec: TaskSpec
    next_run: datetime
    last_run: datetime | None = None
    last_result: Outcome | None = None


class CleanupScheduler:
    def __init__(
        self,
        ctx: CleanupContext,
        specs: list[TaskSpec],
        monitor: ResourceMonitor,
        state_file: StateFile | None = None,
        restored: dict[str, Outcome] | None = None,
    ) -> None:
        self._ctx = ctx
        self._monitor = monitor
        self._state_file = state_file
        now = datetime.now(UTC)
        self._states = {s.name: self._initial_state(s, (restored or {}).get(s.name), now) for s in specs}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task | None = None
        self._next_monitor = now
        for spec in specs:  # every task's series exists from the start, at 0
            CLEANUP_BYTES_FREED.labels(spec.name)
            CLEANUP_ITEMS_REMOVED.labels(spec.name)

    @staticmethod
    def _initial_state(spec: TaskSpec, last: Outcome | None, now: datetime) -> TaskState:
        # Not all at once at boot: a first run waits up to a minute (or its interval).
        soon = now + timedelta(seconds=min(spec.interval_seconds, 60))
        if last is None:
            return TaskState(spec, soon)
        due = last.started_at + timedelta(seconds=spec.interval_seconds)
        return TaskState(spec, max(due, soon) if due < now else due, last.started_at, last)

    async def _save(self) -> None:
        if self._state_file is None:
            return
        results = {s.spec.name: s.last_result for s in self.states if s.last_result is not None}
        try:
            await asyncio.to_thread(self._state_file.save, results)
        except OSError as error:
            log.warning("cleanup.state_not_saved", error=str(error))

    @property
    def states(self) -> list[TaskState]:
        return list(self._states.values())

    async def health(self) -> HealthSnapshot:
        snapshot = await asyncio.to_thread(self._monitor.sample)
        for resource, usage in (("memory", snapshot.memory), ("disk", snapshot.disk)):
            RESOURCE_LEVEL.labels(resource).set(int(usage.level))
            RESOURCE_USED_PERCENT.labels(resource).set(usage.used_percent)
        return snapshot

    def _state(self, name: str) -> TaskState:
        state = self._states.get(name)
        if state is None:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                f"There is no cleanup task named {name!r}.",
                [FieldViolation("task_name", "must be one of: " + ", ".join(self._states))],
            )
        return state

    async def _run_states(self, states: list[TaskState]) -> list[Outcome]:
        """Runs the tasks one after another under the lock, then saves their results."""
        outcomes = []
        async with self._lock:
            for state in states:
                outcome = await run_outcome(state.spec.name, self._ctx, state.spec.run)
                state.last_run = outcome.started_at
                state.last_result = outcome
                state.next_run = outcome.started_at + timedelta(seconds=state.spec.interval_seconds)
                outcomes.append(outcome)
            await self._save()
        return outcomes

    async def run(self, task_name: str = "") -> list[Outcome]:
        """One task by name, or every task in priority order when the name is empty."""
        return await self._run_states([self._state(task_name)] if task_name else self.states)

    async def emergency(self, target_free_bytes: int = 0) -> EmergencyReport:
        async with self._lock:
            return await emergency_cleanup(self._ctx, self._monitor, target_free_bytes)

    async def run_due(self) -> list[Outcome]:
        now = datetime.now(UTC)
        due = [s for s in self.states if s.next_run <= now]
        return await self._run_states(due) if due else []

    async def check_resources(self) -> None:
        snapshot = await self.health()
        if snapshot.disk.level is Level.CRITICAL and self._ctx.settings.cleanup_auto_emergency:
            log.warning("cleanup.disk_critical", used_percent=snapshot.disk.used_percent)
            report = await self.emergency()
            log.warning(
                "cleanup.emergency_ran", bytes_freed=report.bytes_freed, level_after=report.level_after.name
            )

    def _seconds_to_next(self) -> float:
        upcoming = min([s.next_run for s in self.states] + [self._next_monitor])
        wait = (upcoming - datetime.now(UTC)).total_seconds()
        return min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, wait))

    async def _loop(self) -> None:
        interval = timedelta(seconds=self._ctx.settings.cleanup_monitor_interval_seconds)
        while True:
            try:
                if datetime.now(UTC) >= self._next_monitor:
                    self._next_monitor = datetime.now(UTC) + interval
                    await self.check_resources()
                await self.run_due()
            except Exception:
                # The loop must outlive any one bad run; the outcome already says what failed.
                log.exception("cleanup.loop_error")
            await asyncio.sleep(self._seconds_to_next())

    async def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="cleanup-scheduler")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
