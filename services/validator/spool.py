"""Spooling an upload to disk as it streams in: size cap enforced at the first byte
over, sha256 computed on the way, the file kept inside the session's directory
under a generated name."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import secrets
import threading
from pathlib import Path

from libs.common.errors import VidsynthError
from services.validator.threads import drain, run_in_own_thread

SPOOL_PREFIX = ".upload-"
# Chunks waiting for the writer thread. The receiving loop only queues, so gRPC keeps
# reading the stream while earlier chunks are hashed and written (a loop that waited
# for each write would add that wait to every message of the transfer).
QUEUE_DEPTH = 8
_POLL_SECONDS = 0.2
_END = object()


class Spool:
    """A temp file for one upload. Use as an async context manager: the file is removed
    on exit unless it was moved elsewhere (to quarantine)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = directory / f"{SPOOL_PREFIX}{secrets.token_hex(12)}"
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        # Held while writing: the descriptor is never closed (and its number reused) mid-write.
        self._fd_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stopped = threading.Event()
        self._abandoned = threading.Event()
        self._writer: asyncio.Future | None = None

    async def __aenter__(self) -> Spool:
        self._fd = await asyncio.to_thread(
            os.open, self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        self._writer = run_in_own_thread(self._drain, name="upload-spool")
        self._writer.add_done_callback(_consume_result)
        return self

    async def __aexit__(self, *exc_info) -> None:
        # The writer stops on its own (it polls); closing waits for a write in flight.
        self._abandoned.set()
        await asyncio.to_thread(self._close_and_discard)

    def _drain(self) -> None:
        """Worker thread: writes and hashes queued chunks in order until the end mark."""
        try:
            for chunk in drain(self._queue, _END, self._abandoned, _POLL_SECONDS):
                self._write_and_hash(chunk)
        finally:
            self._stopped.set()

    def _write_and_hash(self, chunk: bytes) -> None:
        with self._fd_lock:
            if self._fd is None:
                return  # the upload was abandoned
            view = memoryview(chunk)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        self._hash.update(chunk)

    def _put(self, item: object) -> None:
        """Blocking: queues `item`, waiting while the writer is behind; gives up once it stopped."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    async def write(self, chunk: bytes) -> None:
        """Appends a chunk; FILE_TOO_LARGE as soon as the cap would be passed."""
        if self.size + len(chunk) > self.max_bytes:
            raise VidsynthError(
                "FILE_TOO_LARGE",
                f"The file is larger than the {self.max_bytes // (1024 * 1024)} MB allowed.",
                metadata={"limit_bytes": str(self.max_bytes)},
            )
        if self._writer.done():
            await self._writer  # it stopped early: raise its error (e.g. a full disk)
        self.size += len(chunk)
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(self._put, chunk)

    async def finish(self) -> None:
        """All bytes received: written and closed; FILE_EMPTY when there were none."""
        await asyncio.to_thread(self._put, _END)
        await self._writer
        await asyncio.to_thread(self._close)
        if self.size == 0:
            raise VidsynthError("FILE_EMPTY")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _close(self) -> None:
        with self._fd_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _close_and_discard(self) -> None:
        self._close()
        self.discard()

    def discard(self) -> None:
        """Blocking: removes the spooled bytes (no-op once moved elsewhere)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _consume_result(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
