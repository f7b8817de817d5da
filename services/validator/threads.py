"""Blocking loops that last a whole upload run on threads of their own.

`asyncio.to_thread` borrows the event loop's default executor, which has only
min(32, CPUs + 4) workers (6 on a 2-core host). A loop that lives as long as its upload
(the spool writer, the clamd feeder) would hold a worker each, so a few concurrent
uploads could take them all and leave every other `to_thread` call, including the
ones those uploads wait for, queued behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def run_in_own_thread(fn: Callable[..., T], *args: object, name: str) -> asyncio.Future[T]:
    """Starts `fn(*args)` on a new daemon thread; the returned future gets its outcome."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: object, failed: bool) -> None:
        if future.done():
            return
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def run() -> None:
        try:
            outcome, failed = fn(*args), False
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop already closed: nobody waits
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def drain(source: queue.Queue, end: object, stop: threading.Event, poll_seconds: float) -> Iterator:
    """Blocking: the items put on `source`, in order, until `end`. Returns early once
    `stop` is set, looked at every `poll_seconds`, so an abandoned upload can never
    leave its thread waiting on the queue forever."""
    while not stop.is_set():
        try:
            item = source.get(timeout=poll_seconds)
        except queue.Empty:
            continue
        if item is end:
            return
        yield item
