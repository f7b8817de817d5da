"""The operators' side of sessions on SQLite and on Redis: every user's active sessions,
newest first and paged, and ending any of them (issue 15, item 7). The store contract,
then SessionService itself over gRPC on each backend with a real ProgressService beside it."""

from __future__ import annotations

import functools

import grpc
import pytest
import redis.asyncio as redis

import services.progress.server
import services.session.server
from libs.common import ids
from libs.common.rpc_status import error_from_rpc_error
from services.session.lifecycle import NEVER, PROCESSING
from services.session.store import CreateOutcome, PageCursor
from tests.contracts.test_session_store_contract import NOW, TTL, record
from tests.session.helpers import FACE, VOICE, asset
from tests.support.identities import mesh_metadata, user_metadata
from tests.support.synthetic_events import progress_ticks
from vidsynth.internal.v1 import (
    progress_internal_pb2,
    progress_internal_pb2_grpc,
    session_internal_pb2,
    session_internal_pb2_grpc,
)
from vidsynth.v1 import session_pb2, session_pb2_grpc


@pytest.fixture
async def store(backend):
    store = backend.session_store()
    await store.open()
    yield store
    await store.close()


async def page_through(store, user_id, now, size):
    pages, cursor = [], None
    while True:
        page = await store.list_active(user_id, cursor, size, now)
        pages.append([r.session_id for r in page])
        if len(page) < size:
            return pages
        cursor = PageCursor(page[-1].create_time, page[-1].session_id)


