"""Builds the Redis variants of the stage runner's store and queue (VIDSYNTH_REDIS_URL)."""

from __future__ import annotations

import os
import secrets
import socket

import redis.asyncio as redis

from libs.common.settings import MeshSettings
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.redis_queue import RedisJobStream
from services.stage_runner.redis_store import RedisJobStore

# A silent peer is dropped after about 10 + 3 x 5 seconds.
KEEPALIVE_OPTIONS = {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}


def consumer_name() -> str:
    """Unique per process: a restarted replica is a new consumer, and its old entries are
    reclaimed like any dead replica's."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def redis_client(url: str) -> redis.Redis:
    """No socket_timeout: with one, redis-py wraps every write in asyncio.wait_for, which on
    Python 3.11 can swallow the cancellation of the task it runs in (a cancelled job that runs
    on, a shutdown that hangs). TCP keepalive finds a Redis that went away instead, and every
    RPC that waits on Redis has its caller's deadline."""
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=None,
        socket_keepalive=True,
        socket_keepalive_options=KEEPALIVE_OPTIONS,
    )


def redis_job_store(settings: MeshSettings, runner_settings: StageRunnerSettings) -> RedisJobStore:
    client = redis_client(settings.redis_url)
    return RedisJobStore(
        client,
        runner_settings.stage_runner_redis_namespace,
        runner_settings.stage_runner_idempotency_ttl_seconds,
    )


def redis_job_stream(store: RedisJobStore) -> RedisJobStream:
    """The shared queue's stream, read by this process as a consumer of its own."""
    return RedisJobStream(store.client, store.keys, consumer_name())
