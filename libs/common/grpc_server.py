"""gRPC server bootstrap shared by every service: interceptors, health, reflection,
graceful shutdown on SIGTERM/SIGINT, and exit when `vidsynth up` is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc
import structlog
import uvloop
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs.common import mesh_tls
from libs.common.access import access_policy
from libs.common.children import end_all_children
from libs.common.heap import freeze_startup_heap
from libs.common.identity import Access, Keyring, parse_api_keys
from libs.common.interceptors import MeshServerInterceptor
from libs.common.keyring_reload import KeysFileWatcher
from libs.common.keys_file import KeysFileError, load_keys_file
from libs.common.log import configure_logging
from libs.common.metrics import serve_metrics
from libs.common.rate_limit import TokenBucketLimiter
from libs.common.settings import MeshSettings, get_mesh_settings
from libs.common.tracing import configure_tracing

log = structlog.get_logger("vidsynth.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


def keyring_from_settings(settings: MeshSettings) -> Keyring:
    """The environment's keys and, when VIDSYNTH_API_KEYS_FILE is set, the file's; a file
    that cannot be used raises KeysFileError, so the process does not start."""
    file_keys = load_keys_file(settings.api_keys_file) if settings.api_keys_file else None
    return Keyring(
        parse_api_keys(settings.api_keys.get_secret_value()),
        settings.mesh_token.get_secret_value(),
        settings.admin_user_ids,
        file_keys,
    )


def watch_keys_file(keyring: Keyring, settings: MeshSettings) -> KeysFileWatcher | None:
    """Reloads the keys file into `keyring` on change and on SIGHUP (None without a file)."""
    if not settings.api_keys_file:
        return None
    watcher = KeysFileWatcher(keyring, settings.api_keys_file, settings.api_keys_reload_seconds)
    watcher.install_sighup()
    watcher.start()
    return watcher


def limiter_from_settings(settings: MeshSettings) -> TokenBucketLimiter:
    return TokenBucketLimiter(settings.grpc_rate_limit_per_second, settings.grpc_rate_limit_burst)


def create_server(
    address: str,
    *,
    keyring: Keyring,
    access: Mapping[str, Access],
    limiter: TokenBucketLimiter | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with the mesh interceptor, bound to `address` (port 0 picks one),
    with TLS when given `credentials` (mesh TLS: client certificates required).
    `access` names every vidsynth RPC it may serve; any other is refused."""
    server = grpc.aio.server(
        interceptors=[MeshServerInterceptor(keyring, access, limiter)], options=SERVER_OPTIONS
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port


def add_health_and_reflection(server: grpc.aio.Server, service_names: list[str]) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return health_servicer


async def set_serving(
    health_servicer: health.aio.HealthServicer, service_names: list[str], serving: bool
) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        await health_servicer.set(name, status)


@dataclass
class ServiceWiring:
    """What a service's `build` returns: the gRPC services it serves (public and
    internal, on one port), how to register them and its lifecycle hooks.

    Shutdown runs in the grpc asyncio examples' order (`stop_wiring`):
    `on_draining` stops taking new work and ends long-lived streams, then the server
    stops with a grace period so in-flight calls finish, and only then `on_closing`
    closes what those calls use (stores, clients, workers).

    Who may call each RPC comes from the services' descriptors (their protos'
    `(vidsynth.v1.access)` options); a service whose RPC declares none does not start.
    """

    services: list[ServiceDescriptor]
    register: Callable[[grpc.aio.Server], None]
    on_started: Callable[[], Awaitable[None]] | None = None
    # Stores and clients are still open here: stop loops and sweepers, end streams.
    on_draining: Callable[[], Awaitable[None]] | None = None
    # Every call has finished (or was cancelled at the end of the grace period).
    on_closing: Callable[[], Awaitable[None]] | None = None

    @property
    def service_names(self) -> list[str]:
        return [service.full_name for service in self.services]

    def access(self) -> dict[str, Access]:
        """Access level of every RPC served; UndeclaredAccessError when one has none."""
        return access_policy(self.services)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("parent.gone", parent_pid=parent_pid)
            stop.set()
            return
        await asyncio.sleep(1.0)


async def start_wiring(
    wiring: ServiceWiring,
    address: str,
    keyring: Keyring,
    limiter: TokenBucketLimiter | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Registers and starts a built service on `address`; SERVING once started.

    Refuses (UndeclaredAccessError) before binding when an RPC declares no access.
    """
    server, port = create_server(
        address, keyring=keyring, access=wiring.access(), limiter=limiter, credentials=credentials
    )
    wiring.register(server)
    health_servicer = add_health_and_reflection(server, wiring.service_names)
    await server.start()
    if wiring.on_started:
        await wiring.on_started()
    await set_serving(health_servicer, wiring.service_names, True)
    return server, port, health_servicer


async def stop_wiring(
    wiring: ServiceWiring, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, grace: float
) -> None:
    """Graceful shutdown in three steps: drain, stop, close.

    1. Drain: every service NOT_SERVING for good (balancers and `up` stop sending), then
       the service's own draining (streams end with UNAVAILABLE, loops stop starting work).
    2. `server.stop(grace)`: no new calls; in-flight ones finish against open resources.
    3. Close the resources those calls used.
    """
    await health_servicer.enter_graceful_shutdown()
    if wiring.on_draining:
        await wiring.on_draining()
    await server.stop(grace)
    if wiring.on_closing:
        await wiring.on_closing()


async def serve(
    name: str, build: Callable[[MeshSettings], Awaitable[ServiceWiring]], settings: MeshSettings | None = None
) -> None:
    settings = settings or get_mesh_settings()
    keyring = keyring_from_settings(settings)  # before anything starts: a bad keys file stops us here
    wiring = await build(settings)
    tls = mesh_tls.current()
    server, port, health_servicer = await start_wiring(
        wiring,
        settings.listen_address(name),
        keyring,
        limiter_from_settings(settings),
        tls.server_credentials() if tls else None,
    )
    keys_watcher = watch_keys_file(keyring, settings)
    freeze_startup_heap()
    log.info("service.serving", port=port, pid=os.getpid(), mesh_tls=bool(tls))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(settings.parent_pid, stop)) if settings.parent_pid else None
    await stop.wait()

    log.info("service.stopping", grace=settings.shutdown_grace_seconds)
    if keys_watcher is not None:
        await keys_watcher.stop()
    await stop_wiring(wiring, server, health_servicer, settings.shutdown_grace_seconds)
    await end_all_children()  # after the calls that ran them; per process, so not in on_closing
    if watcher:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    log.info("service.stopped")


def run_service(name: str, build: Callable[[MeshSettings], Awaitable[ServiceWiring]]) -> None:
    """Entry point of a service process: configure logging and serve until signalled."""
    mesh_tls.configure_process(name)  # unusable certificate settings end the process here
    settings = get_mesh_settings()
    configure_logging(name, settings.log_level)
    configure_tracing(name)
    serve_metrics(name, settings)
    with refuse_bad_keys_file(name):
        uvloop.run(serve(name, build, settings))


@contextlib.contextmanager
def refuse_bad_keys_file(name: str) -> Iterator[None]:
    """A keys file that cannot be used at start stops the process with one clear line."""
    try:
        yield
    except KeysFileError as error:
        log.error("keys_file.invalid", error=str(error))
        sys.exit(f"vidsynth {name}: refusing to start: {error}")
