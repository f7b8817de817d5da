"""One real `vidsynth up` mesh for the reliability suite (simulated stages, so a job takes
seconds), with the limits the abuse cases probe turned down to testable values."""

from __future__ import annotations

import grpc
import pytest

from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.reliability.faults import FAULT_MESH_ENV
from tests.support.mesh_process import MeshProcess

# Short idle timeouts so slow-drip uploads are cut within the test's patience.
UPLOAD_IDLE_SECONDS = 2.0
MAX_CONCURRENT_UPLOADS = 3
MAX_CONCURRENT_UPLOADS_PER_USER = 2
WEBHOOK_HOST = "hooks.example.com"
RELIABILITY_MESH_ENV = {
    **FAULT_MESH_ENV,
    "VIDSYNTH_VALIDATOR_UPLOAD_IDLE_SECONDS": str(UPLOAD_IDLE_SECONDS),
    "VIDSYNTH_GATEWAY_UPLOAD_IDLE_SECONDS": str(UPLOAD_IDLE_SECONDS),
    "VIDSYNTH_VALIDATOR_MAX_CONCURRENT_UPLOADS": str(MAX_CONCURRENT_UPLOADS),
    "VIDSYNTH_VALIDATOR_MAX_CONCURRENT_UPLOADS_PER_USER": str(MAX_CONCURRENT_UPLOADS_PER_USER),
    "VIDSYNTH_STAGE_RUNNER_WEBHOOK_ALLOWED_HOSTS": WEBHOOK_HOST,
    "VIDSYNTH_STAGE_RUNNER_WEBHOOK_SECRET": "reliability-webhook-secret",
}


@pytest.fixture(scope="session")
def mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("reliability") / "var", extra_env=RELIABILITY_MESH_ENV)
    mesh.wait_up(90)
    yield mesh
    mesh.stop()


@pytest.fixture
def ready_mesh(mesh):
    """The shared mesh, once every service answers again (a fault case may just have run)."""
    mesh.wait_ready(90)
    return mesh


@pytest.fixture
async def channels(ready_mesh):
    """A gRPC channel straight to each service of the mesh (behind the edge), by name."""
    opened = {
        name: grpc.aio.insecure_channel(f"127.0.0.1:{ready_mesh.grpc_port + offset}")
        for name, offset in SERVICE_PORT_OFFSETS.items()
    }
    yield opened
    for channel in opened.values():
        await channel.close()
