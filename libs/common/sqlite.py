"""SQLite off the event loop, one way for every service: one connection, one statement thread.

Every statement of a database runs on a single worker thread of its own, one at a time, in
the order it was submitted. That keeps SQLite's blocking calls off the event loop without a
lock to contend for, makes a function run on the thread (`run`) atomic with respect to every
other statement, and lets `close` run after everything queued before it. The file is in WAL
mode with `synchronous=NORMAL`: it survives a killed process (not a power cut) at a fraction
of FULL's fsyncs, and readers in other processes do not block the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_BUSY_TIMEOUT_MS = 5000
DIR_MODE = 0o700


class SqliteDatabase:
    """One SQLite file. `setup` creates or migrates the schema when the file is opened;
    `pragmas` are applied after the common ones (e.g. `wal_autocheckpoint=0`).

    `open()` connects early, so a bad path or schema fails at start-up; a statement
    submitted before it connects first, on the statement thread."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        setup: Callable[[sqlite3.Connection], None],
        pragmas: Sequence[str] = (),
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        self._setup = setup
        self._pragmas = (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={int(busy_timeout_ms)}",
            *pragmas,
        )
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-sqlite")

    # ---- on the statement thread ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise RuntimeError(f"{self.path.name} is closed")
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            # Autocommit: each statement is its own transaction unless `transaction` opens one.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in self._pragmas:
                    conn.execute(f"PRAGMA {pragma}")
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _execute(self, sql: str, params: Sequence) -> tuple[list[tuple], int]:
        cursor = self._connection().execute(sql, params)
        try:
            return cursor.fetchall(), cursor.rowcount
        finally:
            cursor.close()

    def _call(self, function: Callable[..., T], *args) -> T:
        return function(self._connection(), *args)

    def _disconnect(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- from the event loop --------------------------------------------------------------

    async def _submit(self, function: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        await self._submit(self._connection)

    async def close(self) -> None:
        """Closes the connection after every statement submitted before it."""
        if self._closed and self._conn is None:
            return
        await self._submit(self._disconnect)
        self._executor.shutdown(wait=False)

    async def run(self, function: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args) -> T:
        """`function(connection, *args)` on the statement thread: nothing else runs meanwhile."""
        return await self._submit(self._call, function, *args)

    async def fetchall(self, sql: str, params: Sequence = ()) -> list[tuple]:
        rows, _ = await self._submit(self._execute, sql, params)
        return rows

    async def changed(self, sql: str, params: Sequence = ()) -> int:
        """Runs one writing statement; returns how many rows it changed."""
        _, count = await self._submit(self._execute, sql, params)
        return count


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction for several statements (use inside `SqliteDatabase.run`). IMMEDIATE
    takes the write lock at once, so another process cannot make it fail half way."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
