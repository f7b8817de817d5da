"""A Redis outage is SERVICE_UNAVAILABLE (retryable), naming the storage, in every Redis store."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.errors import VidsynthError
from libs.common.redis_outage import redis_outage_as_unavailable
from services.progress.redis_store import RedisEventStore
from services.session.redis_store import RedisSessionStore
from tests.support.ports import free_port


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Connection refused"),
        RedisTimeoutError("Timeout reading from socket"),
        BusyLoadingError("Redis is loading the dataset in memory"),
    ],
)
async def test_outage_errors_become_service_unavailable(error):
    with pytest.raises(VidsynthError) as caught:
        async with redis_outage_as_unavailable("Job storage"):
            raise error
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    assert caught.value.message == "Job storage is unreachable; try again."
    assert caught.value.__cause__ is error


async def test_other_redis_errors_are_not_called_an_outage():
    with pytest.raises(ResponseError):
        async with redis_outage_as_unavailable("Job storage"):
            raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


async def test_session_and_progress_stores_answer_unavailable_when_redis_is_not_there():
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sessions, events = RedisSessionStore(url), RedisEventStore(url, max_events_per_session=100)
    try:
        results = await asyncio.gather(
            sessions.get("ses_000000000000000000000000"),
            events.last_seq("ses_000000000000000000000000"),
            return_exceptions=True,
        )
    finally:
        await sessions.close()
        await events.close()
    assert [(type(r).__name__, getattr(r, "code", ""), getattr(r, "message", "")) for r in results] == [
        ("VidsynthError", "SERVICE_UNAVAILABLE", "Session storage is unreachable; try again."),
        ("VidsynthError", "SERVICE_UNAVAILABLE", "Progress storage is unreachable; try again."),
    ]
