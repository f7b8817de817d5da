from __future__ import annotations

import os

# Before anything imports grpc (see services/__init__.py): services run in-process here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest

from libs.common.settings import MeshSettings
from tests.support.identities import ADMIN_USERS, API_KEYS_SPEC, MESH_TOKEN
from tests.support.ports import free_port, free_port_block
from tests.support.redis_server import RedisServer
from tests.support.services import InProcessMesh


@pytest.fixture
def mesh_settings(tmp_path) -> MeshSettings:
    """Settings for one test's mesh: its own data dir, ports and test identities."""
    return MeshSettings(
        data_dir=tmp_path / "var",
        grpc_port=free_port_block(),
        http_port=free_port(),
        api_keys=API_KEYS_SPEC,
        admin_users=ADMIN_USERS,
        mesh_token=MESH_TOKEN,
    )


@pytest.fixture
async def in_process_mesh(mesh_settings):
    """Start services in this test's event loop: `await in_process_mesh.start("session", build)`."""
    mesh = InProcessMesh(mesh_settings)
    yield mesh
    await mesh.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the whole run; tests that need isolation call `.flush()`
    or use their own key prefixes."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
