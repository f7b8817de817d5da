"""Subscribe, PublishEvents, DeleteSessionEvents over real gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from libs.common.grpc_server import stop_wiring
from libs.common.ids import new_id
from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import mesh_metadata, user_metadata
from tests.support.synthetic_events import job_events, progress_ticks, publish
from vidsynth.internal.v1 import progress_internal_pb2
from vidsynth.v1 import progress_pb2


async def anext_all(call) -> list[progress_pb2.ProgressEvent]:
    return [event async for event in call]


async def collect(call, count: int) -> list[progress_pb2.ProgressEvent]:
    """The next `count` events (read API, so a test may call call.read() afterwards)."""
    return [await call.read() for _ in range(count)]


def rpc_code(error: grpc.aio.AioRpcError) -> str:
    return error_from_rpc_error(error).code


async def test_publish_assigns_consecutive_seqs(progress_mesh):
    session_id = await progress_mesh.create_session()
    first = await publish(progress_mesh.channel, session_id, progress_ticks(3), batch_size=3)
    second = await publish(progress_mesh.channel, session_id, progress_ticks(2))
    assert first == [1, 2, 3]
    assert second == [4, 5]


async def test_replay_then_live_until_terminal(progress_mesh):
    session_id = await progress_mesh.create_session()
    events = job_events()
    await publish(progress_mesh.channel, session_id, events[:5], batch_size=5)
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id, until_terminal=True),
        metadata=user_metadata("alice"),
        timeout=30,
    )
    # until_terminal: the stream ends by itself after job.completed.
    reader = asyncio.create_task(anext_all(call))
    await publish(progress_mesh.channel, session_id, events[5:])
    received = await asyncio.wait_for(reader, 30)
    assert [e.seq for e in received] == list(range(1, len(events) + 1))
    assert received[-1].type == progress_pb2.EVENT_TYPE_JOB_COMPLETED
    assert all(e.session_id == session_id for e in received)
    assert all(e.timestamp.seconds > 0 for e in received)


async def test_subscribe_after_seq_and_job_filter(progress_mesh):
    session_id = await progress_mesh.create_session()
    first, second = job_events(), job_events()
    await publish(progress_mesh.channel, session_id, first + second, batch_size=100)
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(
            session_id=session_id, after_seq=3, job_id=second[0].job_id, until_terminal=True
        ),
        metadata=user_metadata("alice"),
        timeout=30,
    )
    received = [event async for event in call]
    assert [e.seq for e in received] == list(range(len(first) + 1, len(first) + len(second) + 1))
    assert {e.job_id for e in received} == {second[0].job_id}


@pytest.mark.parametrize("rpc", ["Subscribe", "GetProgress"])
async def test_other_users_session_is_not_found(progress_mesh, rpc):
    session_id = await progress_mesh.create_session("alice")
    await publish(progress_mesh.channel, session_id, job_events())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if rpc == "Subscribe":
            call = progress_mesh.progress.Subscribe(
                progress_pb2.SubscribeRequest(session_id=session_id),
                metadata=user_metadata("bob"),
                timeout=10,
            )
            await call.read()
        else:
            await progress_mesh.progress.GetProgress(
                progress_pb2.GetProgressRequest(session_id=session_id),
                metadata=user_metadata("bob"),
                timeout=10,
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert rpc_code(caught.value) == "SESSION_NOT_FOUND"


async def test_unknown_session_is_not_found(progress_mesh):
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=new_id("session")),
        metadata=user_metadata("alice"),
        timeout=10,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert rpc_code(caught.value) == "SESSION_NOT_FOUND"


async def test_malformed_ids_are_invalid(progress_mesh):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_read(progress_mesh, "not-a-session")
    assert rpc_code(caught.value) == "INVALID_ID"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await progress_mesh.progress_internal.PublishEvents(
            progress_internal_pb2.PublishEventsRequest(session_id="../etc", events=progress_ticks(1)),
            metadata=mesh_metadata(),
            timeout=10,
        )
    assert rpc_code(caught.value) == "INVALID_ID"


async def call_read(progress_mesh, session_id: str):
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=10
    )
    return await call.read()


async def test_publish_is_internal(progress_mesh):
    session_id = await progress_mesh.create_session()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await progress_mesh.progress_internal.PublishEvents(
            progress_internal_pb2.PublishEventsRequest(session_id=session_id, events=progress_ticks(1)),
            metadata=user_metadata("alice"),
            timeout=10,
        )
    assert rpc_code(caught.value) == "PERMISSION_DENIED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await progress_mesh.progress_internal.DeleteSessionEvents(
            progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
            metadata=user_metadata("alice"),
            timeout=10,
        )
    assert rpc_code(caught.value) == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([], "events"),
        ([progress_pb2.ProgressEvent(job_id="job_" + "0" * 24)], "events[0].type"),
        ([progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_WARNING, stage=99)], "events[0].stage"),
        (
            [progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_WARNING, job_id="job_x")],
            "events[0].job_id",
        ),
    ],
)
async def test_publish_rejects_bad_events(progress_mesh, events, field):
    session_id = await progress_mesh.create_session()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await progress_mesh.progress_internal.PublishEvents(
            progress_internal_pb2.PublishEventsRequest(session_id=session_id, events=events),
            metadata=mesh_metadata(),
            timeout=10,
        )
    error = error_from_rpc_error(caught.value)
    assert error.code in {"INVALID_ARGUMENT", "INVALID_ID"}
    assert [v.field for v in error.field_violations] == [field]


async def test_delete_session_events_ends_live_subscribers(progress_mesh):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(4), batch_size=4)
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=30
    )
    assert len(await collect(call, 4)) == 4
    deleted = await progress_mesh.progress_internal.DeleteSessionEvents(
        progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
        metadata=mesh_metadata(),
        timeout=10,
    )
    assert deleted.events_deleted == 4
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert rpc_code(caught.value) == "SESSION_NOT_FOUND"
    assert await progress_mesh.event_log.store.read_after(session_id, 0, 100) == []


async def test_client_that_goes_away_is_cleaned_up(progress_mesh):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(2), batch_size=2)
    broker = progress_mesh.event_log.broker
    calls = []
    for _ in range(3):
        call = progress_mesh.progress.Subscribe(
            progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=30
        )
        await collect(call, 2)
        calls.append(call)
    assert broker.subscriber_count(session_id) == 3
    for call in calls:
        call.cancel()
    for _ in range(400):
        if broker.subscriber_count(session_id) == 0:
            break
        await asyncio.sleep(0.025)
    assert broker.subscriber_count(session_id) == 0


async def test_shutdown_ends_live_streams_with_service_unavailable(progress_mesh, in_process_mesh):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(2), batch_size=2)
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=30
    )
    assert len(await collect(call, 2)) == 2
    service = in_process_mesh.running.pop("progress")
    await stop_wiring(service.wiring, service.server, service.health, grace=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert rpc_code(caught.value) == "SERVICE_UNAVAILABLE"


async def test_stream_started_while_draining_replays_then_ends_with_service_unavailable(
    progress_mesh, in_process_mesh
):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(2), batch_size=2)
    # Between draining and server.stop a Subscribe can still arrive: it gets no live tail.
    await in_process_mesh.running["progress"].wiring.on_draining()
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=10
    )
    assert [event.seq for event in await collect(call, 2)] == [1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert rpc_code(caught.value) == "SERVICE_UNAVAILABLE"


async def test_remaining_argument_errors(progress_mesh):
    session_id = await progress_mesh.create_session()
    stub, alice, mesh = progress_mesh.progress, user_metadata("alice"), mesh_metadata()
    internal = progress_mesh.progress_internal

    async def first_read(request):
        call = stub.Subscribe(request, metadata=alice, timeout=10)
        return await call.read()

    cases = [
        (first_read(progress_pb2.SubscribeRequest(session_id=session_id, after_seq=-1)), "INVALID_ARGUMENT"),
        (first_read(progress_pb2.SubscribeRequest(session_id=session_id, job_id="job_nope")), "INVALID_ID"),
        (
            stub.GetProgress(
                progress_pb2.GetProgressRequest(session_id=session_id, job_id="nope"),
                metadata=alice,
                timeout=10,
            ),
            "INVALID_ID",
        ),
        (
            internal.DeleteSessionEvents(
                progress_internal_pb2.DeleteSessionEventsRequest(session_id="ses_"), metadata=mesh, timeout=10
            ),
            "INVALID_ID",
        ),
        (
            internal.PublishEvents(
                progress_internal_pb2.PublishEventsRequest(
                    session_id=session_id, events=progress_ticks(1001)
                ),
                metadata=mesh,
                timeout=10,
            ),
            "INVALID_ARGUMENT",
        ),
        (
            internal.PublishEvents(
                progress_internal_pb2.PublishEventsRequest(
                    session_id=session_id,
                    events=[
                        progress_pb2.ProgressEvent(
                            type=progress_pb2.EVENT_TYPE_WARNING, session_id=new_id("session")
                        )
                    ],
                ),
                metadata=mesh,
                timeout=10,
            ),
            "INVALID_ARGUMENT",
        ),
    ]
    for pending, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pending
        assert rpc_code(caught.value) == code
