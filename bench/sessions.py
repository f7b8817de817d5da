"""Sessions through the gateway vs directly over gRPC, each directly and through the nginx
edge, in the same run.

Starts a real SessionService, the gateway and the edge (separate processes, as `vidsynth up`
would), then drives four targets with the same workload: every client creates a session
and reads it back, over gRPC straight to the service and through the edge's one gRPC
address, and over HTTP straight to the gateway and through the edge. Two measurements,
both against the floors measured here, on this machine:

1. Capacity (closed loop): each client sends its next request as soon as the last
   one is answered. Prints requests/s and p50/p99 for both and the gateway's
   throughput as a ratio of direct gRPC. At saturation the latency says little of its
   own: by Little's law it is clients / throughput (32 / 1500 req/s is 21 ms).
2. Latency under load (open loop): the same 32 clients send on a fixed schedule at
   the throughput the ratio target asks of the gateway (0.5x the direct-gRPC capacity
   from step 1), to both targets alike. Each latency is taken from the request's
   scheduled time, so a stall that delays later requests counts against them too
   (no coordinated omission).

    .venv/bin/python -m bench.sessions [--clients 32] [--seconds 4]
    .venv/bin/python -m bench.sessions --tls   # through the edge, plaintext vs `up --tls` (sessions_tls.py)
    .venv/bin/python -m bench.sessions --tracing   # tracing off / sampled out / on (sessions_tracing.py)

Targets: gateway >= 0.5x direct gRPC throughput; the edge costs at most 10 % of the
gateway's throughput (through the edge >= 0.9x the gateway reached directly); p99 through
the edge under 20 ms with 32 clients at 0.5x the direct gRPC capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.edge_process import CpuMeter, bench_env, running_edge
from libs.common.heap import freeze_startup_heap
from libs.common.settings import GATEWAY_HTTP_PORT_OFFSET, SERVICE_PORT_OFFSETS
from tests.support.identities import bearer, mesh_env, user_metadata
from tests.support.percentiles import percentile
from tests.support.ports import free_port, free_port_block
from vidsynth.v1 import session_pb2 as pb
from vidsynth.v1 import session_pb2_grpc

RATIO_TARGET = 0.5
EDGE_RATIO_TARGET = 0.9
P99_TARGET_MS = 20.0
STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass
class Run:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "get": []})
    errors: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the run

    def cpu_line(self) -> str:
        per_request = ", ".join(
            f"{name} {1e6 * seconds / max(self.requests, 1):.0f}" for name, seconds in self.cpu.items()
        )
        return f"{self.name:<12} CPU µs per request: {per_request}"

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float, op: str | None = None) -> float:
        values = self.latencies[op] if op else [x for v in self.latencies.values() for x in v]
        return 1000 * percentile(values, q)

    def line(self) -> str:
        return (
            f"{self.name:<12} {self.rps:9.0f} req/s   p50 {self.percentile_ms(0.5):6.2f} ms   "
            f"p99 {self.percentile_ms(0.99):6.2f} ms   (create p99 {self.percentile_ms(0.99, 'create'):.2f} ms, "
            f"get p99 {self.percentile_ms(0.99, 'get'):.2f} ms, {self.requests} requests, {self.errors} errors)"
        )


async def drive(
    run: Run,
    create: Callable[[], Awaitable[str]],
    get: Callable[[str], Awaitable[None]],
    clients: int,
    seconds: float,
) -> None:
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                session_id = await create()
                created = time.perf_counter()
                run.latencies["create"].append(created - started)
                await get(session_id)
                run.latencies["get"].append(time.perf_counter() - created)
            except Exception:
                run.errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds += time.perf_counter() - began


async def drive_at_rate(run: Run, target: Target, clients: int, rate: float, seconds: float) -> None:
    """Open loop: `rate` requests/s in total (create + get per iteration) from `clients`
    clients, each on its own fixed schedule with a random phase."""
    period = 2 * clients / rate  # seconds between one client's iterations
    began = time.perf_counter()
    stop_at = began + seconds

    async def client() -> None:
        scheduled = began + random.uniform(0, period)
        while scheduled < stop_at:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                session_id = await target.create()
                created = time.perf_counter()
                run.latencies["create"].append(created - scheduled)
                await target.get(session_id)
                run.latencies["get"].append(time.perf_counter() - created)
            except Exception:
                run.errors += 1
            scheduled += period

    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds += time.perf_counter() - began


@dataclass
class Target:
    name: str
    create: Callable[[], Awaitable[str]]
    get: Callable[[str], Awaitable[None]]


@contextlib.asynccontextmanager
async def grpc_target(
    address: str, name: str = "grpc", credentials: grpc.ChannelCredentials | None = None
) -> AsyncIterator[Target]:
    if credentials is None:
        opened = grpc.aio.insecure_channel(address)
    else:
        opened = grpc.aio.secure_channel(address, credentials)
    async with opened as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        metadata = user_metadata("alice")

        async def create() -> str:
            return (
                await stub.CreateSession(pb.CreateSessionRequest(), metadata=metadata, timeout=10)
            ).session_id

        async def get(session_id: str) -> None:
            await stub.GetSession(pb.GetSessionRequest(session_id=session_id), metadata=metadata, timeout=10)

        yield Target(name, create, get)


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client. httpx's pool overhead at 32 concurrent
    connections capped the measurement at a few hundred requests/s (the gateway itself
    answers /healthz at thousands), so the bench speaks the protocol directly."""

    def __init__(
        self, host: str, port: int, headers: dict[str, str], tls: ssl.SSLContext | None = None
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        assert self._reader is not None
        self._writer.write(f"{method} {path} HTTP/1.1\r\n{self._headers}Content-Length: 0\r\n\r\n".encode())
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        body = await self._reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":  # the server's keep-alive limit
            await self.close()
            self._reader = self._writer = None
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()


@contextlib.asynccontextmanager
async def gateway_target(
    host: str, port: int, clients: int, name: str = "gateway", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Target]:
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(clients):
        pool.put_nowait(HttpConnection(host, port, bearer("alice"), tls))

    async def call(method: str, path: str) -> bytes:
        connection = await pool.get()
        try:
            status, body = await connection.request(method, path)
        finally:
            pool.put_nowait(connection)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {status}")
        return body

    async def create() -> str:
        return json.loads(await call("POST", "/v1/sessions"))["session_id"]

    async def get(session_id: str) -> None:
        await call("GET", f"/v1/sessions/{session_id}")

    try:
        yield Target(name, create, get)
    finally:
        while not pool.empty():
            await pool.get_nowait().close()


async def compare(
    targets: list[Target], clients: int, seconds: float, warmup: float, rounds: int, meter: CpuMeter
) -> list[Run]:
    """Warms each target up, then alternates between them in short rounds, so load from
    anything else on the machine falls on both alike."""
    for target in targets:
        await drive(Run("warmup"), target.create, target.get, clients, warmup)
    runs = [Run(target.name) for target in targets]
    for _ in range(rounds):
        for target, run in zip(targets, runs, strict=True):
            before = meter.snapshot()
            await drive(run, target.create, target.get, clients, seconds / rounds)
            for name, used in meter.snapshot().items():
                run.cpu[name] = run.cpu.get(name, 0.0) + used - before[name]
    return runs


async def compare_at_rate(
    targets: list[Target], clients: int, rate: float, seconds: float, rounds: int
) -> list[Run]:
    """Both targets at the same offered rate, alternating in rounds like `compare`."""
    runs = [Run(target.name) for target in targets]
    for _ in range(rounds):
        for target, run in zip(targets, runs, strict=True):
            await drive_at_rate(run, target, clients, rate, seconds / rounds)
    return runs


async def wait_until_ready(
    grpc_address: str, http_url: str, processes: list[asyncio.subprocess.Process]
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(grpc_address) as channel, httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if any(p.returncode is not None for p in processes):
                raise RuntimeError("a service exited during startup")
            with contextlib.suppress(grpc.RpcError, httpx.HTTPError):
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                serving = health.status == health_pb2.HealthCheckResponse.SERVING
                if serving and (await http.get(f"{http_url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("services did not start")


async def main(clients: int, seconds: float, warmup: float, rounds: int) -> int:
    grpc_port = free_port_block()
    http_port = free_port()
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as data_dir:
        env = {
            **os.environ,
            **mesh_env(),
            **bench_env(grpc_port, http_port),
            "VIDSYNTH_DATA_DIR": data_dir,
            "VIDSYNTH_LOG_LEVEL": "warning",
            "VIDSYNTH_SESSION_MAX_PER_USER": "10000000",
            "VIDSYNTH_SESSION_MAX_GLOBAL": "10000000",
            # The bench measures throughput, not the per-key limit.
            "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
            "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "1000000",
            "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1000000",
            "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "1000000",
        }
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, env=env, stdin=asyncio.subprocess.DEVNULL
            )
            for module in ("services.session", "services.gateway")
        ]
        try:
            session_address = f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['session']}"
            gateway_port = grpc_port + GATEWAY_HTTP_PORT_OFFSET
            await wait_until_ready(session_address, f"http://127.0.0.1:{gateway_port}", processes)
            async with (
                running_edge(Path(data_dir), grpc_port, http_port) as edge_pid,
                grpc_target(session_address) as direct_target,
                grpc_target(f"127.0.0.1:{grpc_port}", "grpc/edge") as edge_grpc_target,
                gateway_target("127.0.0.1", gateway_port, clients) as gateway_target_,
                gateway_target("127.0.0.1", http_port, clients, "gateway/edge") as edge_http_target,
            ):
                targets = [direct_target, edge_grpc_target, gateway_target_, edge_http_target]
                freeze_startup_heap()  # the load generator's own GC pauses are not the services'
                pids = {"session": processes[0].pid, "gateway": processes[1].pid, "edge": edge_pid}
                meter = CpuMeter({**pids, "bench": os.getpid()})
                runs = await compare(targets, clients, seconds, warmup, rounds, meter)
                direct, edge_grpc, gateway, edge_http = runs
                rate = RATIO_TARGET * direct.rps
                loaded = await compare_at_rate(targets[2:], clients, rate, seconds, max(1, rounds // 2))
                gateway_loaded, edge_loaded = loaded
        finally:
            for process in processes:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                await process.wait()

    ratio = gateway.rps / direct.rps if direct.rps else 0.0
    edge_ratio = edge_http.rps / gateway.rps if gateway.rps else 0.0
    edge_grpc_ratio = edge_grpc.rps / direct.rps if direct.rps else 0.0
    p99 = edge_loaded.percentile_ms(0.99)
    print(
        f"sessions benchmark: {clients} clients, {seconds:g} s per target in {rounds} alternating rounds, "
        "create + get per iteration"
    )
    print("capacity (closed loop, every client sends as soon as it is answered):")
    for run in (direct, edge_grpc, gateway, edge_http):
        print(run.line())
    for run in (direct, edge_grpc, gateway, edge_http):
        print(run.cpu_line())
    print(f"latency under load (open loop, {rate:.0f} req/s offered = {RATIO_TARGET}x direct capacity):")
    print(gateway_loaded.line())
    print(edge_loaded.line())
    print(f"ratio gateway/grpc {ratio:.2f} (target >= {RATIO_TARGET})")
    print(
        f"edge: gateway through the edge / gateway direct {edge_ratio:.2f} (target >= {EDGE_RATIO_TARGET}, "
        f"i.e. the edge costs {100 * (1 - edge_ratio):.0f} % of the gateway's throughput); "
        f"gRPC through the edge / direct {edge_grpc_ratio:.2f}"
    )
    print(
        f"p99 through the edge {p99:.2f} ms with {clients} clients at {rate:.0f} req/s "
        f"(target < {P99_TARGET_MS:g} ms; gateway direct {gateway_loaded.percentile_ms(0.99):.2f} ms)"
    )
    met = ratio >= RATIO_TARGET and edge_ratio >= EDGE_RATIO_TARGET and p99 < P99_TARGET_MS
    print(f"targets {'met' if met else 'NOT met'}")
    runs = (direct, edge_grpc, gateway, edge_http, gateway_loaded, edge_loaded)
    return 0 if all(run.errors == 0 for run in runs) else 1


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per target (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per target (default 1)")
    parser.add_argument("--rounds", type=int, default=8, help="alternations between the targets (default 8)")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="through the edge without and with `up --tls` (HTTPS/gRPC over TLS at the edge, mutual TLS "
        "behind it): bench/sessions_tls.py",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="measure the gateway with tracing off, sampled out and on at 100 %% (bench/sessions_tracing.py)",
    )
    args = parser.parse_args()
    if args.tls:
        from bench.sessions_tls import main as tls_main

        sys.exit(uvloop.run(tls_main(args.clients, args.seconds, args.warmup, args.rounds)))
    if args.tracing:
        from bench.sessions_tracing import main as tracing_main

        sys.exit(uvloop.run(tracing_main(args.clients, args.seconds, args.warmup, args.rounds)))
    sys.exit(uvloop.run(main(args.clients, args.seconds, args.warmup, args.rounds)))


if __name__ == "__main__":
    cli()
