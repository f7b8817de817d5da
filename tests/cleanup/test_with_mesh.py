"""With the real SessionService and ProgressService: expired sessions vanish with
their files and events; a processing session survives the sweep and EmergencyCleanup."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from pathlib import Path

from libs.common import ids
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from services.cleanup.sessions import SessionStatus
from services.progress.server import build as build_progress
from services.session.config import SessionSettings
from services.session.server import build as build_session
from tests.cleanup.conftest import DAY, cleanup_settings, write_file
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import (
    progress_internal_pb2,
    progress_internal_pb2_grpc,
    session_internal_pb2,
    session_internal_pb2_grpc,
)
from vidsynth.v1 import (
    cleanup_pb2,
    common_pb2,
    progress_pb2,
    session_pb2,
    session_pb2_grpc,
)

SHORT_TTL_SECONDS = 1.0
EVENTS = 3


@dataclass
class Mesh:
    sessions: session_pb2_grpc.SessionServiceStub
    session_internal: session_internal_pb2_grpc.SessionInternalServiceStub
    # Only the mesh-only RPCs: publishing and deleting events.
    progress: progress_internal_pb2_grpc.ProgressInternalServiceStub
    sessions_dir: Path

    def root_of(self, session_id: str) -> Path:
        return session_paths(self.sessions_dir, session_id).root

    async def create_session(self, user: str, files: bool = True, age_seconds: float = 0.0) -> str:
        session = await self.sessions.CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata(user)
        )
        if files:
            paths = session_paths(self.sessions_dir, session.session_id)
            write_file(paths.work / "voice.wav", 4096, age_seconds)
            write_file(paths.output / "video.mp4", 4096, age_seconds)
        return session.session_id

    async def make_processing(self, user: str, session_id: str) -> None:
        paths = session_paths(self.sessions_dir, session_id)
        assets = (
            (common_pb2.ASSET_KIND_FACE_IMAGE, "face.png"),
            (common_pb2.ASSET_KIND_VOICE_AUDIO, "voice.wav"),
        )
        for kind, name in assets:
            write_file(paths.assets / name, 2048, age_seconds=2 * DAY)
            await self.session_internal.RegisterAsset(
                session_internal_pb2.RegisterAssetRequest(
                    session_id=session_id,
                    asset=common_pb2.Asset(kind=kind, stored_name=name, size_bytes=2048),
                ),
                metadata=mesh_metadata(user),
            )
        await self.session_internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=session_id, state=session_pb2.SESSION_STATE_PROCESSING, job_id=ids.new_id("job")
            ),
            metadata=mesh_metadata(user),
        )


async def start_mesh(in_process_mesh, idle_ttl_seconds: float) -> Mesh:
    session_settings = SessionSettings(session_idle_ttl_seconds=idle_ttl_seconds)
    session = await in_process_mesh.start(
        "session", functools.partial(build_session, session_settings=session_settings)
    )
    progress = await in_process_mesh.start("progress", build_progress)
    return Mesh(
        session_pb2_grpc.SessionServiceStub(session.channel()),
        session_internal_pb2_grpc.SessionInternalServiceStub(session.channel()),
        progress_internal_pb2_grpc.ProgressInternalServiceStub(progress.channel()),
        in_process_mesh.settings.sessions_dir,
    )


async def publish_events(progress, session_id: str) -> None:
    job_id = ids.new_id("job")
    await progress.PublishEvents(
        progress_internal_pb2.PublishEventsRequest(
            session_id=session_id,
            events=[progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_JOB_QUEUED, job_id=job_id)]
            * EVENTS,
        ),
        metadata=mesh_metadata("alice"),
    )


async def wait_until_expired(sessions, user: str, session_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await sessions.GetSession(
                session_pb2.GetSessionRequest(session_id=session_id), metadata=user_metadata(user)
            )
        except Exception as error:
            if error_from_rpc_error(error).code == "SESSION_EXPIRED":
                return
            raise
        await asyncio.sleep(0.1)
    raise AssertionError("session never expired")


async def test_expired_sessions_vanish_with_files_and_events(in_process_mesh, start_cleanup):
    mesh = await start_mesh(in_process_mesh, SHORT_TTL_SECONDS)
    sessions, progress = mesh.sessions, mesh.progress
    expiring = await mesh.create_session("alice")
    await publish_events(progress, expiring)
    processing = await mesh.create_session("bob")
    await mesh.make_processing("bob", processing)
    await publish_events(progress, processing)
    stub = await start_cleanup(cleanup_settings())
    await wait_until_expired(sessions, "alice", expiring)

    response = await stub.RunCleanup(
        cleanup_pb2.RunCleanupRequest(task_name="expired_sessions"), metadata=user_metadata("root")
    )
    result = response.results[0]
    assert result.error_code == ""
    assert list(result.removed) == [f"sessions/{expiring}"]
    assert result.items_removed == 1 and result.bytes_freed >= 8192
    assert not mesh.root_of(expiring).exists()
    # Its events are gone: deleting them again finds none; the processing session's remain.
    again = await progress.DeleteSessionEvents(
        progress_internal_pb2.DeleteSessionEventsRequest(session_id=expiring), metadata=mesh_metadata()
    )
    assert again.events_deleted == 0
    # A processing session never expires: its row, files and events all survive.
    alive = await sessions.GetSession(
        session_pb2.GetSessionRequest(session_id=processing), metadata=user_metadata("bob")
    )
    assert alive.state == session_pb2.SESSION_STATE_PROCESSING
    root = mesh.root_of(processing)
    assert (root / "work" / "voice.wav").exists() and (root / "output" / "video.mp4").exists()
    kept = await progress.DeleteSessionEvents(
        progress_internal_pb2.DeleteSessionEventsRequest(session_id=processing), metadata=mesh_metadata()
    )
    assert kept.events_deleted == EVENTS


async def test_processing_session_survives_emergency_cleanup(in_process_mesh, start_cleanup):
    mesh = await start_mesh(in_process_mesh, idle_ttl_seconds=3600)
    # The lookup is owner-agnostic: alice's idle session is cleaned too, the busy one never.
    busy = await mesh.create_session("root", age_seconds=2 * DAY)
    await mesh.make_processing("root", busy)
    idle = await mesh.create_session("root", age_seconds=2 * DAY)
    others = await mesh.create_session("alice", age_seconds=2 * DAY)
    stub = await start_cleanup(
        cleanup_settings(
            disk="critical",
            cleanup_emergency_min_age_seconds=0,
            cleanup_emergency_min_output_retention_seconds=0,
        )
    )

    response = await stub.EmergencyCleanup(
        cleanup_pb2.EmergencyCleanupRequest(), metadata=user_metadata("root")
    )
    assert [r.task_name for r in response.results] == [
        "emergency_temp_and_work",
        "emergency_expired_sessions",
        "emergency_oldest_outputs",
    ]
    assert all(r.error_code == "" for r in response.results)
    assert response.level_before == cleanup_pb2.HEALTH_LEVEL_CRITICAL
    assert response.level_after == cleanup_pb2.HEALTH_LEVEL_CRITICAL  # thresholds at 0 %
    assert response.bytes_freed == 4 * 4096
    removed = [path for r in response.results for path in r.removed]
    assert sorted(removed) == sorted(
        f"sessions/{session}/{name}"
        for session in (idle, others)
        for name in ("work/voice.wav", "output/video.mp4")
    )

    busy_root = mesh.root_of(busy)
    for name in ("assets/face.png", "assets/voice.wav", "work/voice.wav", "output/video.mp4"):
        assert (busy_root / name).exists(), name
    assert (mesh.root_of(others) / "assets").is_dir()  # the session itself stays


async def test_mesh_status_source_sees_every_owner_and_absent_sessions(in_process_mesh, mesh_settings):
    from libs.common.clients import MeshClients
    from services.cleanup.sessions import MeshSessionStatusSource

    mesh = await start_mesh(in_process_mesh, idle_ttl_seconds=3600)
    busy = await mesh.create_session("alice", files=False)
    await mesh.make_processing("alice", busy)
    idle = await mesh.create_session("bob", files=False)
    clients = MeshClients(in_process_mesh.settings)
    source = MeshSessionStatusSource(clients)
    try:
        # Scheduled runs act for no user; the internal lookup still vouches for everyone.
        assert await source.status(busy) is SessionStatus.PROCESSING
        assert await source.status(idle) is SessionStatus.IDLE
        assert await source.status(ids.new_id("session")) is SessionStatus.ABSENT
        unreachable = MeshSessionStatusSource(
            MeshClients(in_process_mesh.settings.model_copy(update={"session_addr": "127.0.0.1:9"}))
        )
        assert await unreachable.status(idle) is SessionStatus.UNKNOWN
    finally:
        await clients.close()
