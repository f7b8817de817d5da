"""Progress fan-out benchmark: SSE through the gateway vs direct gRPC Subscribe (the floor),
each straight to its server and through the nginx edge.

Starts SessionService, ProgressService, the gateway and the edge as real processes, then
for 1, 50 and 200 subscribers on one session publishes events at a steady rate from one
publisher and measures delivered events/s and publish->receive latency (p50/p99), over
gRPC and SSE, directly and through the edge, in the same run.

    .venv/bin/python -m bench.progress [--rate 50] [--seconds 3] [--subscribers 1,50,200]
    .venv/bin/python -m bench.progress --rate 0     # back to back: the maximum delivery rate

Targets: SSE delivery >= 0.5x gRPC (issue 5); SSE p99 through the edge under 10 ms at 200
subscribers (issue 16).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.edge_process import bench_env, running_edge
from libs.common.ids import new_id
from libs.common.settings import GATEWAY_HTTP_PORT_OFFSET, SERVICE_PORT_OFFSETS
from tests.support.identities import bearer, mesh_env, mesh_metadata, user_metadata
from tests.support.percentiles import percentile
from tests.support.ports import free_port, free_port_block
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import common_pb2, progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc

END_MESSAGE = "bench-end"
TRANSPORTS = ("grpc", "grpc/edge", "sse", "sse/edge")
SSE_P99_TARGET_MS = 10.0


@dataclass
class Result:
    transport: str
    subscribers: int
    published: int
    delivered: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


class Mesh:
    """session + progress + gateway as child processes on free ports, behind the edge."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.grpc_port = free_port_block()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            **mesh_env(),
            **bench_env(self.grpc_port, self.http_port),
            "VIDSYNTH_DATA_DIR": str(data_dir),
            "VIDSYNTH_LOG_LEVEL": "warning",
            "VIDSYNTH_SESSION_MAX_PER_USER": "100",
            "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
            "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "100000",
            "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "100000",
            "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "100000",
        }
        self.processes: list[subprocess.Popen] = []

    @property
    def progress_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port + SERVICE_PORT_OFFSETS['progress']}"

    @property
    def session_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port + SERVICE_PORT_OFFSETS['session']}"

    @property
    def url(self) -> str:
        """The gateway itself, behind the edge."""
        return f"http://127.0.0.1:{self.grpc_port + GATEWAY_HTTP_PORT_OFFSET}"

    def target(self, transport: str) -> str:
        """Where each transport subscribes: straight to its server, or through the edge."""
        return {
            "grpc": self.progress_address,
            "grpc/edge": f"127.0.0.1:{self.grpc_port}",
            "sse": self.url,
            "sse/edge": f"http://127.0.0.1:{self.http_port}",
        }[transport]

    async def start(self) -> None:
        for module in ("services.session", "services.progress", "services.gateway"):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", module],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        await self._wait_ready()

    async def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if all(
                    await asyncio.gather(
                        self._serving(self.session_address), self._serving(self.progress_address)
                    )
                ):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{self.url}/healthz")).status_code == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError("mesh did not become ready")

    @staticmethod
    async def _serving(address: str) -> bool:
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def latency_ms(message: str, received_ns: int) -> float | None:
    sent, _, _ = message.partition(" ")
    return (received_ns - int(sent)) / 1e6 if sent.isdigit() else None


