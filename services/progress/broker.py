"""In-process fan-out of freshly stored events to live subscribers.

Each subscriber owns a bounded buffer. Publishing never waits for a subscriber: one whose
buffer would overflow is detached and marked, drains what it already holds, then ends
with SUBSCRIBER_TOO_SLOW so it can resume by seq from the store — it never silently
loses an event.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from libs.common.errors import VidsynthError
from vidsynth.v1 import progress_pb2


class Subscription:
    def __init__(self, session_id: str, capacity: int) -> None:
        self.session_id = session_id
        self.capacity = capacity
        self.overflowed = False
        self.session_deleted = False
        self.shutting_down = False
        self._buffer: collections.deque[progress_pb2.ProgressEvent] = collections.deque()
        self._ready = asyncio.Event()

    def offer(self, events: Sequence[progress_pb2.ProgressEvent]) -> bool:
        """Buffers `events`; False (and nothing buffered) when they do not fit. A subscriber
        with an empty buffer is keeping up, so it takes any one batch (publish caps batch size)."""
        if self._buffer and len(self._buffer) + len(events) > self.capacity:
            self.overflowed = True
            self._ready.set()
            return False
        self._buffer.extend(events)
        self._ready.set()
        return True

    def end_session(self) -> None:
        self.session_deleted = True
        self._ready.set()

    def shut_down(self) -> None:
        self.shutting_down = True
        self._ready.set()

    async def next_batch(self) -> list[progress_pb2.ProgressEvent]:
        """Every buffered event, waiting for at least one; raises once detached and drained."""
        while not self._buffer:
            if self.session_deleted:
                raise VidsynthError("SESSION_NOT_FOUND")
            if self.shutting_down:
                raise VidsynthError("SERVICE_UNAVAILABLE", "The progress service is restarting; reconnect.")
            if self.overflowed:
                raise VidsynthError("SUBSCRIBER_TOO_SLOW")
            self._ready.clear()
            await self._ready.wait()
        batch = list(self._buffer)
        self._buffer.clear()
        return batch


class Broker:
    """Live subscribers per session. Publish in seq order (the log holds a lock for that)."""

    def __init__(self, buffer_capacity: int) -> None:
        self._capacity = buffer_capacity
        self._subscribers: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._shut_down = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def subscribe(self, session_id: str) -> Subscription:
        """A live buffer; once the broker is shut down, one that ends after the replay."""
        subscription = Subscription(session_id, self._capacity)
        if self._shut_down:
            subscription.shut_down()
        else:
            self._subscribers[session_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.session_id)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._subscribers[subscription.session_id]

    def publish(self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]) -> None:
        for subscription in list(self._subscribers.get(session_id, ())):
            if not subscription.offer(events):
                self.unsubscribe(subscription)

    def end_session(self, session_id: str) -> None:
        for subscription in self._subscribers.pop(session_id, set()):
            subscription.end_session()

    def shut_down_session(self, session_id: str) -> None:
        """Ends one session's live streams (after what they hold); they resume by seq."""
        for subscription in self._subscribers.pop(session_id, set()):
            subscription.shut_down()

    def shut_down(self) -> None:
        """Ends every live stream (after what it holds) so clients reconnect elsewhere or later;
        streams that start from now on end once replayed."""
        self._shut_down = True
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.shut_down()
        self._subscribers.clear()

    def subscriber_count(self, session_id: str | None = None) -> int:
        if session_id is not None:
            return len(self._subscribers.get(session_id, ()))
        return sum(len(s) for s in self._subscribers.values())
