"""Spooling an upload to disk as it streams in: size cap enforced at the first byte
over, sha256 computed on the way, the file kept inside the session's directory
under a generated name."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from libs.common.errors import VidsynthError

SPOOL_PREFIX = ".upload-"


class Spool:
    """A temp file for one upload. Use as an async context manager: the file is removed
    on exit unless `detach()` handed it on (to quarantine or normalisation)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = directory / f"{SPOOL_PREFIX}{secrets.token_hex(12)}"
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._fd: int | None = None

    async def __aenter__(self) -> Spool:
        self._fd = await asyncio.to_thread(
            os.open, self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._close()
        await asyncio.to_thread(self.discard)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_and_hash(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._hash.update(chunk)

    async def write(self, chunk: bytes) -> None:
        """Appends a chunk; FILE_TOO_LARGE as soon as the cap would be passed."""
        if self.size + len(chunk) > self.max_bytes:
            raise VidsynthError(
                "FILE_TOO_LARGE", f"The file is larger than the {self.max_bytes // (1024 * 1024)} MB allowed."
            )
        self.size += len(chunk)
        await asyncio.to_thread(self._write_and_hash, chunk)

    async def finish(self) -> None:
        """All bytes received: flushed and closed; FILE_EMPTY when there were none."""
        await asyncio.to_thread(self._close)
        if self.size == 0:
            raise VidsynthError("FILE_EMPTY")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Blocking: removes the spooled bytes (no-op once moved elsewhere)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
