"""An unreachable Redis is a retryable outage for the caller, not an internal error: one
definition of which Redis errors mean "down", shared by every Redis-backed store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.errors import VidsynthError

# A restarted Redis still loading its append-only file answers BusyLoadingError, which is a
# ConnectionError too.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


@contextlib.asynccontextmanager
async def redis_outage_as_unavailable(storage: str) -> AsyncIterator[None]:
    """SERVICE_UNAVAILABLE ("<storage> is unreachable; try again.") for a Redis outage inside."""
    try:
        yield
    except REDIS_OUTAGE_ERRORS as error:
        raise VidsynthError("SERVICE_UNAVAILABLE", f"{storage} is unreachable; try again.") from error
