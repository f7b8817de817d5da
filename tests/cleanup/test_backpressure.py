"""ResourceGate against a real CleanupService whose thresholds put the machine's real
usage at the level under test."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.common.backpressure import ResourceGate
from libs.common.clients import MeshClients
from libs.common.errors import VidsynthError
from libs.common.identity import Identity, current_identity
from libs.common.interceptors import GRPC_REQUESTS
from libs.common.rpc_status import to_status_proto
from tests.cleanup.conftest import cleanup_settings
from vidsynth.v1 import cleanup_pb2_grpc


@pytest.fixture
async def gate_for(start_cleanup, in_process_mesh):
    opened: list[MeshClients] = []

    async def make(**levels) -> ResourceGate:
        await start_cleanup(cleanup_settings(**levels))
        clients = MeshClients(in_process_mesh.settings)
        opened.append(clients)
        return ResourceGate(clients)

    yield make
    for clients in opened:
        await clients.close()


async def test_critical_disk_refuses_uploads_and_jobs(gate_for):
    gate = await gate_for(disk="critical")
    with pytest.raises(VidsynthError) as upload:
        await gate.check_upload()
    assert upload.value.code == "INSUFFICIENT_STORAGE"
    assert upload.value.retry_after_seconds == 30.0
    with pytest.raises(VidsynthError) as job:
        await gate.check_new_job()
    assert job.value.code == "INSUFFICIENT_STORAGE"


async def test_critical_memory_refuses_jobs_with_retry_info(gate_for):
    gate = await gate_for(memory="critical", disk="warning")
    await gate.check_upload()  # memory does not stop uploads
    with pytest.raises(VidsynthError) as job:
        await gate.check_new_job()
    assert job.value.code == "INSUFFICIENT_MEMORY"
    # On the wire the refusal carries google.rpc.RetryInfo.
    retry = [d for d in to_status_proto(job.value).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.seconds == 30


async def test_the_retry_delay_is_the_cleanup_services_setting(start_cleanup, in_process_mesh):
    await start_cleanup(cleanup_settings(disk="critical", cleanup_retry_after_seconds=7.5))
    clients = MeshClients(in_process_mesh.settings)
    try:
        gate = ResourceGate(clients)  # its own default (30 s) is not what it answers
        with pytest.raises(VidsynthError) as upload:
            await gate.check_upload()
        with pytest.raises(VidsynthError) as job:
            await gate.check_new_job()
    finally:
        await clients.close()
    assert upload.value.code == job.value.code == "INSUFFICIENT_STORAGE"
    assert upload.value.retry_after_seconds == job.value.retry_after_seconds == 7.5


async def test_warning_levels_let_everything_through(gate_for):
    gate = await gate_for(memory="warning", disk="warning")
    await gate.check_upload()
    await gate.check_new_job()


async def test_answers_are_cached_briefly(gate_for):
    gate = await gate_for()
    counter = GRPC_REQUESTS.labels("CleanupService", "GetResourceHealth", "OK")
    before = counter._value.get()
    token = current_identity.set(Identity("alice", via_mesh=True))
    try:
        for _ in range(20):
            await gate.check_upload()
            await gate.check_new_job()
    finally:
        current_identity.reset(token)
    assert counter._value.get() - before == 1


async def test_fails_open_when_cleanup_is_unreachable(mesh_settings):
    # Nothing listens on the mesh's cleanup port in this test.
    clients = MeshClients(mesh_settings)
    try:
        gate = ResourceGate(clients)
        await gate.check_upload()
        await gate.check_new_job()
        assert await gate.health() is None
    finally:
        await clients.close()


class UnavailableCleanup(cleanup_pb2_grpc.CleanupServiceServicer):
    """A cleanup service that is restarting: every probe answers UNAVAILABLE."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetResourceHealth(self, request, context):
        self.calls += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")


async def test_an_unavailable_cleanup_service_is_asked_once_not_retried(mesh_settings):
    """The gate fails open at once; transport retries would hold the upload or job back."""
    cleanup = UnavailableCleanup()
    server = grpc.aio.server()
    cleanup_pb2_grpc.add_CleanupServiceServicer_to_server(cleanup, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    clients = MeshClients(mesh_settings.model_copy(update={"cleanup_addr": f"127.0.0.1:{port}"}))
    try:
        gate = ResourceGate(clients)
        await gate.check_upload()
        assert await gate.health() is None
        assert cleanup.calls == 1
    finally:
        await clients.close()
        await server.stop(0)
