"""Runs the whole mesh on one machine: every service, the gateway, clamd and the nginx
edge as child processes, restarted with backoff when they die, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common import clamd_link
from libs.common.mesh_tls import MeshTls
from libs.common.settings import SERVICE_PORT_OFFSETS, MeshSettings

SERVICES = list(SERVICE_PORT_OFFSETS)
MAX_BACKOFF_SECONDS = 10.0
HEALTHY_RESET_SECONDS = 30.0
PR_SET_PDEATHSIG = 1

Echo = Callable[[str], None]


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class EdgeProbe:
    """How to check the edge from outside: HTTP through P, gRPC health through G. With TLS
    from the development CA both are verified against it; with an operator's own
    certificate (whose CA and names `up` cannot know) HTTP is checked unverified and gRPC
    health at the gateway's own server (with mesh TLS, presenting `mesh_tls`)."""

    http_url: str
    grpc_target: str
    tls: bool = False
    ca_file: Path | None = None
    mesh_tls: MeshTls | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.tls:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else False

    def grpc_channel(self) -> grpc.aio.Channel:
        if self.tls and self.ca_file:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_file.read_bytes())
            return grpc.aio.secure_channel(self.grpc_target, credentials)
        if self.tls:  # the operator's certificate: the gateway's own server, behind the edge
            return grpc_channel(self.grpc_target, "gateway", self.mesh_tls)
        return grpc.aio.insecure_channel(self.grpc_target)


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP health URL, what its certificate is verified against, and (mesh TLS) the
    identity the server must prove instead of the URL's host."""

    url: str
    verify: ssl.SSLContext | bool = True
    server_name: str = ""


def gateway_probe(settings: MeshSettings, tls: MeshTls | None) -> HttpProbe:
    """The gateway's own /healthz behind the edge: over mesh TLS with the caller's certificate when on."""
    address = f"{settings.http_host}:{settings.gateway_listen_port}"
    if tls is None:
        return HttpProbe(f"http://{address}/healthz")
    return HttpProbe(f"https://{address}/healthz", tls.client_context(), tls.server_name("gateway"))


def grpc_channel(address: str, service: str, tls: MeshTls | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=tls.channel_options(service))


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    pumps: list[asyncio.Task] = field(default_factory=list)


