"""SessionService over gRPC: identity, ownership, limits, TTL, states and every error path."""

from __future__ import annotations

import asyncio
import functools
import stat

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from libs.common import ids
from libs.common.rpc_status import DETAILS_KEY
from services.session.config import SessionSettings
from services.session.server import build
from tests.session.conftest import rpc_error
from tests.session.helpers import FACE, VOICE, asset
from tests.support.fake_clock import FakeClock
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import session_internal_pb2
from vidsynth.v1 import session_pb2 as pb

ALICE = user_metadata("alice")
BOB = user_metadata("bob")


async def create(stub, metadata=ALICE, name: str = "") -> pb.Session:
    return await stub.CreateSession(pb.CreateSessionRequest(display_name=name), metadata=metadata)


async def make_ready(internal, session_id: str, user: str = "alice") -> pb.Session:
    await internal.RegisterAsset(
        session_internal_pb2.RegisterAssetRequest(session_id=session_id, asset=asset(FACE)),
        metadata=mesh_metadata(user),
    )
    return await internal.RegisterAsset(
        session_internal_pb2.RegisterAssetRequest(session_id=session_id, asset=asset(VOICE)),
        metadata=mesh_metadata(user),
    )


async def test_create_get_list_touch_delete(stub, mesh_settings):
    created = await create(stub, name="demo")
    assert created.state == pb.SESSION_STATE_CREATED
    assert created.user_id == "alice"
    assert created.display_name == "demo"
    assert created.expire_time.seconds - created.create_time.seconds == 3600
    root = mesh_settings.sessions_dir / created.session_id
    assert stat.S_IMODE(root.stat().st_mode) == 0o700

    got = await stub.GetSession(pb.GetSessionRequest(session_id=created.session_id), metadata=ALICE)
    assert got.session_id == created.session_id
    touched = await stub.TouchSession(pb.TouchSessionRequest(session_id=created.session_id), metadata=ALICE)
    assert touched.last_active_time.ToNanoseconds() >= created.last_active_time.ToNanoseconds()
    listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=ALICE)
    assert [s.session_id for s in listed.sessions] == [created.session_id]

    deleted = await stub.DeleteSession(pb.DeleteSessionRequest(session_id=created.session_id), metadata=ALICE)
    assert deleted.session_id == created.session_id
    assert not root.exists()
    error = await rpc_error(
        stub.GetSession(pb.GetSessionRequest(session_id=created.session_id), metadata=ALICE)
    )
    assert error.code == "SESSION_NOT_FOUND"


async def test_the_mesh_may_act_for_a_user(stub):
    created = await create(stub, metadata=mesh_metadata("alice"))
    assert created.user_id == "alice"
    got = await stub.GetSession(pb.GetSessionRequest(session_id=created.session_id), metadata=ALICE)
    assert got.session_id == created.session_id


async def test_missing_and_wrong_keys_are_unauthenticated(stub):
    for metadata in ((), (("authorization", "Bearer nope"),), (("authorization", "Basic abc"),)):
        error = await rpc_error(stub.CreateSession(pb.CreateSessionRequest(), metadata=metadata))
        assert error.code == "UNAUTHENTICATED"
    error = await rpc_error(
        stub.CreateSession(pb.CreateSessionRequest(), metadata=(("x-vidsynth-mesh-token", "forged"),))
    )
    assert error.code == "UNAUTHENTICATED"
    # The mesh credential without a user cannot use user RPCs.
    error = await rpc_error(stub.ListSessions(pb.ListSessionsRequest(), metadata=mesh_metadata()))
    assert error.code == "UNAUTHENTICATED"


