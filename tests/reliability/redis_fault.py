"""Redis as a fault target: a redis-server with an append-only file (as a production
Redis behind vidsynth would run), killed or stopped under a Redis-backed `vidsynth up`,
and started again on the same port and data by this harness (nothing supervises it)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.reliability.faults import FAULT_MESH_ENV, FaultResult, run_fault_case
from tests.support.mesh_process import MeshProcess
from tests.support.ports import free_port

RESTART_AFTER_SECONDS = 1.0


class DurableRedis:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.process = self._start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> subprocess.Popen:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/setup.sh")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "always", "--dir", str(self.work_dir), "--protected-mode", "yes"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return process
            except redis.RedisError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("redis-server did not start")

    async def restart(self, killed_pid: int) -> bool:
        await asyncio.to_thread(self.process.wait, 10)
        await asyncio.sleep(RESTART_AFTER_SECONDS)
        self.process = await asyncio.to_thread(self._start)
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def redis_mesh_env(redis_url: str) -> dict[str, str]:
    return {**FAULT_MESH_ENV, "VIDSYNTH_REDIS_URL": redis_url}


async def run_redis_fault_case(
    mesh: MeshProcess, server: DurableRedis, sig: str, workdir: Path
) -> FaultResult:
    return await run_fault_case(
        mesh, "redis", sig, workdir, pid_of=lambda: server.process.pid, restart=server.restart
    )
