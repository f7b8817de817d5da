"""Keeps a process's keyring in step with the API keys file, without a restart.

Every process that authenticates (the gateway and each gRPC service, every replica of
them) runs one watcher: it looks at the file's identity (inode, size, mtime, ctime) every
VIDSYNTH_API_KEYS_RELOAD_SECONDS and reloads it when that changed, and at once on SIGHUP.
A file that cannot be used on reload leaves the last good keys in place and is logged
(`keys_file.reload_failed`, and the reloads counter); at start the same file stops the
process instead (libs/common/grpc_server.keyring_from_settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import structlog
from prometheus_client import Counter

from libs.common.identity import Keyring
from libs.common.keys_file import FileKeys, KeysFileError, load_keys_file

log = structlog.get_logger("vidsynth.keys")

KEYS_FILE_RELOADS = Counter(
    "vidsynth_api_keys_file_reloads_total", "Reloads of the API keys file", ["outcome"]
)

FileIdentity = tuple[int, int, int, int, int] | None
# Never equal to a real identity: the first check after start reads the file again, so a
# change between the start-up read and the watcher's start is not missed.
_UNSEEN = (-1, -1, -1, -1, -1)


def file_identity(path: Path) -> FileIdentity:
    """What changes when the file is replaced or rewritten (None: it is not there)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class KeysFileWatcher:
    def __init__(self, keyring: Keyring, path: Path, interval_seconds: float) -> None:
        self._keyring = keyring
        self._path = path
        self._interval = interval_seconds
        self._seen: FileIdentity = _UNSEEN
        self._installed: FileKeys | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="keys-file-watcher")

    def install_sighup(self) -> None:
        """SIGHUP reloads at once (the main thread's loop only; elsewhere polling does)."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload_now)

    def reload_now(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                await self.check(forced)
            except Exception:  # a watcher that dies would freeze the keys: log and go on
                log.exception("keys_file.watch_failed")

    async def check(self, forced: bool = False) -> bool:
        """Reloads when the file changed (or `forced`); True when new keys were installed."""
        identity = await asyncio.to_thread(file_identity, self._path)
        if identity == self._seen and not forced:
            return False
        self._seen = identity
        try:
            keys = await asyncio.to_thread(load_keys_file, self._path)
        except KeysFileError as error:
            KEYS_FILE_RELOADS.labels("failed").inc()
            log.error("keys_file.reload_failed", error=str(error), kept="the last good keys")
            return False
        self._keyring.install(keys)
        KEYS_FILE_RELOADS.labels("ok").inc()
        if keys != self._installed:
            log.info("keys_file.reloaded", keys=len(keys.entries), admins=len(keys.admins), forced=forced)
        self._installed = keys
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
