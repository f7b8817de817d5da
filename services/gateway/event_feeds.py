"""Gateway-side fan-out: one upstream ProgressService.Subscribe per session, shared by all of
that session's SSE and WebSocket clients in this gateway process.

Each event is decoded and encoded (JSON, SSE frame) once, into a bounded ring of recent
events; every client keeps only a cursor (its last seq). A client whose cursor is older
than the ring — it connected with an old Last-Event-ID, or it read so slowly that the ring
moved past it — catches up from the store with its own Subscribe call and rejoins the ring
once it is inside it. So a slow browser costs the gateway no memory and never loses an
event, and 200 browsers on one session cost one upstream stream, not 200.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from sse_starlette import ServerSentEvent

from libs.common.errors import VidsynthError
from libs.common.progress_events import event_to_json, is_terminal
from libs.common.rpc_status import error_from_rpc_error
from vidsynth.v1 import progress_pb2

FEED_RING_CAPACITY = 2048
RESUMABLE_UPSTREAM_ERRORS = frozenset({"DEADLINE_EXCEEDED", "SUBSCRIBER_TOO_SLOW"})

OpenSubscribe = Callable[[str, int], grpc.aio.UnaryStreamCall]


@dataclass(frozen=True)
class FeedItem:
    seq: int
    job_id: str
    terminal: bool
    json: str  # the WebSocket message
    sse: bytes  # the whole SSE frame: id, event, data


def feed_item(event: progress_pb2.ProgressEvent) -> FeedItem:
    body = event_to_json(event)
    data = json.dumps(body, separators=(",", ":"))
    frame = ServerSentEvent(data=data, event=body["type"], id=str(event.seq)).encode()
    return FeedItem(event.seq, event.job_id, is_terminal(event), data, frame)


class SessionFeed:
    """Recent events of one session, appended by one upstream call and read by many cursors."""

    def __init__(self, session_id: str, base_seq: int, capacity: int) -> None:
        self.session_id = session_id
        # Every event with seq > base_seq is in the ring or still to come.
        self.base_seq = base_seq
        self.capacity = capacity
        self.clients = 0
        self.error: VidsynthError | None = None
        self.closed = False
        self._seqs: list[int] = []
        self._items: list[FeedItem] = []
        self._changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def last_seq(self) -> int:
        return self._seqs[-1] if self._seqs else self.base_seq

    def covers(self, cursor: int) -> bool:
        return cursor >= self.base_seq

    def items_after(self, cursor: int) -> list[FeedItem]:
        return self._items[bisect.bisect_right(self._seqs, cursor) :]

    def append(self, item: FeedItem) -> None:
        self._seqs.append(item.seq)
        self._items.append(item)
        if len(self._items) >= 2 * self.capacity:
            # Trim in bulk so appends stay amortised O(1).
            drop = len(self._items) - self.capacity
            self.base_seq = self._seqs[drop - 1]
            del self._seqs[:drop], self._items[:drop]
        self._wake()

    def fail(self, error: VidsynthError | None) -> None:
        self.error = error
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_beyond(self, cursor: int) -> None:
        """Returns once an event after `cursor` exists; raises the feed's error when it ended."""
        while self.last_seq <= cursor:
            if self.closed:
                raise self.error or VidsynthError("SERVICE_UNAVAILABLE")
            await self._changed.wait()


