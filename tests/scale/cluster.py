"""A scaled-out mesh on loopback as real processes (`python -m services.<name>`), all on
one Redis and one data dir: any number of replicas per service, each on its own port.

Used by tests/scale and bench/scale.py. Each replica is told where its peers are with the
VIDSYNTH_*_ADDR overrides, exactly as a container orchestrator would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from libs.common.healthcheck import is_serving
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import mesh_env
from tests.support.ports import free_port, free_port_block

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60.0


@dataclass
class Replica:
    service: str
    name: str
    process: subprocess.Popen
    log_path: Path
    address: str = ""  # gRPC host:port (gateways: the HTTP base URL in `url`)
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Cluster:
    base: Path
    env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, redis_url: str, **env: str) -> Cluster:
        """`env`: extra VIDSYNTH_* settings every process gets (e.g. the processing mode)."""
        base.mkdir(parents=True, exist_ok=True)
        common = {
            **os.environ,
            **mesh_env(),
            "VIDSYNTH_DATA_DIR": str(base / "data"),
            "VIDSYNTH_REDIS_URL": redis_url,
            "VIDSYNTH_GRPC_HOST": "127.0.0.1",
            # No cleanup service in these meshes: a refused connection (the gate fails open).
            "VIDSYNTH_CLEANUP_ADDR": f"127.0.0.1:{free_port()}",
            **env,
        }
        return cls(base, common)

    def start(self, service: str, name: str, peers: dict[str, str] | None = None) -> Replica:
        """Starts one replica of `service`; `peers` maps service -> host:port it should call
        (the first replica started of each service by default)."""
        env = dict(self.env)
        for peer_service, address in {**self._default_peers(), **(peers or {})}.items():
            env[f"VIDSYNTH_{peer_service.upper()}_ADDR"] = address
        log_path = self.base / f"{name}.log"
        replica_url = address = ""
        if service == "gateway":
            port = free_port()
            env["VIDSYNTH_HTTP_HOST"], env["VIDSYNTH_HTTP_PORT"] = "127.0.0.1", str(port)
            # Its gRPC server (reflection, health) listens on VIDSYNTH_GRPC_PORT + 6: a block per replica.
            env["VIDSYNTH_GRPC_PORT"] = str(free_port_block())
            replica_url = f"http://127.0.0.1:{port}"
        else:
            block = free_port_block()
            env["VIDSYNTH_GRPC_PORT"] = str(block)
            address = f"127.0.0.1:{block + SERVICE_PORT_OFFSETS[service]}"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        replica = Replica(service, name, process, log_path, address, replica_url)
        self.replicas.append(replica)
        return replica

    def _default_peers(self) -> dict[str, str]:
        peers: dict[str, str] = {}
        for replica in self.replicas:
            if replica.address and replica.service not in peers:
                peers[replica.service] = replica.address
        return peers

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            while not self._ready(replica):
                if replica.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{replica.name} did not start:\n{replica.log()}")
                time.sleep(0.1)

    @staticmethod
    def _ready(replica: Replica) -> bool:
        if replica.url:
            try:
                return httpx.get(replica.url + "/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False
        return is_serving(replica.address, timeout=1.0)

    def by_pid(self, pid: int) -> Replica:
        return next(r for r in self.replicas if r.pid == pid)

    def kill(self, replica: Replica) -> None:
        """SIGKILL: no shutdown hook runs, as when a machine dies."""
        os.killpg(replica.pid, signal.SIGKILL)
        replica.process.wait(10)

    def stop(self) -> None:
        for replica in reversed(self.replicas):
            if replica.process.poll() is None:
                os.killpg(replica.pid, signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(replica.pid, signal.SIGKILL)
                replica.process.wait(5)
