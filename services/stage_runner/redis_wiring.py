"""Builds the Redis variants of the stage runner's store and queue (VIDSYNTH_REDIS_URL)."""

from __future__ import annotations

import os
import secrets
import socket

import redis.asyncio as redis

from libs.common.settings import MeshSettings
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.redis_queue import RedisJobStream
from services.stage_runner.redis_store import RedisJobStore


def consumer_name() -> str:
    """Unique per process: a restarted replica is a new consumer, and its old entries are
    reclaimed like any dead replica's."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def redis_job_store(settings: MeshSettings, runner_settings: StageRunnerSettings) -> RedisJobStore:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=False)
    return RedisJobStore(
        client,
        runner_settings.stage_runner_redis_namespace,
        runner_settings.stage_runner_idempotency_ttl_seconds,
    )


def redis_job_options(
    settings: MeshSettings,
    runner_settings: StageRunnerSettings,
    store: RedisJobStore,
    publisher: ProgressPublisher,
) -> dict:
    """The RedisJobManager's arguments beyond the plain JobManager's."""
    return {
        "stream": RedisJobStream(store.client, store.keys, consumer_name()),
        "publisher": publisher,
        "configured_mode": settings.processing_mode,
        "reclaim_idle_seconds": runner_settings.stage_runner_reclaim_idle_seconds,
        "heartbeat_seconds": runner_settings.stage_runner_heartbeat_seconds,
    }
