"""Redis as a fault target: a redis-server with an append-only file (as a production
Redis behind vidsynth would run), killed or stopped under a Redis-backed `vidsynth up`,
and started again on the same port and data by this harness (nothing supervises it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.reliability.faults import FAULT_MESH_ENV, FaultResult, run_fault_case
from tests.support.mesh_process import MeshProcess
from tests.support.redis_server import RedisServer

RESTART_AFTER_SECONDS = 1.0


class DurableRedis(RedisServer):
    """A durable redis-server that this harness, not `vidsynth up`, starts again after a fault."""

    def __init__(self, work_dir: Path) -> None:
        super().__init__(work_dir, durable=True)

    async def restart(self, killed_pid: int) -> bool:
        await asyncio.to_thread(self.process.wait, 10)
        await asyncio.sleep(RESTART_AFTER_SECONDS)
        await asyncio.to_thread(self.start)
        return True


def redis_mesh_env(redis_url: str) -> dict[str, str]:
    return {**FAULT_MESH_ENV, "VIDSYNTH_REDIS_URL": redis_url}


async def run_redis_fault_case(
    mesh: MeshProcess, server: DurableRedis, sig: str, workdir: Path
) -> FaultResult:
    return await run_fault_case(
        mesh, "redis", sig, workdir, pid_of=lambda: server.process.pid, restart=server.restart
    )
