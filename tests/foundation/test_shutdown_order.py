"""Shutdown runs drain -> server.stop(grace) -> close (issue 19 item 1).

The SIGTERM test runs the real ProgressService process. Its GetProgress checks ownership
with SessionService.GetSession, answered here by a real in-process SessionService whose
GetSession a test-only interceptor slows down: those unary calls are provably in flight
(waiting on the mesh client) when SIGTERM lands. They must complete OK, against the open
client and SQLite store; the live Subscribe stream must end with UNAVAILABLE, never
INTERNAL; and the process must exit 0 within the grace period.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2

import services.session.server
from libs.common.grpc_server import (
    ServiceWiring,
    add_health_and_reflection,
    keyring_from_settings,
    set_serving,
    stop_wiring,
)
from libs.common.interceptors import MeshServerInterceptor
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import SERVICE_PORT_OFFSETS, MeshSettings
from tests.support.identities import mesh_env, user_metadata
from tests.support.ports import free_port_block
from tests.support.service_process import wait_serving
from tests.support.synthetic_events import progress_ticks, publish
from vidsynth.v1 import progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# --- the order, with a fake server -------------------------------------------------------


class RecordingServer:
    """Stands in for grpc.aio.Server: records stop(grace) and lets a test call finish in it."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def stop(self, grace: float | None) -> None:
        self.calls.append(f"stop({grace}) begins")
        await asyncio.sleep(0.01)  # the grace period, in which calls in flight finish
        self.calls.append("stop ends")


class RecordingHealth(health.aio.HealthServicer):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        self.calls.append("health not serving")


async def served_status(health_servicer: health.aio.HealthServicer, service: str) -> int:
    reply = await health_servicer.Check(health_pb2.HealthCheckRequest(service=service), None)
    return reply.status


async def test_stop_wiring_drains_then_stops_then_closes():
    calls: list[str] = []
    health_servicer = RecordingHealth(calls)
    services = [progress_pb2.DESCRIPTOR.services_by_name["ProgressService"]]
    await set_serving(health_servicer, [s.full_name for s in services], True)
    statuses_while_draining: list[int] = []

    async def on_draining() -> None:
        statuses_while_draining.extend(
            [await served_status(health_servicer, name) for name in ("", services[0].full_name)]
        )
        calls.append("drain")

    async def on_closing() -> None:
        calls.append("close")

    wiring = ServiceWiring(
        services=services, register=lambda server: None, on_draining=on_draining, on_closing=on_closing
    )
    await stop_wiring(wiring, RecordingServer(calls), health_servicer, grace=7.0)

    assert calls == ["health not serving", "drain", "stop(7.0) begins", "stop ends", "close"]
    assert statuses_while_draining == [NOT_SERVING, NOT_SERVING]
    # NOT_SERVING for good: nothing flips it back while the process winds down.
    await set_serving(health_servicer, wiring.service_names, True)
    assert await served_status(health_servicer, "") == NOT_SERVING


async def test_stop_wiring_without_hooks_still_stops():
    calls: list[str] = []
    wiring = ServiceWiring(services=[], register=lambda server: None)
    await stop_wiring(wiring, RecordingServer(calls), RecordingHealth(calls), grace=0)
    assert calls == ["health not serving", "stop(0) begins", "stop ends"]


# --- SIGTERM on the real process ---------------------------------------------------------

GRACE_SECONDS = 10.0
OWNER_CHECK_DELAY_SECONDS = 1.5
IN_FLIGHT_CALLS = 4


