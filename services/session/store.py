"""Session storage behind a small interface, so a Redis store can stand beside SQLite.

Every write is a single statement: creates check the caps and insert in one
statement, updates are compare-and-set on `version`, deletes of expired sessions
re-check expiry. That keeps them atomic without holding locks across awaits.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from libs.common.settings import MeshSettings
from libs.common.sqlite import SqliteDatabase
from services.session.config import SessionSettings
from services.session.lifecycle import NEVER
from services.session.records import SessionRecord, decode_assets, encode_assets
from services.session.sqlite_checkpoints import WalCheckpointer
from services.session.sqlite_schema import migrate

DATABASE_FILE = "session.sqlite3"


class CreateOutcome(enum.Enum):
    CREATED = "created"
    USER_LIMIT = "user_limit"
    GLOBAL_LIMIT = "global_limit"


@dataclass(frozen=True)
class PageCursor:
    """Position after the last session of a page (sessions are listed newest first)."""

    create_time: float
    session_id: str


class SessionStore(Protocol):
    async def open(self) -> SessionStore: ...
    async def close(self) -> None: ...
    async def create_within_limits(
        self, record: SessionRecord, per_user: int, global_cap: int, now: float
    ) -> CreateOutcome: ...
    async def get(self, session_id: str) -> SessionRecord | None: ...
    async def list_for_user(
        self, user_id: str, after: PageCursor | None, limit: int
    ) -> list[SessionRecord]: ...
    async def list_active(
        self, user_id: str | None, after: PageCursor | None, limit: int, now: float
    ) -> list[SessionRecord]: ...
    async def replace(self, record: SessionRecord, expected_version: int) -> bool: ...
    async def delete(self, session_id: str, expected_version: int | None = None) -> bool: ...
    async def delete_if_expired(self, session_id: str, now: float) -> bool: ...
    async def expired(self, now: float, limit: int) -> list[SessionRecord]: ...
    async def earliest_expiry(self, user_id: str | None, now: float) -> float | None: ...
    async def count_active(self, now: float) -> int: ...


_COLUMNS = (
    "session_id, user_id, state, display_name, active_job_id, create_time, update_time, "
    "last_active_time, expires_at, version, assets"
)
# Only these constant names are ever interpolated into SQL; values are always bound.
_SELECT = f"SELECT {_COLUMNS} FROM sessions"  # noqa: S608


def _row(record: SessionRecord) -> tuple:
    return (
        record.session_id,
        record.user_id,
        record.state,
        record.display_name,
        record.active_job_id,
        record.create_time,
        record.update_time,
        record.last_active_time,
        record.expires_at,
        record.version,
        encode_assets(record.assets),
    )


def _record(row: tuple) -> SessionRecord:
    return SessionRecord(
        session_id=row[0],
        user_id=row[1],
        state=row[2],
        display_name=row[3],
        active_job_id=row[4],
        create_time=row[5],
        update_time=row[6],
        last_active_time=row[7],
        expires_at=row[8] if math.isfinite(row[8]) else NEVER,
        version=row[9],
        assets=decode_assets(row[10]),
    )


class SqliteSessionStore:
    """SQLite in WAL mode, its statements on one thread of their own (libs/common/sqlite.py);
    checkpoints run beside them (services/session/sqlite_checkpoints.py)."""

    def __init__(self, path: Path) -> None:
        # The checkpointer's thread does what SQLite's automatic checkpoint would do in a commit.
        self._db = SqliteDatabase(path, name="session", setup=migrate, pragmas=["wal_autocheckpoint=0"])
        self.checkpointer = WalCheckpointer(path)

    async def open(self) -> SqliteSessionStore:
        await self._db.open()
        await self.checkpointer.start()
        return self

    async def close(self) -> None:
        await self.checkpointer.stop()
        await self._db.close()

    async def create_within_limits(
        self, record: SessionRecord, per_user: int, global_cap: int, now: float
    ) -> CreateOutcome:
        # Check and insert in one statement, so concurrent creates cannot overshoot a cap.
        # Row counts (kept by triggers) admit in O(1) while well under a cap; only near one
        # are the unexpired sessions counted, and each count stops at its cap.
        inserted = await self._db.changed(
            f"INSERT INTO sessions ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "  # noqa: S608
            "WHERE (coalesce((SELECT sessions FROM session_counts WHERE user_id = ?), 0) < ? "
            "OR (SELECT count(*) FROM (SELECT 1 FROM sessions WHERE user_id = ? AND expires_at > ? "
            "LIMIT ?)) < ?) "
            "AND ((SELECT sessions FROM session_total) < ? "
            "OR (SELECT count(*) FROM (SELECT 1 FROM sessions WHERE expires_at > ? LIMIT ?)) < ?)",
            (
                *_row(record),
                record.user_id,
                per_user,
                record.user_id,
                now,
                per_user,
                per_user,
                global_cap,
                now,
                global_cap,
                global_cap,
            ),
        )
        if inserted:
            return CreateOutcome.CREATED
        rows = await self._db.fetchall(
            "SELECT count(*) FROM (SELECT 1 FROM sessions WHERE user_id = ? AND expires_at > ? LIMIT ?)",
            (record.user_id, now, per_user),
        )
        return CreateOutcome.USER_LIMIT if rows[0][0] >= per_user else CreateOutcome.GLOBAL_LIMIT

    async def get(self, session_id: str) -> SessionRecord | None:
        rows = await self._db.fetchall(f"{_SELECT} WHERE session_id = ?", (session_id,))
        return _record(rows[0]) if rows else None

    async def list_for_user(self, user_id: str, after: PageCursor | None, limit: int) -> list[SessionRecord]:
        if after is None:
            sql = f"{_SELECT} WHERE user_id = ? "
            params: tuple = (user_id,)
        else:
            sql = (
                f"{_SELECT} WHERE user_id = ? AND (create_time < ? OR (create_time = ? AND session_id < ?)) "
            )
            params = (user_id, after.create_time, after.create_time, after.session_id)
        sql += "ORDER BY create_time DESC, session_id DESC LIMIT ?"
        return [_record(row) for row in await self._db.fetchall(sql, (*params, limit))]

    async def list_active(
        self, user_id: str | None, after: PageCursor | None, limit: int, now: float
    ) -> list[SessionRecord]:
        """Unexpired sessions of every user (or of `user_id`), newest first."""
        conditions = ["expires_at > ?"]
        params: list = [now]
        if user_id is not None:
            conditions.append("user_id = ?")
            params.append(user_id)
        if after is not None:
            conditions.append("(create_time < ? OR (create_time = ? AND session_id < ?))")
            params += [after.create_time, after.create_time, after.session_id]
        sql = (
            # Only constant condition texts are joined; every value is bound.
            f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY create_time DESC, session_id DESC LIMIT ?"
        )
        return [_record(row) for row in await self._db.fetchall(sql, (*params, limit))]

    async def replace(self, record: SessionRecord, expected_version: int) -> bool:
        row = _row(record)
        changed = await self._db.changed(
            "UPDATE sessions SET user_id = ?, state = ?, display_name = ?, active_job_id = ?, "
            "create_time = ?, update_time = ?, last_active_time = ?, expires_at = ?, version = ?, "
            "assets = ? WHERE session_id = ? AND version = ?",
            (*row[1:], record.session_id, expected_version),
        )
        return changed == 1

    async def delete(self, session_id: str, expected_version: int | None = None) -> bool:
        if expected_version is None:
            return await self._db.changed("DELETE FROM sessions WHERE session_id = ?", (session_id,)) == 1
        changed = await self._db.changed(
            "DELETE FROM sessions WHERE session_id = ? AND version = ?", (session_id, expected_version)
        )
        return changed == 1

    async def delete_if_expired(self, session_id: str, now: float) -> bool:
        changed = await self._db.changed(
            "DELETE FROM sessions WHERE session_id = ? AND expires_at <= ?", (session_id, now)
        )
        return changed == 1

    async def expired(self, now: float, limit: int) -> list[SessionRecord]:
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
            (now, limit if limit > 0 else -1),
        )
        return [_record(row) for row in rows]

    async def earliest_expiry(self, user_id: str | None, now: float) -> float | None:
        if user_id is None:
            rows = await self._db.fetchall(
                "SELECT min(expires_at) FROM sessions WHERE expires_at > ?", (now,)
            )
        else:
            rows = await self._db.fetchall(
                "SELECT min(expires_at) FROM sessions WHERE user_id = ? AND expires_at > ?", (user_id, now)
            )
        value = rows[0][0] if rows else None
        return value if value is not None and math.isfinite(value) else None

    async def count_active(self, now: float) -> int:
        """Sessions neither expired nor deleted (what the caps count)."""
        rows = await self._db.fetchall("SELECT count(*) FROM sessions WHERE expires_at > ?", (now,))
        return int(rows[0][0])


async def open_store(settings: MeshSettings, session_settings: SessionSettings) -> SessionStore:
    """Redis when the mesh has one (replicas share sessions), else this machine's SQLite file."""
    if settings.redis_url:
        from services.session.redis_store import RedisSessionStore  # it imports this module

        return await RedisSessionStore(settings.redis_url, session_settings.session_redis_namespace).open()
    return await SqliteSessionStore(settings.data_dir / DATABASE_FILE).open()
