"""One scaled-out mesh for the module: 2 gateways, 2 progress and 2 stage_runner replicas,
1 session and 1 validator (with a real clamd), one redis-server, one data dir; every
process exports its spans to one in-test OTLP receiver."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.scale.cluster import Cluster, Replica
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.redis_server import RedisServer
from tests.validator.conftest import start_clamd

# Long enough that a runner is killed mid-job, short enough to keep the test quick.
SIMULATED_STAGE_SECONDS = "1.0"
RECLAIM_IDLE_SECONDS = "2.0"
HEARTBEAT_SECONDS = "0.3"


@dataclass
class ScaledMesh:
    cluster: Cluster
    redis: RedisServer
    gateways: tuple[Replica, Replica]
    progress: tuple[Replica, Replica]
    runners: tuple[Replica, Replica]
    traces: OtlpReceiver

    def gateway_for_runner(self, runner: Replica) -> Replica:
        return self.gateways[self.runners.index(runner)]


@pytest.fixture(scope="module")
def scaled_mesh(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    redis = RedisServer(base / "redis")
    clamd, clamd_address = start_clamd(base / "clamd", stream_max_bytes=64 * 1024 * 1024)
    traces = OtlpReceiver().__enter__()
    cluster = Cluster.create(
        base / "mesh",
        redis.url,
        **traces.env(),
        VIDSYNTH_PROCESSING_MODE="simulation",
        VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS=SIMULATED_STAGE_SECONDS,
        VIDSYNTH_STAGE_RUNNER_RECLAIM_IDLE_SECONDS=RECLAIM_IDLE_SECONDS,
        VIDSYNTH_STAGE_RUNNER_HEARTBEAT_SECONDS=HEARTBEAT_SECONDS,
        VIDSYNTH_VALIDATOR_CLAMD_ADDRESS=clamd_address,
    )
    try:
        cluster.start("session", "session")
        cluster.start("validator", "validator")
        progress = (cluster.start("progress", "progress-a"), cluster.start("progress", "progress-b"))
        runners = tuple(
            cluster.start("stage_runner", f"runner-{side}", {"progress": p.address})
            for side, p in zip("ab", progress, strict=True)
        )
        gateways = tuple(
            cluster.start("gateway", f"gateway-{side}", {"progress": p.address, "stage_runner": r.address})
            for side, p, r in zip("ab", progress, runners, strict=True)
        )
        cluster.wait_ready()
        yield ScaledMesh(cluster, redis, gateways, progress, runners, traces)
    finally:
        cluster.stop()
        traces.__exit__(None, None, None)
        redis.stop()
        clamd.kill()
        clamd.wait(10)
