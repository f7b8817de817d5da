"""Two stage_runner replicas in this test's event loop, sharing one real Redis with one
session and one progress service: a RunnerMesh through each."""

from __future__ import annotations

from contextlib import asynccontextmanager

import services.progress.server
import services.session.server
import services.stage_runner.server
from libs.common.grpc_server import keyring_from_settings, start_wiring, stop_wiring
from services.stage_runner.media.config import MediaSettings
from tests.stage_runner.conftest import RunnerMesh, make_media, runner_settings


@asynccontextmanager
async def two_replicas(in_process_mesh, redis_server, tmp_path, **overrides):
    """(mesh through replica A, mesh through replica B); `overrides`: StageRunnerSettings."""
    redis_server.flush()
    make_media(tmp_path)
    in_process_mesh.settings = in_process_mesh.settings.model_copy(
        update={"redis_url": redis_server.url, "processing_mode": "simulation"}
    )
    session = await in_process_mesh.start("session", services.session.server.build)
    progress = await in_process_mesh.start("progress", services.progress.server.build)
    settings = runner_settings(**overrides)

    async def build(mesh_settings):
        return await services.stage_runner.server.build(
            mesh_settings, settings, MediaSettings(media_gemini_api_key="")
        )

    first = await in_process_mesh.start("stage_runner", build)
    wiring = await build(in_process_mesh.settings)
    server, port, health = await start_wiring(
        wiring, "127.0.0.1:0", keyring_from_settings(in_process_mesh.settings)
    )
    meshes = [
        RunnerMesh(in_process_mesh.settings, session.address, progress.address, address, tmp_path, built)
        for address, built in ((first.address, first.wiring), (f"127.0.0.1:{port}", wiring))
    ]
    try:
        yield meshes
    finally:
        for mesh in meshes:
            await mesh.close()
        await stop_wiring(wiring, server, health, grace=0)