class FeedRegistry:
    """The live feeds of this gateway, keyed by session; a feed lives while it has clients."""

    def __init__(self, open_subscribe: OpenSubscribe, capacity: int | None = None) -> None:
        self._open = open_subscribe
        self._capacity = capacity or FEED_RING_CAPACITY
        self._feeds: dict[str, SessionFeed] = {}

    def feed_count(self) -> int:
        return len(self._feeds)

    def client_count(self, session_id: str) -> int:
        feed = self._feeds.get(session_id)
        return feed.clients if feed else 0

    def feed(self, session_id: str) -> SessionFeed | None:
        return self._feeds.get(session_id)

    def join(self, session_id: str, after_seq: int) -> SessionFeed:
        feed = self._feeds.get(session_id)
        if feed is None or feed.closed:
            feed = SessionFeed(session_id, after_seq, self._capacity)
            # Opened here, in the caller's context, so the call carries the caller's identity.
            call = self._open(session_id, after_seq)
            feed.task = asyncio.create_task(self._pump(feed, call))
            self._feeds[session_id] = feed
        feed.clients += 1
        return feed

    def leave(self, feed: SessionFeed) -> None:
        feed.clients -= 1
        if feed.clients <= 0:
            # The last client is gone: cancel the upstream call at once.
            if self._feeds.get(feed.session_id) is feed:
                del self._feeds[feed.session_id]
            if feed.task is not None:
                feed.task.cancel()

    async def _pump(self, feed: SessionFeed, call: grpc.aio.UnaryStreamCall) -> None:
        error: VidsynthError | None = None
        try:
            while True:
                try:
                    async for event in call:
                        feed.append(feed_item(event))
                    break
                except grpc.aio.AioRpcError as rpc_error:
                    error = error_from_rpc_error(rpc_error)
                    if error.code not in RESUMABLE_UPSTREAM_ERRORS:
                        break
                    # The stream's deadline passed, or this gateway briefly fell behind: resume
                    # by seq, which loses nothing, instead of failing every client.
                    error = None
                    call.cancel()
                    call = self._open(feed.session_id, feed.last_seq)
        finally:
            call.cancel()
            if self._feeds.get(feed.session_id) is feed:
                del self._feeds[feed.session_id]
            feed.fail(error)

    async def close(self) -> None:
        tasks = [feed.task for feed in self._feeds.values() if feed.task]
        self._feeds.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def catch_up(self, session_id: str, cursor: int, feed: SessionFeed) -> AsyncIterator[FeedItem]:
        """Events after `cursor` from the store (an own Subscribe call) until `feed` covers them."""
        call = self._open(session_id, cursor)
        try:
            async for event in call:
                yield feed_item(event)
                if feed.covers(event.seq):
                    return
        except grpc.aio.AioRpcError as rpc_error:
            raise error_from_rpc_error(rpc_error) from None
        finally:
            call.cancel()


@contextlib.asynccontextmanager
async def joined(registry: FeedRegistry, session_id: str, after_seq: int) -> AsyncIterator[SessionFeed]:
    """Membership of the session's feed, left on exit (the last one out cancels the upstream)."""
    feed = registry.join(session_id, after_seq)
    try:
        yield feed
    finally:
        registry.leave(feed)


async def follow_feed(
    registry: FeedRegistry,
    feed: SessionFeed,
    after_seq: int,
    *,
    job_id: str = "",
    until_terminal: bool = False,
    deadline: float | None = None,
) -> AsyncIterator[FeedItem]:
    """One client's events with seq > after_seq, in order, each once; raises VidsynthError
    when the stream ends in error (the session was deleted, the progress service restarts).
    Ends quietly at `deadline` (loop time), between events: the client resumes by seq."""
    loop = asyncio.get_running_loop()
    cursor = after_seq
    while True:
        if deadline is not None and loop.time() >= deadline:
            return
        if not feed.covers(cursor):
            source: AsyncIterator[FeedItem] = registry.catch_up(feed.session_id, cursor, feed)
        else:
            pending = feed.items_after(cursor)
            if not pending:
                try:
                    async with asyncio.timeout_at(deadline):
                        await feed.wait_beyond(cursor)
                except TimeoutError:
                    return
                continue
            source = _iterate(pending)
        async with contextlib.aclosing(source):
            async for item in source:
                if item.seq <= cursor:
                    continue
                cursor = item.seq
                if job_id and item.job_id != job_id:
                    continue
                yield item
                if until_terminal and item.terminal:
                    return
                if deadline is not None and loop.time() >= deadline:
                    return


async def follow(
    registry: FeedRegistry,
    session_id: str,
    after_seq: int,
    *,
    job_id: str = "",
    until_terminal: bool = False,
    deadline: float | None = None,
) -> AsyncIterator[FeedItem]:
    """`follow_feed` with its own membership of the session's feed."""
    async with joined(registry, session_id, after_seq) as feed:
        events = follow_feed(
            registry, feed, after_seq, job_id=job_id, until_terminal=until_terminal, deadline=deadline
        )
        async with contextlib.aclosing(events):
            async for item in events:
                yield item


async def _iterate(items: list[FeedItem]) -> AsyncIterator[FeedItem]:
    for item in items:
        yield item
