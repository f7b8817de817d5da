"""The scheduler on its own clock: due tasks run by themselves, critical disk starts
the emergency cleanup, and the emergency stops once enough space is free."""

from __future__ import annotations

import asyncio
import shutil
import time

from libs.common.clients import MeshClients
from libs.common.metrics import MetricsSettings, serve_metrics
from services.cleanup.emergency import emergency_cleanup
from services.cleanup.monitor import ResourceMonitor
from services.cleanup.state_file import StateFile
from services.cleanup.tasks import CleanupContext, Outcome
from tests.cleanup.conftest import DAY, StaticSessionStatus, cleanup_settings, write_file
from tests.support.identities import user_metadata
from tests.support.ports import free_port
from vidsynth.v1 import cleanup_pb2


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_due_tasks_run_on_their_interval(start_cleanup, mesh_settings):
    first = write_file(mesh_settings.data_dir / "quarantine" / "qua_a", 100, age_seconds=40 * DAY)
    stub = await start_cleanup(cleanup_settings(cleanup_quarantine_interval_seconds=0.2))
    await wait_for(lambda: not first.exists())
    second = write_file(mesh_settings.data_dir / "quarantine" / "qua_b", 100, age_seconds=40 * DAY)
    await wait_for(lambda: not second.exists())  # it keeps running, not just once
    listing = await stub.ListCleanupTasks(
        cleanup_pb2.ListCleanupTasksRequest(), metadata=user_metadata("root")
    )
    task = next(t for t in listing.tasks if t.name == "quarantine")
    assert (
        task.HasField("last_result")
        and task.next_run_time.ToNanoseconds() > task.last_run_time.ToNanoseconds()
    )
    untouched = next(t for t in listing.tasks if t.name == "orphan_dirs")
    assert not untouched.HasField("last_run_time")


async def test_critical_disk_starts_the_emergency_by_itself(start_cleanup, mesh_settings):
    spool = write_file(mesh_settings.data_dir / "tmp" / "upload.part", 100, age_seconds=3600)
    fresh = write_file(mesh_settings.data_dir / "tmp" / "upload-now.part", 100)
    await start_cleanup(
        cleanup_settings(disk="critical", cleanup_auto_emergency=True, cleanup_monitor_interval_seconds=0.1)
    )
    await wait_for(lambda: not spool.exists())
    assert fresh.exists()  # younger than the emergency minimum age: may be an upload in flight


async def test_emergency_stops_once_the_target_is_free(mesh_settings):
    clients = MeshClients(mesh_settings)
    settings = cleanup_settings(disk="critical")
    ctx = CleanupContext(settings, mesh_settings.data_dir, clients, StaticSessionStatus())
    monitor = ResourceMonitor(mesh_settings.data_dir, settings)
    spool = write_file(mesh_settings.data_dir / "tmp" / "upload.part", 100, age_seconds=3600)
    try:
        enough = await emergency_cleanup(ctx, monitor, target_free_bytes=1)
        assert enough.outcomes == [] and spool.exists()
        beyond = shutil.disk_usage(mesh_settings.data_dir).total + 1
        everything = await emergency_cleanup(ctx, monitor, target_free_bytes=beyond)
        assert [o.task_name for o in everything.outcomes] == [
            "emergency_temp_and_work",
            "emergency_expired_sessions",
            "emergency_oldest_outputs",
        ]
        assert not spool.exists()
        assert everything.bytes_freed == 100
    finally:
        await clients.close()


def test_metrics_endpoint_can_be_off_and_is_never_fatal(mesh_settings):
    assert serve_metrics("cleanup", mesh_settings, MetricsSettings(metrics_port=0)) is None
    port = free_port()
    first = serve_metrics("session", mesh_settings, MetricsSettings(metrics_port=port))
    try:
        assert first is not None
        busy = serve_metrics("session", mesh_settings, MetricsSettings(metrics_port=port))
        assert busy is None  # logged, not raised
    finally:
        first.shutdown()
        first.server_close()


def test_metrics_ports_follow_the_grpc_ports(mesh_settings):
    default = MetricsSettings(metrics_port=-1)
    # Each service's metrics port is its gRPC port + 100: session G+1 -> G+101, cleanup G+5 -> G+105.
    assert default.port_of("session", mesh_settings) == mesh_settings.grpc_port + 101
    assert default.port_of("cleanup", mesh_settings) == mesh_settings.grpc_port + 105
    moved = mesh_settings.model_copy(update={"cleanup_addr": "cleanup.internal:7000"})
    assert (
        default.url_of("cleanup", moved) == f"http://cleanup.internal:{mesh_settings.grpc_port + 105}/metrics"
    )
    # An explicit first port: session on it, cleanup four above.
    assert MetricsSettings(metrics_port=9100).port_of("session", mesh_settings) == 9100
    assert MetricsSettings(metrics_port=9100).port_of("cleanup", mesh_settings) == 9104
    assert MetricsSettings(metrics_port=0).url_of("cleanup", mesh_settings) == ""


def test_state_file_round_trip_and_garbage(tmp_path):
    state = StateFile(tmp_path)
    assert state.load() == {}
    outcome = Outcome("quarantine", items_removed=2, bytes_freed=10, removed=["quarantine/a", "quarantine/b"])
    outcome.ended_at = outcome.started_at
    state.save({"quarantine": outcome})
    assert state.load() == {"quarantine": outcome}
    state.path.write_text("{not json")
    assert state.load() == {}  # logged; the scheduler starts afresh
