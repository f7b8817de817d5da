"""A stream the client cancels ends inside its own call (libs/common/interceptors.py).

gRPC drops a cancelled response generator without closing it; its `finally` would then
run later from the GC's finalizer, in another task and context, where resetting the
call's context variables fails ("Task exception was never retrieved"), and a servicer's
clean-up (leaving a broker, a feed) waits for the GC. Here a servicer's stream records
what its `finally` sees when the client cancels.
"""

from __future__ import annotations

import asyncio

import grpc

from libs.common.grpc_server import keyring_from_settings
from libs.common.identity import Access, current_identity
from libs.common.interceptors import GRPC_REQUESTS, MeshServerInterceptor
from tests.support.identities import user_metadata
from vidsynth.v1 import progress_pb2

SERVICE = "vidsynth.v1.ProgressService"
METHOD = f"/{SERVICE}/Subscribe"


class EndlessStream:
    def __init__(self) -> None:
        self.sent = 0
        self.closed = asyncio.Event()
        self.identity_when_closed: str | None = None
        self.task_when_closed: asyncio.Task | None = None
        self.task_when_started: asyncio.Task | None = None

    async def subscribe(self, request, context):
        self.task_when_started = asyncio.current_task()
        try:
            while True:
                self.sent += 1
                # No await of its own: the call waits in gRPC's send, where a cancel lands
                # with this generator suspended at its yield.
                yield progress_pb2.ProgressEvent(seq=self.sent, session_id=request.session_id)
        finally:
            identity = current_identity.get()
            self.identity_when_closed = identity.user_id if identity else None
            self.task_when_closed = asyncio.current_task()
            self.closed.set()


def cancelled_count() -> float:
    return GRPC_REQUESTS.labels("ProgressService", "Subscribe", "CANCELLED")._value.get()


async def test_a_cancelled_stream_closes_in_its_own_call_and_context(mesh_settings):
    keyring = keyring_from_settings(mesh_settings)
    stream = EndlessStream()
    handler = grpc.unary_stream_rpc_method_handler(
        stream.subscribe,
        request_deserializer=progress_pb2.SubscribeRequest.FromString,
        response_serializer=progress_pb2.ProgressEvent.SerializeToString,
    )
    server = grpc.aio.server(interceptors=[MeshServerInterceptor(keyring, {METHOD: Access.USER})])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Subscribe": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    unhandled: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    before = cancelled_count()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(
                METHOD,
                request_serializer=progress_pb2.SubscribeRequest.SerializeToString,
                response_deserializer=progress_pb2.ProgressEvent.FromString,
            )(progress_pb2.SubscribeRequest(session_id="ses_x"), metadata=user_metadata("alice"))
            received = 0
            async for _ in call:
                received += 1
                if received == 3:
                    break
            call.cancel()
            async with asyncio.timeout(5):
                await stream.closed.wait()
        assert stream.identity_when_closed == "alice", "the finally ran outside the call's context"
        assert stream.task_when_closed is stream.task_when_started, "the finally ran in another task"
        assert cancelled_count() == before + 1
        assert unhandled == []
    finally:
        loop.set_exception_handler(None)
        await server.stop(0)
