"""WAL checkpoints for the SQLite session store, off the statement thread.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one
create in a few hundred waited 5-15 ms while pages were copied back, and so did every
statement queued behind it on the store's thread. The store turns that off and this
runs PASSIVE checkpoints from a second connection on a thread of its own, which
writers never wait for. Should the WAL still grow past a bound (writes never pausing
long enough for a passive checkpoint to catch up), a TRUNCATE checkpoint, which waits
for writers briefly, keeps the file bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

log = structlog.get_logger("vidsynth.session.checkpoints")

CHECKPOINT_INTERVAL_SECONDS = 0.1
WAL_FRAMES_BEFORE_TRUNCATE = 16_384  # 64 MiB of 4 KiB pages


class WalCheckpointer:
    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-checkpoint")
        self._task: asyncio.Task | None = None

    async def _run(self, function):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def _open(self) -> None:
        self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=5000")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def checkpoint_now(self) -> tuple[int, int]:
        """Blocking: (frames in the WAL, frames copied back) after one checkpoint."""
        if self._conn is None:
            raise RuntimeError("checkpointer is not started")
        _, wal_frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if wal_frames > WAL_FRAMES_BEFORE_TRUNCATE:
            log.warning("session.wal_truncating", wal_frames=wal_frames)
            _, wal_frames, copied = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return wal_frames, copied

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._run(self.checkpoint_now)
            except sqlite3.Error as error:  # busy or I/O trouble: the next round tries again
                log.warning("session.checkpoint_failed", error=str(error))

    async def start(self) -> None:
        await self._run(self._open)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._run(self._close)
        self._executor.shutdown(wait=False)
