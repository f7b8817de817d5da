"""A real redis-server on an ephemeral loopback port, owned by one test (or module)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.ports import free_port

START_TIMEOUT_SECONDS = 15.0


class RedisServer:
    """`durable` keeps an append-only file fsynced on every write, as a production Redis
    behind vidsynth would run, so `start()` again after a kill finds the data."""

    def __init__(self, work_dir: Path, durable: bool = False) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.durable = durable
        work_dir.mkdir(parents=True, exist_ok=True)
        self.process = self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> subprocess.Popen:
        """Starts redis-server on this port and data dir and waits until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/setup.sh")
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        )
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence]
        argv += ["--dir", str(self.work_dir), "--protected-mode", "yes"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self.process
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
