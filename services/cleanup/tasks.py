"""The cleanup tasks: what each removes, and the outcome it records.

Every task is a small async function over a CleanupContext; file work runs off the
event loop. Files inside a session directory (work, outputs) are removed only for
sessions SessionService reports as not processing (see sessions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import structlog

from libs.common import ids
from libs.common.clients import MeshClients
from libs.common.errors import VidsynthError
from libs.common.identity import current_identity
from libs.common.metrics import CLEANUP_BYTES_FREED, CLEANUP_ITEMS_REMOVED
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from services.cleanup import fs
from services.cleanup.config import DAY, CleanupSettings
from services.cleanup.sessions import SessionStatus, SessionStatusSource, session_dirs
from vidsynth.internal.v1 import progress_internal_pb2, session_internal_pb2

log = structlog.get_logger("vidsynth.cleanup.tasks")

MAX_LISTED_REMOVALS = 200
SESSION_SUBDIRS = frozenset({"assets", "work", "output"})


class Priority(enum.IntEnum):
    """Same numbers as vidsynth.v1.CleanupPriority."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


@dataclass
class Outcome:
    """What one run removed; becomes a CleanupResult."""

    task_name: str
    items_removed: int = 0
    bytes_freed: int = 0
    removed: list[str] = field(default_factory=list)
    error_code: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None

    def add(self, label: str, bytes_freed: int) -> None:
        self.items_removed += 1
        self.bytes_freed += bytes_freed
        if len(self.removed) < MAX_LISTED_REMOVALS:
            self.removed.append(label)


@dataclass
class CleanupContext:
    settings: CleanupSettings
    data_dir: Path
    clients: MeshClients
    sessions: SessionStatusSource

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def label(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.data_dir))
        except ValueError:
            return path.name


@contextlib.contextmanager
def no_acting_user() -> Iterator[None]:
    """Internal sweeps act for the mesh itself, not for whoever asked for the run."""
    token = current_identity.set(None)
    try:
        yield
    finally:
        current_identity.reset(token)


async def _remove_entries(ctx: CleanupContext, out: Outcome, entries: list[fs.Entry]) -> None:
    for entry in entries:
        freed = await asyncio.to_thread(fs.remove, entry.path)
        out.add(ctx.label(entry.path), freed)


async def _cleanable_sessions(ctx: CleanupContext) -> list[tuple[str, Path]]:
    """Session dirs whose session is known not to be processing."""
    cleanable = []
    skipped = 0
    for name, path, valid in await asyncio.to_thread(session_dirs, ctx.sessions_dir):
        if not valid:
            continue
        status = await ctx.sessions.status(name)
        if status.may_clean_files:
            cleanable.append((name, path))
        else:
            skipped += 1
    if skipped:
        log.info("cleanup.sessions_left_alone", count=skipped)
    return cleanable


async def sweep_expired_sessions(ctx: CleanupContext, out: Outcome, limit: int | None = None) -> None:
    """SessionService removes expired sessions' rows and dirs; we drop their events and
    any directory left behind."""
    batch = ctx.settings.cleanup_sweep_batch if limit is None else limit
    with no_acting_user():
        response = await ctx.clients.session_internal.SweepExpiredSessions(
            session_internal_pb2.SweepExpiredSessionsRequest(limit=batch)
        )
        out.bytes_freed += response.bytes_freed
        for session_id in response.session_ids:
            if not ids.is_valid_id("session", session_id):
                continue
            out.add(f"sessions/{session_id}", 0)
            try:
                await ctx.clients.progress_internal.DeleteSessionEvents(
                    progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id)
                )
            except grpc.RpcError as rpc_error:
                out.error_code = error_from_rpc_error(rpc_error).code
                log.warning("cleanup.events_not_deleted", session_id=session_id, code=out.error_code)
            leftover = session_paths(ctx.sessions_dir, session_id).root
            out.bytes_freed += await asyncio.to_thread(fs.remove, leftover)


async def remove_finished_work(ctx: CleanupContext, out: Outcome, max_age: float | None = None) -> None:
    """Work files of sessions not processing (their jobs are finished) past an age."""
    max_age = ctx.settings.cleanup_work_max_age_seconds if max_age is None else max_age
    now = time.time()
    for _, path in await _cleanable_sessions(ctx):
        entries = await asyncio.to_thread(fs.children, path / "work")
        await _remove_entries(ctx, out, fs.older_than(entries, max_age, now))


