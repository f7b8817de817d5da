"""Wiring of the gateway process: uvicorn serving the FastAPI app."""

from __future__ import annotations

import asyncio
import os

import structlog
import uvicorn
import uvloop
from fastapi import FastAPI

from libs.common.allocator import keep_large_buffers_in_heap
from libs.common.heap import freeze_startup_heap
from libs.common.log import configure_logging
from libs.common.settings import MeshSettings, get_mesh_settings
from libs.common.tracing import configure_tracing
from services.gateway.app import create_app
from services.gateway.http_protocol import BoundedHttpToolsProtocol
from services.gateway.routes_ui import static_files

log = structlog.get_logger("vidsynth.gateway")


async def _exit_when_parent_gone(server: uvicorn.Server, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:
            log.warning("parent.gone", parent_pid=parent_pid)
            server.should_exit = True
            return
        await asyncio.sleep(1.0)


def uvicorn_config(app: FastAPI, settings: MeshSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        ws_max_size=1 << 20,
        http=BoundedHttpToolsProtocol,
    )


async def serve(settings: MeshSettings) -> None:
    config = uvicorn_config(create_app(settings), settings)
    server = uvicorn.Server(config)
    static_files()  # read the web page's files now, not on the event loop at the first request
    freeze_startup_heap()
    watcher = (
        asyncio.create_task(_exit_when_parent_gone(server, settings.parent_pid))
        if settings.parent_pid
        else None
    )
    log.info("gateway.starting", host=settings.http_host, port=settings.http_port)
    await server.serve()
    if watcher:
        watcher.cancel()


def main() -> None:
    settings = get_mesh_settings()
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")
    keep_large_buffers_in_heap()  # uploads are relayed through MB-sized buffers
    uvloop.run(serve(settings))