def _terminate_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to the child if `up` dies, even by SIGKILL.
    The child also watches its parent pid, which covers other systems."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_specs(
    env: dict[str, str], clamd_argv: list[str] | None = None, edge_argv: list[str] | None = None
) -> list[ChildSpec]:
    specs = [
        ChildSpec(name, [sys.executable, "-m", f"services.{name}"], env) for name in [*SERVICES, "gateway"]
    ]
    if clamd_argv:
        specs.insert(0, ChildSpec("clamd", clamd_argv, env))
    if edge_argv:
        specs.append(ChildSpec("edge", edge_argv, env))
    return specs


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        settings: MeshSettings,
        echo: Echo,
        clamd_address: str = "",
        edge: EdgeProbe | None = None,
        mesh_tls: MeshTls | None = None,
        gateway: HttpProbe | None = None,
    ) -> None:
        """`mesh_tls`: the identity health checks present to the services (mesh TLS on);
        `gateway`: where the gateway's health is asked (default: its own port)."""
        self.children = {spec.name: Child(spec) for spec in specs}
        self.settings = settings
        self.clamd_address = clamd_address
        self.edge = edge
        self.mesh_tls = mesh_tls
        self.gateway = gateway or gateway_probe(settings, mesh_tls)
        self.echo = echo
        self.stopping = False
        self._runners: list[asyncio.Task] = []

    async def start(self) -> None:
        self._runners = [asyncio.create_task(self._keep_running(child)) for child in self.children.values()]

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *child.spec.argv,
            env=child.spec.env,
            preexec_fn=_terminate_with_parent,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        child.process = process
        child.pumps = [asyncio.create_task(self._pump(child.spec.name, process.stdout))]
        return process

    async def _pump(self, name: str, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            self.echo(f"[{name}] {line.decode(errors='replace').rstrip()}")

    async def _keep_running(self, child: Child) -> None:
        backoff = 0.5
        while not self.stopping:
            started = time.monotonic()
            process = await self._spawn(child)
            code = await process.wait()
            for pump in child.pumps:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pump, 1.0)
            if self.stopping:
                return
            if time.monotonic() - started > HEALTHY_RESET_SECONDS:
                backoff = 0.5
            child.restarts += 1
            self.echo(f"[up] {child.spec.name} exited with {code}; restarting in {backoff:.1f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def service_states(self) -> dict[str, str]:
        async def check(name: str) -> str:
            address = self.settings.listen_address(name)
            async with grpc_channel(address, name, self.mesh_tls) as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1.0
                    )
                except grpc.RpcError:
                    return "UNREACHABLE"
                return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        async def http_state(probe: HttpProbe) -> str:
            extensions = {"sni_hostname": probe.server_name} if probe.server_name else None
            try:
                async with httpx.AsyncClient(timeout=1.0, verify=probe.verify) as client:
                    response = await client.get(probe.url, extensions=extensions)
                    return "SERVING" if response.status_code == 200 else "NOT_SERVING"
            except httpx.HTTPError:
                return "UNREACHABLE"

        async def gateway() -> str:
            return await http_state(self.gateway)

        async def edge(probe: EdgeProbe) -> str:
            """SERVING when P answers /healthz and G reports the whole public API SERVING."""
            http = await http_state(HttpProbe(f"{probe.http_url}/healthz", probe.ssl_context()))
            async with probe.grpc_channel() as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2.0
                    )
                    grpc_state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.RpcError:
                    grpc_state = "UNREACHABLE"
            return http if http != "SERVING" else grpc_state

        async def clamd() -> str:
            answers, _ = await clamd_link.status(self.clamd_address, socket_timeout=1.0)
            return "SERVING" if answers else "UNREACHABLE"

        names = [*SERVICES, "gateway"]
        checks = [*(check(n) for n in SERVICES), gateway()]
        if self.clamd_address:
            names.append("clamd")
            checks.append(clamd())
        if self.edge:
            names.append("edge")
            checks.append(edge(self.edge))
        states = await asyncio.gather(*checks)
        return dict(zip(names, states, strict=True))

    async def wait_until_serving(self, limit: float) -> dict[str, str]:
        states: dict[str, str] = {}
        try:
            async with asyncio.timeout(limit):
                while True:
                    states = await self.service_states()
                    if all(state == "SERVING" for state in states.values()):
                        return states
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise TimeoutError(f"not serving after {limit:.0f}s: {states}") from None

    async def stop(self, grace: float) -> None:
        self.stopping = True
        running = [c.process for c in self.children.values() if c.process and c.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    self.echo(f"[up] pid {process.pid} ignored SIGTERM; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)

    def signal_mesh(self, sig: int) -> None:
        """Sends `sig` to the running services and the gateway (not to clamd)."""
        for name in [*SERVICES, "gateway"]:
            child = self.children.get(name)
            if child and child.process and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(sig)

    def pids(self) -> dict[str, int]:
        return {name: c.process.pid for name, c in self.children.items() if c.process}


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment (VIDSYNTH_* included) with `up`'s choices on top."""
    env = {**os.environ, **overrides}
    env["VIDSYNTH_PARENT_PID"] = str(os.getpid())
    env["PYTHONUNBUFFERED"] = "1"
    # gRPC's fork handlers restart its event-engine threads in each forked child; the
    # services fork only to exec ffmpeg/espeak-ng, and that child intermittently died of
    # SIGSEGV before exec (FILE_CORRUPT uploads, failed stages under load). Read by gRPC at
    # import, so it must be in the environment the child starts with.
    env.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    # Each process names itself in traces (vidsynth-gateway, vidsynth-session, ...);
    # one name for all would merge them.
    env.pop("OTEL_SERVICE_NAME", None)
    return env