async def remove_stale_spools(ctx: CleanupContext, out: Outcome, max_age: float | None = None) -> None:
    """Leftover upload spools: anything in data_dir/tmp and stray files at a session's
    root (an upload never lasts as long as the age limit)."""
    max_age = ctx.settings.cleanup_spool_max_age_seconds if max_age is None else max_age
    now = time.time()
    entries = await asyncio.to_thread(fs.children, ctx.tmp_dir)
    await _remove_entries(ctx, out, fs.older_than(entries, max_age, now))
    for _, path, valid in await asyncio.to_thread(session_dirs, ctx.sessions_dir):
        if not valid:
            continue
        # The session's own subdirectories are skipped before their trees are walked.
        strays = await asyncio.to_thread(fs.children, path, SESSION_SUBDIRS)
        await _remove_entries(ctx, out, fs.older_than(strays, max_age, now))


async def remove_old_quarantine(ctx: CleanupContext, out: Outcome) -> None:
    max_age = ctx.settings.cleanup_quarantine_max_age_days * DAY
    entries = await asyncio.to_thread(fs.children, ctx.quarantine_dir)
    await _remove_entries(ctx, out, fs.older_than(entries, max_age, time.time()))


async def expired_outputs(ctx: CleanupContext, max_age: float) -> list[fs.Entry]:
    """Outputs past `max_age` of sessions not processing, oldest first."""
    now = time.time()
    found: list[fs.Entry] = []
    for _, path in await _cleanable_sessions(ctx):
        found += fs.older_than(await asyncio.to_thread(fs.children, path / "output"), max_age, now)
    return sorted(found, key=lambda e: e.newest_mtime)


async def remove_expired_outputs(ctx: CleanupContext, out: Outcome) -> None:
    retention = ctx.settings.cleanup_output_retention_days * DAY
    await _remove_entries(ctx, out, await expired_outputs(ctx, retention))


async def remove_orphan_dirs(ctx: CleanupContext, out: Outcome) -> None:
    """Entries under sessions/ that no session can own: malformed names, or ids the
    session source reports ABSENT; only once older than the configured minimum age."""
    now = time.time()
    min_age = ctx.settings.cleanup_orphan_min_age_seconds
    for name, path, valid in await asyncio.to_thread(session_dirs, ctx.sessions_dir):
        if valid and await ctx.sessions.status(name) is not SessionStatus.ABSENT:
            continue
        entry = await asyncio.to_thread(fs.describe, path)
        if now - entry.newest_mtime >= min_age:
            await _remove_entries(ctx, out, [entry])


TaskFn = Callable[[CleanupContext, Outcome], Awaitable[None]]


async def run_outcome(name: str, ctx: CleanupContext, run: TaskFn) -> Outcome:
    """Runs one task and records its outcome; a failure becomes the outcome's error
    code (what was removed before it still counts), never an exception."""
    out = Outcome(name)
    try:
        await run(ctx, out)
    except VidsynthError as error:
        out.error_code = error.code
    except grpc.RpcError as rpc_error:
        out.error_code = error_from_rpc_error(rpc_error).code
    except OSError:
        log.exception("cleanup.task_failed", task=name)
        out.error_code = "INTERNAL"
    out.ended_at = datetime.now(UTC)
    CLEANUP_BYTES_FREED.labels(name).inc(out.bytes_freed)
    CLEANUP_ITEMS_REMOVED.labels(name).inc(out.items_removed)
    log.info(
        "cleanup.task_ran",
        task=name,
        items_removed=out.items_removed,
        bytes_freed=out.bytes_freed,
        error_code=out.error_code or None,
    )
    return out


@dataclass(frozen=True)
class TaskSpec:
    name: str
    priority: Priority
    interval_seconds: float
    run: TaskFn
    description: str


def task_specs(settings: CleanupSettings) -> list[TaskSpec]:
    """Every scheduled task, highest priority first."""
    specs = [
        TaskSpec(
            "expired_sessions",
            Priority.HIGH,
            settings.cleanup_sweep_interval_seconds,
            sweep_expired_sessions,
            "Expired sessions with their files and progress events.",
        ),
        TaskSpec(
            "stale_spools",
            Priority.MEDIUM,
            settings.cleanup_spool_interval_seconds,
            remove_stale_spools,
            "Leftover upload spools and temp files.",
        ),
        TaskSpec(
            "finished_job_work",
            Priority.MEDIUM,
            settings.cleanup_work_interval_seconds,
            remove_finished_work,
            "Work files of sessions that are not processing.",
        ),
        TaskSpec(
            "output_retention",
            Priority.LOW,
            settings.cleanup_output_interval_seconds,
            remove_expired_outputs,
            "Outputs past the retention period.",
        ),
        TaskSpec(
            "quarantine",
            Priority.LOW,
            settings.cleanup_quarantine_interval_seconds,
            remove_old_quarantine,
            "Quarantined uploads past their retention.",
        ),
        TaskSpec(
            "orphan_dirs",
            Priority.LOW,
            settings.cleanup_orphan_interval_seconds,
            remove_orphan_dirs,
            "Directories under sessions/ that belong to no session.",
        ),
    ]
    return sorted(specs, key=lambda s: (-s.priority, s.name))