async def grpc_subscriber(address: str, session_id: str, result: Result, ready: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = progress_pb2_grpc.ProgressServiceStub(channel).Subscribe(
            progress_pb2.SubscribeRequest(session_id=session_id, until_terminal=True),
            metadata=user_metadata("alice"),
            timeout=600,
        )
        await call.initial_metadata()
        ready.set()
        async for event in call:
            if event.type == progress_pb2.EVENT_TYPE_JOB_COMPLETED:
                return
            value = latency_ms(event.message, time.time_ns())
            if value is not None:
                result.latencies_ms.append(value)
                result.delivered += 1


async def _read_chunked_lines(reader: asyncio.StreamReader):
    """Lines of an HTTP/1.1 chunked body (uvicorn streams SSE that way)."""
    pending = b""
    while True:
        size_line = await reader.readline()
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            return
        pending += await reader.readexactly(size)
        await reader.readexactly(2)
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode()


async def sse_subscriber(url: str, session_id: str, result: Result, ready: asyncio.Event) -> None:
    """A lean SSE client on raw asyncio streams, so the client side costs about what grpc.aio does."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = bearer("alice")["Authorization"]
    writer.write(
        (
            f"GET /v1/sessions/{session_id}/events?until_terminal=true HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {auth}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"SSE refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    event_type = ""
    try:
        async for line in _read_chunked_lines(reader):
            if line.startswith(": connected"):
                ready.set()  # the gateway joined this client to the session's feed
            elif line.startswith("event:"):
                event_type = line[6:].strip()
            elif line.startswith("data:"):
                if event_type == "job.completed":
                    return
                received = time.time_ns()
                message = line[line.index('"message":"') + 11 :].split('"', 1)[0]
                value = latency_ms(message, received)
                if value is not None:
                    result.latencies_ms.append(value)
                    result.delivered += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def run_scenario(mesh: Mesh, transport: str, subscribers: int, rate: float, seconds: float) -> Result:
    async with grpc.aio.insecure_channel(mesh.session_address) as channel:
        session = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(display_name="bench"),
            metadata=user_metadata("alice"),
            timeout=10,
        )
    # --rate 0: publish back to back (maximum delivery rate) instead of paced (latency).
    count = max(1, int(rate * seconds)) if rate > 0 else max(1, int(seconds * 200))
    result = Result(transport, subscribers, count)
    readies = [asyncio.Event() for _ in range(subscribers)]
    subscriber = grpc_subscriber if transport.startswith("grpc") else sse_subscriber
    tasks = [
        asyncio.create_task(subscriber(mesh.target(transport), session.session_id, result, r))
        for r in readies
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await asyncio.sleep(0.3)  # let every subscription reach the live phase

    job_id = new_id("job")
    async with grpc.aio.insecure_channel(mesh.progress_address) as channel:
        stub = progress_internal_pb2_grpc.ProgressInternalServiceStub(channel)
        started = time.perf_counter()
        for index in range(count):
            if rate > 0:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            event = progress_pb2.ProgressEvent(
                type=progress_pb2.EVENT_TYPE_STAGE_PROGRESS,
                job_id=job_id,
                stage=common_pb2.STAGE_ANIMATE,
                stage_percent=100.0 * index / count,
                message=f"{time.time_ns()} tick {index}",
            )
            await stub.PublishEvents(
                progress_internal_pb2.PublishEventsRequest(session_id=session.session_id, events=[event]),
                metadata=mesh_metadata(),
                timeout=10,
            )
        await stub.PublishEvents(
            progress_internal_pb2.PublishEventsRequest(
                session_id=session.session_id,
                events=[
                    progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_JOB_COMPLETED, job_id=job_id)
                ],
            ),
            metadata=mesh_metadata(),
            timeout=10,
        )
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        result.seconds = time.perf_counter() - started
    return result


def report(results: list[Result], rate: float) -> None:
    pace = f"at {rate:g} events/s" if rate > 0 else "publishing back to back"
    print(f"\none publisher {pace}; every subscriber on the same session")
    print(f"{'transport':<12}{'subs':>6}{'delivered':>11}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        complete = "" if r.delivered == r.published * r.subscribers else "  INCOMPLETE"
        print(
            f"{r.transport:<12}{r.subscribers:>6}{r.delivered:>11}{r.rate:>11.0f}"
            f"{r.percentile(0.5):>9.2f}{r.percentile(0.99):>9.2f}{complete}"
        )
    by_key = {(r.transport, r.subscribers): r for r in results}
    print()
    for subs in sorted({r.subscribers for r in results}):
        sse, floor = by_key.get(("sse", subs)), by_key.get(("grpc", subs))
        edge_sse, edge_grpc = by_key.get(("sse/edge", subs)), by_key.get(("grpc/edge", subs))
        if sse and floor and floor.rate:
            print(
                f"{subs:>4} subscribers: SSE/gRPC delivery ratio {sse.rate / floor.rate:.2f} (target >= 0.5); "
                f"p99 SSE {sse.percentile(0.99):.2f} ms, SSE/edge {edge_sse.percentile(0.99) if edge_sse else 0:.2f} ms, "
                f"gRPC {floor.percentile(0.99):.2f} ms, gRPC/edge {edge_grpc.percentile(0.99) if edge_grpc else 0:.2f} ms"
            )
    top = max(r.subscribers for r in results)
    sse_top = by_key.get(("sse/edge", top))
    if sse_top:
        verdict = "meets" if sse_top.percentile(0.99) < SSE_P99_TARGET_MS else "misses"
        print(
            f"SSE p99 through the edge at {top} subscribers: {sse_top.percentile(0.99):.2f} ms "
            f"({verdict} the {SSE_P99_TARGET_MS:g} ms target)"
        )


async def main_async(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.subscribers.split(",")]
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as tmp:
        mesh = Mesh(Path(tmp))
        try:
            await mesh.start()
            async with running_edge(mesh.data_dir, mesh.grpc_port, mesh.http_port):
                results = []
                for subs in counts:
                    for transport in TRANSPORTS:
                        results.append(await run_scenario(mesh, transport, subs, args.rate, args.seconds))
                        print(f"  done: {transport} x{subs}", file=sys.stderr)
            report(results, args.rate)
        finally:
            mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=50.0, help="events published per second (0: back to back)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each scenario publishes")
    parser.add_argument("--subscribers", default="1,50,200", help="comma-separated subscriber counts")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