class SlowGetSession(grpc.aio.ServerInterceptor):
    """Holds GetSession calls for `delay` seconds once armed, counting arrivals."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.held = 0
        self.changed = asyncio.Event()

    async def intercept_service(self, continuation, handler_call_details):
        if self.delay and handler_call_details.method.endswith("/GetSession"):
            self.held += 1
            self.changed.set()
            await asyncio.sleep(self.delay)
        return await continuation(handler_call_details)

    async def wait_held(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.held < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def slow_session_service(mesh_settings: MeshSettings):
    """A real SessionService in this process, its GetSession slowed by a test-only interceptor."""
    slow = SlowGetSession()
    wiring = await services.session.server.build(mesh_settings)
    server = grpc.aio.server(
        interceptors=[slow, MeshServerInterceptor(keyring_from_settings(mesh_settings), wiring.access())]
    )
    wiring.register(server)
    health_servicer = add_health_and_reflection(server, wiring.service_names)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    if wiring.on_started:
        await wiring.on_started()
    yield f"127.0.0.1:{port}", slow
    await stop_wiring(wiring, server, health_servicer, grace=0)


async def start_progress_process(env: dict[str, str], stderr_path) -> asyncio.subprocess.Process:
    with open(stderr_path, "wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.progress",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def test_sigterm_lets_unary_calls_finish_and_ends_streams_with_unavailable(
    slow_session_service, tmp_path
):
    session_address, slow = slow_session_service
    grpc_port = free_port_block()
    env = {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_DATA_DIR": str(tmp_path / "var"),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        "VIDSYNTH_SESSION_ADDR": session_address,
        "VIDSYNTH_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "VIDSYNTH_LOG_LEVEL": "info",
    }
    stderr_path = tmp_path / "progress.stderr"
    process = await start_progress_process(env, stderr_path)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['progress']}") as channel,
            grpc.aio.insecure_channel(session_address) as session_channel,
        ):
            await wait_serving(channel, process)
            session = await session_pb2_grpc.SessionServiceStub(session_channel).CreateSession(
                session_pb2.CreateSessionRequest(display_name="shutdown"),
                metadata=user_metadata("alice"),
                timeout=10,
            )
            session_id = session.session_id
            job_events = progress_ticks(2)
            await publish(channel, session_id, job_events, batch_size=2)
            job_id = job_events[0].job_id
            progress = progress_pb2_grpc.ProgressServiceStub(channel)
            stream = progress.Subscribe(
                progress_pb2.SubscribeRequest(session_id=session_id),
                metadata=user_metadata("alice"),
                timeout=60,
            )
            assert [(await stream.read()).seq for _ in range(2)] == [1, 2]

            slow.delay = OWNER_CHECK_DELAY_SECONDS
            snapshots = [
                asyncio.ensure_future(
                    progress.GetProgress(
                        progress_pb2.GetProgressRequest(session_id=session_id, job_id=job_id),
                        metadata=user_metadata("alice"),
                        timeout=30,
                    )
                )
                for _ in range(IN_FLIGHT_CALLS)
            ]
            # Every GetProgress has reached the service and waits on its mesh client.
            await slow.wait_held(IN_FLIGHT_CALLS, timeout=15)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            # Each finishes its owner check (mesh client) and store read during the grace.
            answered = await asyncio.gather(*snapshots, return_exceptions=True)
            failures = [a for a in answered if isinstance(a, BaseException)]
            assert not failures, [f"{e.code()}: {e.details()}" for e in failures]
            for snapshot in answered:
                assert (snapshot.session_id, snapshot.job_id, snapshot.last_seq) == (session_id, job_id, 2)

            with pytest.raises(grpc.aio.AioRpcError) as ended:
                event = await stream.read()
                assert event is grpc.aio.EOF, "the stream delivered an event nobody published"
                pytest.fail("the stream ended with OK; a client would not know to resume")
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value.details()
            assert error_from_rpc_error(ended.value).code == "SERVICE_UNAVAILABLE"

            returncode = await asyncio.wait_for(process.wait(), timeout=GRACE_SECONDS + 5)
            took = time.monotonic() - signalled
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr_path.read_text(errors="replace")
    assert returncode == 0, log[-3000:]
    assert took < GRACE_SECONDS, f"exit took {took:.1f} s; grace is {GRACE_SECONDS} s"
    assert '"service.stopped"' in log
