"""The backends every contract test runs against: SQLite (the default) and a real Redis."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common.settings import MeshSettings
from services.progress.config import ProgressSettings
from services.progress.redis_store import RedisEventStore
from services.progress.store import EventStore, SqliteEventStore
from services.session.config import SessionSettings
from services.session.redis_store import RedisSessionStore
from services.session.store import SessionStore, SqliteSessionStore


@dataclass(frozen=True)
class Backend:
    """One test's storage: a SQLite data dir, or a Redis namespace no other test uses."""

    kind: str
    data_dir: Path
    redis_url: str = ""
    namespace: str = ""

    def session_store(self) -> SessionStore:
        if self.kind == "redis":
            return RedisSessionStore(self.redis_url, self.namespace)
        return SqliteSessionStore(self.data_dir / "session.sqlite3")

    async def event_store(self, max_events_per_session: int = 10_000) -> EventStore:
        if self.kind == "redis":
            return await RedisEventStore(self.redis_url, max_events_per_session, self.namespace).open()
        return await SqliteEventStore(self.data_dir / "progress.sqlite3", max_events_per_session).open()

    def mesh_settings(self, settings: MeshSettings) -> MeshSettings:
        return settings.model_copy(update={"redis_url": self.redis_url})

    def session_settings(self, **values) -> SessionSettings:
        return SessionSettings(session_redis_namespace=self.namespace or "vidsynth:", **values)

    def progress_settings(self, **values) -> ProgressSettings:
        return ProgressSettings(progress_redis_namespace=self.namespace or "vidsynth:", **values)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path) -> Backend:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return Backend("redis", tmp_path, server.url, f"test-{uuid.uuid4().hex[:12]}:")
    return Backend("sqlite", tmp_path)


@pytest.fixture
def redis_backend(redis_server, tmp_path) -> Backend:
    """For what only the Redis implementation does (cross-replica delivery, key layout)."""
    return Backend("redis", tmp_path, redis_server.url, f"test-{uuid.uuid4().hex[:12]}:")