async def test_another_users_session_is_not_found(stub, internal):
    created = await create(stub)
    sid = created.session_id
    for call in (
        stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=BOB),
        stub.TouchSession(pb.TouchSessionRequest(session_id=sid), metadata=BOB),
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=BOB),
        internal.RegisterAsset(
            session_internal_pb2.RegisterAssetRequest(session_id=sid, asset=asset(FACE)),
            metadata=mesh_metadata("bob"),
        ),
        internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=sid, state=pb.SESSION_STATE_PROCESSING, job_id=ids.new_id("job")
            ),
            metadata=mesh_metadata("bob"),
        ),
    ):
        error = await rpc_error(call)
        assert error.code == "SESSION_NOT_FOUND"
        assert error.metadata == {"session_id": sid}  # ErrorInfo names the id it did not find
    listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=BOB)
    assert list(listed.sessions) == []
    # A well-formed id that exists nowhere answers the same as another user's.
    error = await rpc_error(
        stub.GetSession(pb.GetSessionRequest(session_id=ids.new_id("session")), metadata=BOB)
    )
    assert error.code == "SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    "bad_id", ["", "ses_123", "../../etc/passwd", "ses_../../../tmp", "ses_" + "A" * 24, "job_" + "0" * 24]
)
async def test_malformed_ids_are_invalid(stub, bad_id, mesh_settings):
    for call in (
        stub.GetSession(pb.GetSessionRequest(session_id=bad_id), metadata=ALICE),
        stub.TouchSession(pb.TouchSessionRequest(session_id=bad_id), metadata=ALICE),
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=bad_id), metadata=ALICE),
    ):
        error = await rpc_error(call)
        assert error.code == "INVALID_ID"
        assert error.field_violations[0].field == "session_id"


async def test_invalid_arguments(stub):
    error = await rpc_error(
        stub.CreateSession(pb.CreateSessionRequest(display_name="x" * 101), metadata=ALICE)
    )
    assert error.code == "INVALID_ARGUMENT"
    assert error.field_violations[0].field == "display_name"
    error = await rpc_error(stub.ListSessions(pb.ListSessionsRequest(page_token="garbage!"), metadata=ALICE))
    assert error.code == "INVALID_ARGUMENT"
    assert error.field_violations[0].field == "page_token"


async def test_internal_rpcs_need_the_mesh_credential(stub, internal):
    created = await create(stub)
    for call in (
        internal.RegisterAsset(
            session_internal_pb2.RegisterAssetRequest(session_id=created.session_id, asset=asset(FACE)),
            metadata=ALICE,
        ),
        internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=created.session_id, state=pb.SESSION_STATE_READY
            ),
            metadata=ALICE,
        ),
        internal.SweepExpiredSessions(session_internal_pb2.SweepExpiredSessionsRequest(), metadata=ALICE),
    ):
        error = await rpc_error(call)
        assert error.code == "PERMISSION_DENIED"


async def test_assets_make_it_ready_and_jobs_move_it(stub, internal):
    created = await create(stub)
    sid = created.session_id
    ready = await make_ready(internal, sid)
    assert ready.state == pb.SESSION_STATE_READY
    assert [a.kind for a in ready.assets] == [FACE, VOICE]
    job = ids.new_id("job")
    runner = mesh_metadata("alice")
    processing = await internal.UpdateSessionState(
        session_internal_pb2.UpdateSessionStateRequest(
            session_id=sid, state=pb.SESSION_STATE_PROCESSING, job_id=job
        ),
        metadata=runner,
    )
    assert processing.state == pb.SESSION_STATE_PROCESSING
    assert processing.active_job_id == job
    assert processing.expire_time.seconds - processing.last_active_time.seconds == 7200

    error = await rpc_error(
        internal.RegisterAsset(
            session_internal_pb2.RegisterAssetRequest(session_id=sid, asset=asset(FACE)), metadata=runner
        )
    )
    assert error.code == "INVALID_SESSION_STATE"
    error = await rpc_error(stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=ALICE))
    assert error.code == "INVALID_SESSION_STATE"

    # A background runner (no user id) may finish the job.
    completed = await internal.UpdateSessionState(
        session_internal_pb2.UpdateSessionStateRequest(
            session_id=sid, state=pb.SESSION_STATE_COMPLETED, job_id=job
        ),
        metadata=mesh_metadata(),
    )
    assert completed.state == pb.SESSION_STATE_COMPLETED
    assert completed.active_job_id == ""
    error = await rpc_error(
        internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(session_id=sid, state=pb.SESSION_STATE_FAILED),
            metadata=runner,
        )
    )
    assert error.code == "INVALID_SESSION_STATE"
    # New inputs after a finished job make it ready again.
    again = await internal.RegisterAsset(
        session_internal_pb2.RegisterAssetRequest(session_id=sid, asset=asset(VOICE)), metadata=runner
    )
    assert again.state == pb.SESSION_STATE_READY