async def test_every_users_active_sessions_newest_first_in_complete_pages(store):
    # Three users, ties on create time (ordered by id), one processing, one expired.
    made = [record(user, created=NOW + (i // 3)) for i, user in enumerate(["alice", "bob", "carol"] * 4)]
    for item in made:
        assert await store.create_within_limits(item, 100, 1000, NOW) is CreateOutcome.CREATED
    busy = made[0]
    assert await store.replace(busy.evolve(state=PROCESSING, expires_at=NEVER, version=2), 1)
    later = NOW + TTL + 0.5  # made[0..2] (created at NOW) have expired by now, but busy never does
    live = [r for r in made if r is busy or r.expires_at > later]
    expected = [r.session_id for r in sorted(live, key=lambda r: (r.create_time, r.session_id), reverse=True)]

    pages = await page_through(store, None, later, 4)
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [sid for page in pages for sid in page] == expected
    bobs = await page_through(store, "bob", later, 2)
    assert [sid for page in bobs for sid in page] == [
        sid for sid in expected if sid in {r.session_id for r in made if r.user_id == "bob"}
    ]
    assert await store.list_active("dave", None, 10, later) == []


async def test_a_deleted_session_leaves_the_listing(store):
    first, second = record(), record("bob", created=NOW + 1)
    for item in (first, second):
        await store.create_within_limits(item, 10, 100, NOW)
    assert await store.delete(second.session_id)
    assert [r.session_id for r in await store.list_active(None, None, 10, NOW)] == [first.session_id]


async def test_redis_fills_the_every_user_index_once_from_older_data(redis_backend):
    """Sessions written before `session:created` existed still show up for operators."""
    store = redis_backend.session_store()
    await store.open()
    raw = redis.Redis.from_url(redis_backend.redis_url)
    try:
        made = [record(user, created=NOW + i) for i, user in enumerate(["alice", "bob", "alice"])]
        for item in made:
            await store.create_within_limits(item, 10, 100, NOW)
        # As a store of the previous release left it: no global index, no marker.
        await raw.delete(f"{redis_backend.namespace}session:created")
        await raw.delete(f"{redis_backend.namespace}session:created-backfilled")
        assert await store.list_active(None, None, 10, NOW) == []
        reopened = redis_backend.session_store()
        await reopened.open()
        try:
            listed = [r.session_id for r in await reopened.list_active(None, None, 10, NOW)]
            assert listed == [r.session_id for r in reversed(made)]
            assert await raw.exists(f"{redis_backend.namespace}session:created-backfilled")
        finally:
            await reopened.close()
    finally:
        await raw.aclose()
        await store.close()


# --- SessionService over gRPC on either backend ---------------------------------------------


@pytest.fixture
async def mesh(backend, in_process_mesh):
    in_process_mesh.settings = backend.mesh_settings(in_process_mesh.settings)
    progress = await in_process_mesh.start(
        "progress",
        functools.partial(services.progress.server.build, progress_settings=backend.progress_settings()),
    )
    session = await in_process_mesh.start(
        "session",
        functools.partial(services.session.server.build, session_settings=backend.session_settings()),
    )
    channels = [session.channel(), progress.channel()]
    yield (
        session_pb2_grpc.SessionServiceStub(channels[0]),
        session_internal_pb2_grpc.SessionInternalServiceStub(channels[0]),
        progress_internal_pb2_grpc.ProgressInternalServiceStub(channels[1]),
        in_process_mesh.settings.sessions_dir,
    )
    for channel in channels:
        await channel.close()


async def refused(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return error_from_rpc_error(info.value).code


async def test_admins_list_and_end_any_users_session_over_grpc(mesh):
    sessions, internal, progress, sessions_dir = mesh
    own = {
        user: (await sessions.CreateSession(session_pb2.CreateSessionRequest(), metadata=user_metadata(user)))
        for user in ("alice", "bob")
    }
    bob_id = own["bob"].session_id
    (sessions_dir / bob_id / "assets" / "face.png").write_bytes(b"x" * 1000)
    for kind in (FACE, VOICE):
        await internal.RegisterAsset(
            session_internal_pb2.RegisterAssetRequest(session_id=bob_id, asset=asset(kind)),
            metadata=mesh_metadata("bob"),
        )
    job_id = ids.new_id("job")
    await internal.UpdateSessionState(
        session_internal_pb2.UpdateSessionStateRequest(
            session_id=bob_id, state=session_pb2.SESSION_STATE_PROCESSING, job_id=job_id
        ),
        metadata=mesh_metadata("bob"),
    )
    await progress.PublishEvents(
        progress_internal_pb2.PublishEventsRequest(
            session_id=bob_id, events=progress_ticks(5, job_id=job_id)
        ),
        metadata=mesh_metadata("bob"),
    )

    listed = await sessions.ListActiveSessions(
        session_pb2.ListActiveSessionsRequest(), metadata=user_metadata("root")
    )
    by_id = {a.session.session_id: a for a in listed.sessions}
    assert set(by_id) == {own["alice"].session_id, bob_id}
    assert by_id[bob_id].session.user_id == "bob"
    assert by_id[bob_id].session.state == session_pb2.SESSION_STATE_PROCESSING
    assert by_id[bob_id].disk_used_bytes == 1000
    assert by_id[own["alice"].session_id].disk_used_bytes == 0
    assert 0 <= by_id[bob_id].age.ToMicroseconds() < 60e6
    only_alice = await sessions.ListActiveSessions(
        session_pb2.ListActiveSessionsRequest(user_id="alice"), metadata=user_metadata("root")
    )
    assert [a.session.session_id for a in only_alice.sessions] == [own["alice"].session_id]

    # Users, even of their own sessions, are not operators.
    assert (
        await refused(
            sessions.ListActiveSessions(
                session_pb2.ListActiveSessionsRequest(), metadata=user_metadata("alice")
            )
        )
        == "PERMISSION_DENIED"
    )
    assert (
        await refused(
            sessions.EndSession(
                session_pb2.EndSessionRequest(session_id=bob_id), metadata=user_metadata("bob")
            )
        )
        == "PERMISSION_DENIED"
    )
    assert (
        await refused(
            sessions.EndSession(
                session_pb2.EndSessionRequest(session_id=ids.new_id("session")),
                metadata=user_metadata("root"),
            )
        )
        == "SESSION_NOT_FOUND"
    )
    assert (
        await refused(
            sessions.EndSession(
                session_pb2.EndSessionRequest(session_id=bob_id), metadata=user_metadata("root")
            )
        )
        == "INVALID_SESSION_STATE"
    )

    ended = await sessions.EndSession(
        session_pb2.EndSessionRequest(session_id=bob_id, force=True), metadata=user_metadata("root")
    )
    assert (ended.session_id, ended.user_id) == (bob_id, "bob")
    assert ended.bytes_freed == 1000
    assert ended.events_deleted == 5
    assert not (sessions_dir / bob_id).exists()
    assert (
        await refused(
            sessions.GetSession(
                session_pb2.GetSessionRequest(session_id=bob_id), metadata=user_metadata("bob")
            )
        )
        == "SESSION_NOT_FOUND"
    )
    again = await progress.DeleteSessionEvents(
        progress_internal_pb2.DeleteSessionEventsRequest(session_id=bob_id), metadata=mesh_metadata()
    )
    assert again.events_deleted == 0
    left = await sessions.ListActiveSessions(
        session_pb2.ListActiveSessionsRequest(), metadata=user_metadata("root")
    )
    assert [a.session.session_id for a in left.sessions] == [own["alice"].session_id]


async def test_a_bad_page_token_or_owner_filter_is_invalid_argument(mesh):
    sessions = mesh[0]
    for request in (
        session_pb2.ListActiveSessionsRequest(page_token="not-a-token"),
        session_pb2.ListActiveSessionsRequest(user_id="x" * 200),
        session_pb2.ListActiveSessionsRequest(user_id="bob\n"),
        session_pb2.ListActiveSessionsRequest(page_size=-1),
    ):
        assert await refused(sessions.ListActiveSessions(request, metadata=user_metadata("root"))) == (
            "INVALID_ARGUMENT"
        )
    assert await refused(
        sessions.EndSession(
            session_pb2.EndSessionRequest(session_id="../etc"), metadata=user_metadata("root")
        )
    ) in {"INVALID_ID", "INVALID_ARGUMENT"}
