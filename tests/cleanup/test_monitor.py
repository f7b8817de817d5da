"""The resource monitor on the real machine: levels follow configured thresholds."""

from __future__ import annotations

import os

import grpc
import pytest

from services.cleanup.monitor import Level, ResourceMonitor, Thresholds
from tests.cleanup.conftest import cleanup_settings, expect_error
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.v1 import cleanup_pb2


def test_thresholds_bound_each_level():
    limits = Thresholds(warning_percent=70, critical_percent=90)
    assert limits.level_for(69.9) is Level.OK
    assert limits.level_for(70) is Level.WARNING
    assert limits.level_for(89.9) is Level.WARNING
    assert limits.level_for(90) is Level.CRITICAL


@pytest.mark.parametrize("memory", ["ok", "warning", "critical"])
@pytest.mark.parametrize("disk", ["ok", "warning", "critical"])
def test_levels_follow_thresholds_around_real_usage(tmp_path, memory, disk):
    monitor = ResourceMonitor(tmp_path / "var", cleanup_settings(memory=memory, disk=disk))
    snapshot = monitor.sample()
    assert snapshot.memory.level is Level[memory.upper()]
    assert snapshot.disk.level is Level[disk.upper()]
    assert snapshot.level is max(Level[memory.upper()], Level[disk.upper()])
    assert snapshot.immediate_actions_needed is (snapshot.level is Level.CRITICAL)
    assert bool(snapshot.actions) is (snapshot.level is not Level.OK)


def test_figures_are_real(tmp_path):
    snapshot = ResourceMonitor(tmp_path, cleanup_settings()).sample()
    assert 0 < snapshot.memory.used_bytes < snapshot.memory.total_bytes
    assert 0 < snapshot.disk.used_bytes < snapshot.disk.total_bytes
    assert snapshot.disk_free_bytes > 0
    assert snapshot.open_files > 0
    mine = [p for p in snapshot.processes if p.pid == os.getpid()]
    assert mine and mine[0].rss_bytes > 1_000_000


def test_processes_of_a_supervisor_include_its_children(tmp_path):
    # This test process plays the supervisor: its own pid is the root.
    snapshot = ResourceMonitor(tmp_path, cleanup_settings(), root_pid=os.getpid()).sample()
    assert os.getpid() in {p.pid for p in snapshot.processes}


async def test_get_resource_health_over_grpc_critical(start_cleanup):
    stub = await start_cleanup(cleanup_settings(memory="critical", disk="warning"))
    health = await stub.GetResourceHealth(
        cleanup_pb2.GetResourceHealthRequest(), metadata=user_metadata("root")
    )
    assert health.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL
    assert health.memory.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL
    assert health.disk.level == cleanup_pb2.HEALTH_LEVEL_WARNING
    assert health.immediate_actions_needed
    assert any("Memory critical" in a for a in health.actions)
    assert health.memory.total_bytes > 0 and health.disk.total_bytes > 0
    assert health.processes and health.open_files > 0
    assert health.observe_time.seconds > 0


async def test_get_resource_health_over_grpc_ok(start_cleanup):
    stub = await start_cleanup(cleanup_settings())
    health = await stub.GetResourceHealth(
        cleanup_pb2.GetResourceHealthRequest(), metadata=user_metadata("bob")
    )
    assert health.level == cleanup_pb2.HEALTH_LEVEL_OK
    assert not health.immediate_actions_needed
    assert list(health.actions) == []


@pytest.mark.parametrize(
    "metadata",
    [user_metadata("root"), mesh_metadata("system"), mesh_metadata("alice")],
    ids=["admin-key", "mesh-as-system", "mesh-for-a-user"],
)
async def test_admins_and_the_mesh_see_the_hosts_figures(start_cleanup, metadata):
    stub = await start_cleanup(cleanup_settings())
    health = await stub.GetResourceHealth(cleanup_pb2.GetResourceHealthRequest(), metadata=metadata)
    assert health.memory.total_bytes > health.memory.used_bytes > 0
    assert health.disk.total_bytes > health.disk.used_bytes > 0
    assert health.open_files > 0
    assert health.processes and all(p.pid > 0 and p.rss_bytes > 0 for p in health.processes)


async def test_users_see_levels_and_percentages_but_not_the_host(start_cleanup):
    """Issue 15.5: a user's key gets no PIDs, RSS, open files or byte totals of the host."""
    stub = await start_cleanup(cleanup_settings(memory="critical", disk="warning"))
    health = await stub.GetResourceHealth(
        cleanup_pb2.GetResourceHealthRequest(), metadata=user_metadata("alice")
    )
    assert health.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL
    assert health.memory.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL
    assert health.disk.level == cleanup_pb2.HEALTH_LEVEL_WARNING
    assert 0 < health.memory.used_percent <= 100 and 0 < health.disk.used_percent <= 100
    assert any("Memory critical" in a for a in health.actions)
    assert list(health.processes) == []
    assert health.open_files == 0
    for usage in (health.memory, health.disk):
        assert usage.used_bytes == 0 and usage.total_bytes == 0


async def test_get_resource_health_needs_a_key(start_cleanup):
    stub = await start_cleanup()
    await expect_error(
        stub.GetResourceHealth(cleanup_pb2.GetResourceHealthRequest()),
        "UNAUTHENTICATED",
        grpc.StatusCode.UNAUTHENTICATED,
    )
