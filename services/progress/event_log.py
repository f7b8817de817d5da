"""The progress log: store + fan-out, and the replay-then-live stream built on them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.progress_events import is_terminal
from services.progress.broker import Broker, Subscription
from services.progress.store import EventStore
from vidsynth.v1 import progress_pb2


class LiveFeed(Protocol):
    """Feeds the broker from a shared store (Redis), so publishes through any replica reach it."""

    async def watch(self, session_id: str) -> None:
        """Returns once every event stored from now on will reach the broker."""
        ...


class EventLog:
    def __init__(
        self, store: EventStore, broker: Broker, replay_page_size: int, live: LiveFeed | None = None
    ) -> None:
        self.store = store
        self.broker = broker
        self.live = live
        self._page_size = replay_page_size
        # Held across store-append and fan-out so live subscribers see events in seq order.
        self._publish_lock = asyncio.Lock()

    async def publish(
        self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        now = Timestamp()
        now.GetCurrentTime()
        for event in events:
            if not event.HasField("timestamp"):
                event.timestamp.CopyFrom(now)
        if self.live is not None:
            # The live feed delivers it, in seq order, on this replica and every other one.
            return await self.store.append(session_id, events)
        async with self._publish_lock:
            stored = await self.store.append(session_id, events)
            self.broker.publish(session_id, stored)
        return stored

    async def delete_session(self, session_id: str) -> int:
        async with self._publish_lock:
            deleted = await self.store.delete_session(session_id)
            self.broker.end_session(session_id)
        return deleted

    async def _subscribe(self, session_id: str) -> Subscription:
        subscription = self.broker.subscribe(session_id)
        if self.live is not None:
            try:
                await self.live.watch(session_id)
            except BaseException:
                self.broker.unsubscribe(subscription)
                raise
        return subscription

    async def stream(
        self, session_id: str, after_seq: int, *, job_id: str = "", until_terminal: bool = False
    ) -> AsyncIterator[progress_pb2.ProgressEvent]:
        """Events with seq > after_seq: stored ones first, then live ones, each exactly once.

        The subscription is opened before the first store read, so an event is either
        already stored when a page is read or arrives in the live buffer; seqs already
        delivered are skipped. Raises SUBSCRIBER_TOO_SLOW when the live buffer overflows.
        """
        subscription = await self._subscribe(session_id)
        try:
            last = after_seq
            # Replay from the store until a short page shows we caught up. A live buffer that
            # overflowed meanwhile is not the client's fault: re-subscribe and read on.
            while True:
                if subscription.overflowed:
                    self.broker.unsubscribe(subscription)
                    subscription = await self._subscribe(session_id)
                page = await self.store.read_after(session_id, last, self._page_size)
                for event in page:
                    last = event.seq
                    if job_id and event.job_id != job_id:
                        continue
                    yield event
                    if until_terminal and is_terminal(event):
                        return
                if len(page) < self._page_size and not subscription.overflowed:
                    break
            while True:
                for event in await subscription.next_batch():
                    if event.seq <= last:
                        continue
                    last = event.seq
                    if job_id and event.job_id != job_id:
                        continue
                    yield event
                    if until_terminal and is_terminal(event):
                        return
        finally:
            self.broker.unsubscribe(subscription)
