"""Upload slots: how many uploads are checked at once, and how many of them one user
may hold. Past either cap an upload is refused at once (never queued), with a
Retry-After: RATE_LIMITED when the validator is full, TOO_MANY_UPLOADS when the user
already has their share. One user's share is below the total, so whatever one user
keeps open (eight trickling uploads, four bombs), other users still find slots."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from libs.common.errors import VidsynthError

GLOBAL_RETRY_AFTER_SECONDS = 1.0
USER_RETRY_AFTER_SECONDS = 5.0


class UploadSlots:
    def __init__(self, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = per_user
        self._held: Counter[str] = Counter()
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def held_by(self, user_id: str) -> int:
        return self._held[user_id]

    @contextlib.contextmanager
    def hold(self, user_id: str) -> Iterator[None]:
        """A slot for `user_id` for the duration of the block, or the refusal."""
        if self._held[user_id] >= self.per_user:
            raise VidsynthError(
                "TOO_MANY_UPLOADS",
                f"You already have {self.per_user} uploads in progress; wait for one to finish.",
                retry_after_seconds=USER_RETRY_AFTER_SECONDS,
            )
        if self._active >= self.total:
            # Shed load at once (a deliberate, retryable refusal) instead of letting every
            # upload slow down until clients and the gateway time out.
            raise VidsynthError(
                "RATE_LIMITED",
                "Too many uploads are being checked; retry shortly.",
                retry_after_seconds=GLOBAL_RETRY_AFTER_SECONDS,
            )
        self._held[user_id] += 1
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._held[user_id] -= 1
            if not self._held[user_id]:
                del self._held[user_id]