async def test_illegal_transition_from_created(stub, internal):
    created = await create(stub)
    error = await rpc_error(
        internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=created.session_id, state=pb.SESSION_STATE_PROCESSING, job_id=ids.new_id("job")
            ),
            metadata=mesh_metadata("alice"),
        )
    )
    assert error.code == "INVALID_SESSION_STATE"


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> float:
    for key, value in error.trailing_metadata():
        if key == DETAILS_KEY:
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError("no RetryInfo")


async def test_fifty_concurrent_creates_against_a_cap_of_ten(stub):
    calls = [create(stub) for _ in range(50)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    created = [r for r in results if isinstance(r, pb.Session)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 10
    assert len(refused) == 40
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert 1.0 <= retry_delay_seconds(refused[0]) <= 3600.0
    error = await rpc_error(create(stub))
    assert error.code == "SESSION_LIMIT_REACHED"
    assert error.retry_after_seconds is not None
    assert error.metadata == {"scope": "user", "limit": "10"}  # session_max_per_user
    # Another user still has room; deleting one makes room again.
    await create(stub, metadata=BOB)
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=created[0].session_id), metadata=ALICE)
    await create(stub)


class TestTinyTtl:
    @pytest.fixture
    def session_settings(self) -> SessionSettings:
        return SessionSettings(
            session_max_per_user=2,
            session_idle_ttl_seconds=2.0,
            session_processing_ttl_seconds=2.0,
            session_activity_write_interval_seconds=0,
        )

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def session_service(self, in_process_mesh, session_settings, clock):
        # The service's clock is the test's: time passes when the test says, not while it sleeps.
        return await in_process_mesh.start(
            "session", functools.partial(build, session_settings=session_settings, clock=clock)
        )

    async def test_expired_answers_expired_until_swept(self, stub, internal, mesh_settings, clock):
        first = await create(stub)
        processing = await create(stub)
        await make_ready(internal, processing.session_id)
        await internal.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=processing.session_id, state=pb.SESSION_STATE_PROCESSING, job_id=ids.new_id("job")
            ),
            metadata=mesh_metadata("alice"),
        )
        clock.advance(2.5)
        for call in (
            stub.GetSession(pb.GetSessionRequest(session_id=first.session_id), metadata=ALICE),
            stub.TouchSession(pb.TouchSessionRequest(session_id=first.session_id), metadata=ALICE),
            stub.DeleteSession(pb.DeleteSessionRequest(session_id=first.session_id), metadata=ALICE),
        ):
            error = await rpc_error(call)
            assert error.code == "SESSION_EXPIRED"
        listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=ALICE)
        states = {s.session_id: s.state for s in listed.sessions}
        assert states[first.session_id] == pb.SESSION_STATE_EXPIRED
        assert states[processing.session_id] == pb.SESSION_STATE_PROCESSING
        # The expired one no longer counts against the cap of 2.
        await create(stub)

        swept = await internal.SweepExpiredSessions(
            session_internal_pb2.SweepExpiredSessionsRequest(), metadata=mesh_metadata()
        )
        assert first.session_id in swept.session_ids
        assert processing.session_id not in swept.session_ids
        assert not (mesh_settings.sessions_dir / first.session_id).exists()
        assert (mesh_settings.sessions_dir / processing.session_id).exists()
        error = await rpc_error(
            stub.GetSession(pb.GetSessionRequest(session_id=first.session_id), metadata=ALICE)
        )
        assert error.code == "SESSION_NOT_FOUND"
        still = await stub.GetSession(pb.GetSessionRequest(session_id=processing.session_id), metadata=ALICE)
        assert still.state == pb.SESSION_STATE_PROCESSING


async def test_pagination_over_grpc(stub):
    made = [(await create(stub)).session_id for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListSessions(pb.ListSessionsRequest(page_size=2, page_token=token), metadata=ALICE)
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == 5


async def test_oversize_messages_are_refused(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(pb.CreateSessionRequest(display_name="x" * (9 << 20)), metadata=ALICE)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=ALICE)
    assert list(listed.sessions) == []
