"""Wiring of the gateway process: uvicorn serving the FastAPI app."""

from __future__ import annotations

import asyncio
import os

import structlog
import uvicorn
import uvloop

from libs.common.log import configure_logging
from libs.common.settings import MeshSettings, get_mesh_settings
from services.gateway.app import create_app

log = structlog.get_logger("vidsynth.gateway")
# Largest request line plus headers. uvicorn's httptools parser buffers headers without
# any bound (an 8 MB header was accepted); h11 refuses a head past this size.
MAX_REQUEST_HEAD_BYTES = 64 * 1024


async def _exit_when_parent_gone(server: uvicorn.Server, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:
            log.warning("parent.gone", parent_pid=parent_pid)
            server.should_exit = True
            return
        await asyncio.sleep(1.0)


async def serve(settings: MeshSettings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        ws_max_size=1 << 20,
        http="h11",
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )
    server = uvicorn.Server(config)
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
    uvloop.run(serve(settings))
