"""Malware scanning with clamd's INSTREAM command through the `clamd` package.

Bytes are fed to clamd while the upload is still arriving (a worker thread drains a
bounded queue into the socket), so the scan overlaps the transfer instead of
following it. The package's calls block, so they run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import clamd
import structlog

from libs.common import clamd_link
from services.validator.threads import drain, run_in_own_thread

log = structlog.get_logger("vidsynth.validator.scanner")

SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded"
# clamd reports an over-limit file (with AlertExceedsMax) as a "finding"; it is not a verdict.
LIMIT_SIGNATURE_PREFIX = "Heuristics.Limits.Exceeded"
_QUEUE_DEPTH = 8
_POLL_SECONDS = 0.2
_END = object()


class ScannerUnavailable(Exception):
    """clamd could not be reached or went away mid-scan."""


@dataclass(frozen=True)
class ScanVerdict:
    clean: bool
    signature: str = ""
    # Set when clamd answered but could not give a verdict (limits, errors): never clean.
    error: str = ""


class _BulkInstream:
    """INSTREAM with large chunks and `sendall` (the package's own `instream` sends
    1 KiB chunks with `send`, which may write partially)."""

    def instream_chunks(self, chunks: Iterable[bytes]) -> tuple[str, str]:
        """Blocking: streams `chunks` to clamd; returns (status, reason) of its reply."""
        try:
            self._init_socket()
            try:
                self._send_command("INSTREAM")
                for chunk in chunks:
                    if chunk:
                        self.clamd_socket.sendall(struct.pack("!L", len(chunk)) + chunk)
                self.clamd_socket.sendall(struct.pack("!L", 0))
            except OSError as exc:
                # clamd closes the stream when a limit is hit; its reply says so.
                reply = self._reply_after_failed_send()
                if SIZE_LIMIT_REPLY in reply:
                    return "ERROR", reply
                raise ScannerUnavailable(str(exc)) from exc
            reply = self._recv_response()
        except clamd.ConnectionError as exc:
            raise ScannerUnavailable(str(exc)) from exc
        finally:
            with contextlib.suppress(Exception):
                self._close_socket()
        if not reply:
            raise ScannerUnavailable("clamd closed the connection without a verdict")
        if SIZE_LIMIT_REPLY in reply:
            return "ERROR", reply
        _name, reason, status = self._parse_response(reply)
        return status, reason or ""

    def _reply_after_failed_send(self) -> str:
        try:
            return self._recv_response()
        except clamd.ConnectionError:
            return ""


class _UnixClient(_BulkInstream, clamd.ClamdUnixSocket):
    pass


class _TcpClient(_BulkInstream, clamd.ClamdNetworkSocket):
    pass


def verdict_from_reply(status: str, reason: str) -> ScanVerdict:
    if status == "OK":
        return ScanVerdict(clean=True)
    if status == "FOUND" and not reason.startswith(LIMIT_SIGNATURE_PREFIX):
        return ScanVerdict(clean=False, signature=reason)
    return ScanVerdict(clean=False, error=reason or status)


class ClamdScanner:
    """A clamd reachable at `unix:/path` or `tcp:host:port`."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def client(self) -> _BulkInstream:
        scheme, where, port = clamd_link.parse_address(self.address)
        if scheme == "unix":
            return _UnixClient(where, timeout=self.timeout)
        return _TcpClient(where, port, timeout=self.timeout)

    async def status(self) -> tuple[bool, str]:
        """(answers right now, "official" or "test-signatures")."""
        return await clamd_link.status(self.address, self.timeout)

    async def available(self) -> bool:
        return (await self.status())[0]

    def scan_chunks(self, chunks: Iterable[bytes]) -> ScanVerdict:
        """Blocking: one INSTREAM scan of `chunks`."""
        return verdict_from_reply(*self.client().instream_chunks(chunks))

    def start_stream(self) -> StreamingScan:
        return StreamingScan(self)


class StreamingScan:
    """An INSTREAM scan fed chunk by chunk from the event loop while bytes arrive."""

    def __init__(self, scanner: ClamdScanner) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._stopped = threading.Event()
        self._cancelled = threading.Event()
        # A thread of its own: it lives as long as the upload (see threads.py).
        self._task = run_in_own_thread(self._run, scanner, name="upload-clamd")

    def _chunks(self) -> Iterator[bytes]:
        yield from drain(self._queue, _END, self._cancelled, _POLL_SECONDS)
        if self._cancelled.is_set():
            raise _Aborted  # never end the stream: clamd would judge what it has so far

    def _run(self, scanner: ClamdScanner) -> ScanVerdict:
        try:
            return scanner.scan_chunks(self._chunks())
        finally:
            self._stopped.set()

    def _put(self, item: object) -> None:
        # Bounded so a slow clamd slows the upload instead of buffering it in memory;
        # gives up once the worker has stopped, so nothing blocks forever.
        while not (self._stopped.is_set() or self._cancelled.is_set()):
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    async def feed(self, chunk: bytes) -> None:
        if self._stopped.is_set():
            return
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(self._put, chunk)

    async def finish(self) -> ScanVerdict:
        """The verdict; raises ScannerUnavailable when clamd went away."""
        await asyncio.to_thread(self._put, _END)
        return await self._task

    def abort(self) -> None:
        """Stops the scan of an upload refused (or cancelled) before its end; never blocks."""
        self._cancelled.set()
        self._task.add_done_callback(_consume_result)


def _consume_result(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class _Aborted(Exception):
    pass
