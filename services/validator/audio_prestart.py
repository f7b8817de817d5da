"""A head start for decoding a voice upload: ffmpeg is started while the upload still
arrives (its start-up, loading a few hundred shared libraries, costs about as much as
decoding a WAV), and once the last byte is spooled the kernel copies the spool into
its stdin (sendfile, off the event loop).

The type is sniffed from the first bytes only, so this is a guess, never a verdict:
every check still runs once the upload is complete, and `audio.inspect_audio` uses
this decode only when the final type calls for the same demuxer and ffmpeg succeeded;
otherwise it decodes the spooled file as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

from libs.common import children
from services.validator.audio import DEMUXERS, decode_argv
from services.validator.filetype import detect_mime_of_bytes
from services.validator.threads import run_in_own_thread

# Formats ffmpeg decodes from a pipe; MP4/M4A may keep its index at the end (a seek).
STREAMABLE_DEMUXERS = frozenset({"wav", "mp3", "flac", "ogg", "aac"})
# Bytes gathered before sniffing the type (plenty for every allowed audio format).
SNIFF_BYTES = 64 * 1024
# A bigger kernel pipe means fewer wake-ups per MB (Linux; best effort).
KERNEL_PIPE_BYTES = 1024 * 1024


class PrestartedDecode:
    """Show it every chunk of a voice upload; ffmpeg starts once the first bytes show a
    format it reads front to back (it then waits on its stdin until `finish`). Always
    `abort()` it when the upload ends without using it."""

    def __init__(self, out_path: Path, max_seconds: float) -> None:
        self.out_path = out_path
        self.max_seconds = max_seconds
        self.demuxer = ""
        self._head: list[bytes] = []
        self._head_size = 0
        self._sniffed = False
        self._proc: subprocess.Popen | None = None
        self._stdin: int | None = None
        self._sending = False

    @property
    def started(self) -> bool:
        return self._proc is not None

    async def observe(self, chunk: bytes) -> None:
        if self._sniffed:
            return
        self._head.append(chunk)
        self._head_size += len(chunk)
        if self._head_size >= SNIFF_BYTES:
            self._sniffed = True
            head, self._head = b"".join(self._head), []
            demuxer = DEMUXERS.get(await asyncio.to_thread(detect_mime_of_bytes, head))
            if demuxer in STREAMABLE_DEMUXERS:
                await self._start(demuxer)

    async def _start(self, demuxer: str) -> None:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, KERNEL_PIPE_BYTES)
            # Popen in a thread, not asyncio's subprocess: CPython spawns with vfork, where
            # the event loop's spawn forks the whole (large) process on the loop itself,
            # stalling the upload being received for ~10 ms.
            self._proc = await asyncio.to_thread(
                children.popen_in_group,
                decode_argv("pipe:0", demuxer, self.out_path, self.max_seconds),
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self.demuxer, self._stdin = demuxer, write_end

    def _send(self, path: Path) -> bool:
        """Blocking: the whole spool into ffmpeg's stdin, then EOF. Stops early when ffmpeg
        stops reading (done past the longest accepted length, failed, or killed: its exit
        code tells which). False when the copy itself failed: ffmpeg would then decode a
        cut stream, so its output must not be used."""
        try:
            with path.open("rb") as source:
                size, offset = os.fstat(source.fileno()).st_size, 0
                while offset < size:
                    sent = os.sendfile(self._stdin, source.fileno(), offset, size - offset)
                    if sent == 0:
                        return False
                    offset += sent
        except (BrokenPipeError, ConnectionResetError):
            return True
        except OSError:
            return False
        finally:
            self._close_stdin()
        return True

    def _close_stdin(self) -> None:
        if self._stdin is not None:
            stdin, self._stdin = self._stdin, None
            os.close(stdin)

    def _send_and_wait(self, path: Path) -> int | None:
        """Blocking: ffmpeg's exit code once it has read the spool; None when the copy failed."""
        if not self._send(path):
            return None
        self._proc.wait()
        return children.end_popen(self._proc, 0)  # reaped: ends what it left behind, and its span

    async def finish(self, spool_path: Path, limit_seconds: float) -> bool:
        """Decodes the complete upload at `spool_path`: True when ffmpeg succeeded (the
        safe copy is in `out_path`)."""
        if self._proc is None:
            return False
        self._sending = True
        decoding = run_in_own_thread(self._send_and_wait, spool_path, name="upload-ffmpeg")
        decoding.add_done_callback(_consume_result)
        try:
            async with asyncio.timeout(limit_seconds):
                code = await asyncio.shield(decoding)
        except TimeoutError:
            code = None
        if code is None:
            await self.abort()  # the thread then sees ffmpeg gone and ends
            return False
        return code == 0

    async def abort(self) -> None:
        """Stops ffmpeg if it still runs (its output is the caller's to delete); idempotent."""
        if self._proc is None:
            return
        await asyncio.to_thread(children.end_popen, self._proc, 0)
        # A sending thread, if any, now fails with EPIPE and closes stdin itself.
        if self._stdin is not None and not self._sending:
            self._close_stdin()


def _consume_result(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
