"""Wiring of the gateway process: uvicorn serving the FastAPI app, and a small gRPC
server for reflection and health of the public API (services/gateway/public_grpc.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator

import grpc
import pydantic
import structlog
import uvicorn
import uvloop
from fastapi import FastAPI
from grpc_health.v1 import health_pb2_grpc

from libs.common import mesh_tls
from libs.common.allocator import keep_large_buffers_in_heap
from libs.common.clients import MeshClients
from libs.common.grpc_server import refuse_bad_keys_file, watch_keys_file
from libs.common.heap import freeze_startup_heap
from libs.common.log import configure_logging
from libs.common.settings import PUBLIC_SERVICES, MeshSettings, VidsynthSettings, get_mesh_settings
from libs.common.tracing import configure_tracing
from services.gateway.app import create_app
from services.gateway.http_protocol import BoundedHttpToolsProtocol
from services.gateway.public_grpc import PublicHealth, add_reflection
from services.gateway.routes_ui import static_files
from services.gateway.state import gateway_state

log = structlog.get_logger("vidsynth.gateway")
ENV_PREFIX = VidsynthSettings.model_config["env_prefix"]


async def _exit_when_parent_gone(server: uvicorn.Server, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:
            log.warning("parent.gone", parent_pid=parent_pid)
            server.should_exit = True
            return
        await asyncio.sleep(1.0)


def uvicorn_config(app: FastAPI, settings: MeshSettings) -> uvicorn.Config:
    trusted = gateway_state(app).gateway_settings.gateway_trusted_proxies.strip()
    tls = mesh_tls.current()
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.gateway_listen_port,
        log_config=None,
        access_log=False,
        # Only the edge's X-Forwarded-For is believed: per-address limits see real clients.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        ws_max_size=1 << 20,
        http=BoundedHttpToolsProtocol,
        # Mesh TLS: only callers with a certificate from the mesh's CA (the edge) get in.
        **(tls.uvicorn_options() if tls else {}),
    )


async def start_public_grpc(settings: MeshSettings, clients: MeshClients) -> grpc.aio.Server:
    """Reflection and health of the public API, where the edge sends those paths."""
    server = grpc.aio.server()
    add_reflection(server)
    health = PublicHealth({name: clients.channel(name) for name in PUBLIC_SERVICES})
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    tls = mesh_tls.current()
    address = settings.gateway_grpc_listen_address
    port = (
        server.add_secure_port(address, tls.server_credentials())
        if tls
        else server.add_insecure_port(address)
    )
    if port == 0:
        raise OSError(f"cannot bind {settings.gateway_grpc_listen_address}")
    await server.start()
    return server


async def serve(settings: MeshSettings, app: FastAPI) -> None:
    server = uvicorn.Server(uvicorn_config(app, settings))
    clients = MeshClients(settings)
    public_grpc = await start_public_grpc(settings, clients)
    static_files()  # read the web page's files now, not on the event loop at the first request
    freeze_startup_heap()
    watcher = (
        asyncio.create_task(_exit_when_parent_gone(server, settings.parent_pid))
        if settings.parent_pid
        else None
    )
    log.info(
        "gateway.starting",
        host=settings.http_host,
        port=settings.gateway_listen_port,
        grpc=settings.gateway_grpc_listen_address,
    )
    keys_watcher = watch_keys_file(gateway_state(app).keyring, settings)
    try:
        await server.serve()
    finally:
        if keys_watcher is not None:
            await keys_watcher.stop()
        await public_grpc.stop(settings.shutdown_grace_seconds)
        await clients.close()
        if watcher:
            watcher.cancel()


@contextlib.contextmanager
def refuse_bad_settings() -> Iterator[None]:
    """A setting that does not validate stops the gateway before it serves, with one line
    naming the variable and what is wrong with it (exit status 1)."""
    try:
        yield
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in error.errors()
        )
        log.error("settings.invalid", error=problems)
        sys.exit(f"vidsynth gateway: refusing to start: {problems}")


def main() -> None:
    mesh_tls.configure_process("gateway")  # unusable certificate settings end the process here
    with refuse_bad_settings(), refuse_bad_keys_file("gateway"):
        settings = get_mesh_settings()
        configure_logging("gateway", settings.log_level)
        configure_tracing("gateway")
        # Every setting the gateway uses is read and checked here, before anything listens.
        app = create_app(settings)
    keep_large_buffers_in_heap()  # uploads are relayed through MB-sized buffers
    with refuse_bad_keys_file("gateway"):
        uvloop.run(serve(settings, app))
