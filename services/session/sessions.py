"""The session manager: ownership, limits, TTL, states and isolation directories.

Every public method takes the caller's user id from the authenticated identity;
another user's session is indistinguishable from a missing one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from libs.common import ids
from libs.common.errors import FieldViolation, VidsynthError
from libs.common.pagination import open_page
from services.session import files, lifecycle, validation
from services.session.config import SessionSettings
from services.session.lifecycle import PROCESSING, TtlPolicy
from services.session.pagination import session_cursor, session_key
from services.session.peers import SessionPeers
from services.session.records import SessionRecord, active_to_proto, timestamp, to_proto
from services.session.store import CreateOutcome, SessionStore
from vidsynth.v1 import common_pb2, session_pb2

log = structlog.get_logger("vidsynth.session")

Change = Callable[[SessionRecord, float], SessionRecord]
_MAX_WRITE_ATTEMPTS = 20
MAX_BATCH_GET = 1000


@dataclass
class SweepResult:
    session_ids: list[str]
    bytes_freed: int


@dataclass(frozen=True)
class EndResult:
    """A session that was ended: whose it was, the job cancelled, what was freed."""

    session_id: str
    user_id: str
    cancelled_job_id: str
    bytes_freed: int
    events_deleted: int


@dataclass(frozen=True)
class ActiveView:
    """An active session as operators list it."""

    record: SessionRecord
    disk_used_bytes: int


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        settings: SessionSettings,
        sessions_dir: Path,
        *,
        peers: SessionPeers | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sessions_dir = sessions_dir
        self._peers = peers
        self._clock = clock
        self.ttl = TtlPolicy(settings.session_idle_ttl_seconds, settings.session_processing_ttl_seconds)

    def to_proto(self, record: SessionRecord) -> session_pb2.Session:
        return to_proto(record, self.ttl, self._clock())

    def to_active_proto(self, view: ActiveView) -> session_pb2.ActiveSession:
        return active_to_proto(view.record, view.disk_used_bytes, self.ttl, self._clock())

    # --- user-facing -------------------------------------------------------------------

    async def create(self, user_id: str, display_name: str) -> SessionRecord:
        name = validation.clean_display_name(display_name)
        now = self._clock()
        record = SessionRecord(
            session_id=ids.new_id("session"),
            user_id=user_id,
            state=lifecycle.CREATED,
            display_name=name,
            create_time=now,
            update_time=now,
            last_active_time=now,
            expires_at=self.ttl.expires_at(lifecycle.CREATED, now),
        )
        outcome = await self._store.create_within_limits(
            record, self._settings.session_max_per_user, self._settings.session_max_global, now
        )
        if outcome is not CreateOutcome.CREATED:
            raise await self._limit_error(user_id if outcome is CreateOutcome.USER_LIMIT else None, now)
        try:
            await files.create_session_dirs(self._sessions_dir, record.session_id)
        except BaseException:
            await self._store.delete(record.session_id)
            raise
        log.info("session.created", session_id=record.session_id)
        return record

    async def get(self, user_id: str, session_id: str) -> SessionRecord:
        interval = self._settings.session_activity_write_interval_seconds
        return await self._refresh_activity(user_id, session_id, fresh_since=self._clock() - interval)

    async def touch(self, user_id: str, session_id: str) -> SessionRecord:
        return await self._refresh_activity(user_id, session_id, fresh_since=self._clock())

    async def list(
        self, user_id: str, requested_page_size: int, page_token: str
    ) -> tuple[list[SessionRecord], str]:
        page = open_page("ListSessions", requested_page_size, page_token, session_cursor)
        records = await self._store.list_for_user(user_id, page.cursor, page.limit)
        return page.finish(records, session_key)

    async def delete(self, user_id: str, session_id: str, force: bool) -> int:
        ended = await self._end(session_id, force, owner=user_id)
        return ended.bytes_freed

    # --- admin -------------------------------------------------------------------------

    async def list_active(
        self, requested_page_size: int, page_token: str, user_id: str
    ) -> tuple[list[ActiveView], str]:
        """Every user's unexpired sessions (or `user_id`'s), newest first, with the disk
        each one's files use. Read-only: no session's activity moves."""
        if user_id:
            validation.check_user_filter(user_id)
        page = open_page("ListActiveSessions", requested_page_size, page_token, session_cursor, [user_id])
        found = await self._store.list_active(user_id or None, page.cursor, page.limit, self._clock())
        records, token = page.finish(found, session_key)
        used = await files.disk_used(self._sessions_dir, [r.session_id for r in records])
        return [ActiveView(r, u) for r, u in zip(records, used, strict=True)], token

    async def end(self, session_id: str, force: bool) -> EndResult:
        """Ends any user's session (an expired one not yet swept too)."""
        return await self._end(session_id, force, owner=None)

    async def _end(self, session_id: str, force: bool, owner: str | None) -> EndResult:
        """Cancels the session's job (with `force`), then removes its record at the version
        checked (a job that started meanwhile is seen), its files and its events."""
        cancelled, was_processing = "", False
        for _ in range(_MAX_WRITE_ATTEMPTS):
            record = await (self._owned(owner, session_id) if owner is not None else self._any(session_id))
            if record.state == PROCESSING:
                if not force:
                    raise VidsynthError(
                        "INVALID_SESSION_STATE",
                        "A job is processing in this session; cancel it or delete with force.",
                    )
                was_processing = True
                if await self._cancel_active_job(record):
                    cancelled = record.active_job_id
            if await self._store.delete(session_id, record.version):
                break
        else:
            raise VidsynthError("SERVICE_UNAVAILABLE", "The session is too busy; try again.")
        freed = await files.remove_session_dirs(self._sessions_dir, session_id)
        events = 0
        if self._peers is not None:
            # A job that was processing (cancelled or not) may still publish a last event.
            events = await self._peers.delete_events(session_id, expect_late=was_processing)
        log.info(
            "session.deleted" if owner is not None else "session.ended_by_admin",
            session_id=session_id,
            owner=record.user_id,
            bytes_freed=freed,
            events_deleted=events,
            forced=force,
            cancelled_job_id=cancelled,
        )
        return EndResult(session_id, record.user_id, cancelled, freed, events)

    # --- internal (mesh) ---------------------------------------------------------------

    async def register_asset(self, user_id: str, session_id: str, asset: common_pb2.Asset) -> SessionRecord:
        validation.check_asset(asset)
        registered = common_pb2.Asset()
        registered.CopyFrom(asset)
        if not registered.asset_id:
            registered.asset_id = ids.new_id("asset")
        replaced: list[str] = []

        def change(record: SessionRecord, now: float) -> SessionRecord:
            lifecycle.check_assets_editable(record.state)
            if not registered.HasField("create_time"):
                registered.create_time.CopyFrom(timestamp(now))
            kept = tuple(a for a in record.assets if a.kind != registered.kind)
            replaced[:] = [
                a.stored_name
                for a in record.assets
                if a.kind == registered.kind and a.stored_name != registered.stored_name
            ]
            assets = (*kept, registered)
            state = lifecycle.state_for_assets(a.kind for a in assets)
            return self._refreshed(record, now).evolve(
                assets=assets, state=state, update_time=now, active_job_id=""
            )

        record = await self._mutate(user_id, session_id, change)
        for stored_name in replaced:
            await files.remove_asset_file(self._sessions_dir, session_id, stored_name)
        log.info("session.asset_registered", session_id=session_id, kind=registered.kind)
        return record

    async def update_state(self, user_id: str, session_id: str, target: int, job_id: str) -> SessionRecord:
        """The stage runner's transitions. With no user id (a background runner) any
        session may be moved; with one, only that user's."""
        validation.check_requested_state(target)
        if target == PROCESSING or job_id:
            ids.check_id("job", job_id)

        def change(record: SessionRecord, now: float) -> SessionRecord:
            if record.state == PROCESSING and target == PROCESSING and record.active_job_id == job_id:
                return self._refreshed(record, now)  # a resumed job says it again
            lifecycle.check_transition(record.state, target)
            if record.state == PROCESSING and job_id and job_id != record.active_job_id:
                raise VidsynthError("INVALID_SESSION_STATE", "Another job is processing in this session.")
            active = job_id if target == PROCESSING else ""
            moved = record.evolve(state=target, active_job_id=active, update_time=now)
            return self._refreshed(moved, now)

        record = await self._mutate(user_id or None, session_id, change)
        log.info("session.state_changed", session_id=session_id, state=lifecycle.state_name(target))
        return record

    async def sweep(self, limit: int) -> SweepResult:
        """Removes expired sessions (rows, then directories). Processing ones never expire."""
        now = self._clock()
        result = SweepResult([], 0)
        for record in await self._store.expired(now, max(limit, 0)):
            if not await self._store.delete_if_expired(record.session_id, now):
                continue
            result.bytes_freed += await files.remove_session_dirs(self._sessions_dir, record.session_id)
            result.session_ids.append(record.session_id)
        if result.session_ids:
            log.info("session.swept", count=len(result.session_ids), bytes_freed=result.bytes_freed)
        return result

    async def batch_get(self, session_ids: list[str]) -> list[SessionRecord]:
        """Internal: any owner's sessions, read-only; unknown ids are skipped."""
        if len(session_ids) > MAX_BATCH_GET:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                f"Ask for at most {MAX_BATCH_GET} sessions at once.",
                [FieldViolation("session_ids", f"at most {MAX_BATCH_GET} ids")],
            )
        for session_id in session_ids:
            ids.check_id("session", session_id, "session_ids")
        found = [await self._store.get(session_id) for session_id in dict.fromkeys(session_ids)]
        return [record for record in found if record is not None]

    # --- helpers -----------------------------------------------------------------------

    def _refreshed(self, record: SessionRecord, now: float) -> SessionRecord:
        return record.evolve(last_active_time=now, expires_at=self.ttl.expires_at(record.state, now))

    async def _owned(self, user_id: str | None, session_id: str) -> SessionRecord:
        """The session if `user_id` owns it (None: any owner) and it has not expired."""
        ids.check_id("session", session_id)
        record = await self._store.get(session_id)
        if record is None or (user_id is not None and record.user_id != user_id):
            raise VidsynthError("SESSION_NOT_FOUND", metadata={"session_id": session_id})
        if record.is_expired(self._clock()):
            raise VidsynthError("SESSION_EXPIRED", metadata={"session_id": session_id})
        return record

    async def _refresh_activity(self, user_id: str, session_id: str, fresh_since: float) -> SessionRecord:
        """Records activity unless it was recorded at or after `fresh_since`, by this call
        or a concurrent one: many simultaneous reads of one session then cost one write,
        and none of them fails for losing the compare-and-set to another."""
        for _ in range(_MAX_WRITE_ATTEMPTS):
            current = await self._owned(user_id, session_id)
            if current.last_active_time >= fresh_since:
                return current
            updated = self._refreshed(current, self._clock()).evolve(version=current.version + 1)
            if await self._store.replace(updated, current.version):
                return updated
        raise VidsynthError("SERVICE_UNAVAILABLE", "The session is too busy; try again.")

    async def _mutate(self, user_id: str | None, session_id: str, change: Change) -> SessionRecord:
        """Compare-and-set: re-reads and re-applies `change` when another write got in first."""
        for _ in range(_MAX_WRITE_ATTEMPTS):
            current = await self._owned(user_id, session_id)
            updated = change(current, self._clock())
            updated = updated.evolve(version=current.version + 1)
            if await self._store.replace(updated, current.version):
                return updated
        raise VidsynthError("SERVICE_UNAVAILABLE", "The session is too busy; try again.")

    async def _limit_error(self, user_id: str | None, now: float) -> VidsynthError:
        earliest = await self._store.earliest_expiry(user_id, now)
        wait = (earliest - now) if earliest is not None else self.ttl.idle_seconds
        scope = "You have" if user_id is not None else "The server has"
        limit = (
            self._settings.session_max_per_user if user_id is not None else self._settings.session_max_global
        )
        return VidsynthError(
            "SESSION_LIMIT_REACHED",
            f"{scope} too many active sessions; delete one or try again later.",
            retry_after_seconds=max(1.0, round(wait, 3)),
            metadata={"scope": "user" if user_id is not None else "global", "limit": str(limit)},
        )

    async def _any(self, session_id: str) -> SessionRecord:
        """The session whoever owns it, expired or not (operators end those too)."""
        ids.check_id("session", session_id)
        record = await self._store.get(session_id)
        if record is None:
            raise VidsynthError("SESSION_NOT_FOUND", metadata={"session_id": session_id})
        return record

    async def _cancel_active_job(self, record: SessionRecord) -> bool:
        """Asks the runner to cancel the session's job as its owner; the session goes either
        way (a runner that missed it finds the files gone)."""
        if not record.active_job_id or self._peers is None:
            return False
        return await self._peers.cancel_job(record.active_job_id, record.user_id)
