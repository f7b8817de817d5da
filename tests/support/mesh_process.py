"""`vidsynth up` as a real process tree, for tests that need the whole mesh."""

from __future__ import annotations

import ast
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.identities import mesh_env
from tests.support.ports import free_port, free_port_block

PIDS_LINE = re.compile(r"^\[up\] pids: (\{.*\})$")


class MeshProcess:
    """`vidsynth up` on free ports: the edge on http_port (P) and grpc_port (G), the
    services behind it on G+1..G+5, the gateway on G+6 (gRPC) and G+7 (HTTP)."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None, tls: bool = False) -> None:
        self.data_dir = data_dir
        self.tls = tls
        self.http_port = free_port()
        self.grpc_port = free_port_block()
        self.lines: list[str] = []
        self._lock = threading.Lock()
        env = {**os.environ, **mesh_env(), **(extra_env or {})}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vidsynth.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(self.http_port),
                "--grpc-port",
                str(self.grpc_port),
                *(["--tls"] if tls else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """The one public gRPC address (the edge)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def ca_file(self) -> Path:
        """The development CA `up --tls` made (trust it to reach the edge)."""
        return self.data_dir.resolve() / "tls" / "ca.pem"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else True

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float = 60.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r}; output:\n{self.output()[-4000:]}")

    def wait_up(self, timeout: float = 60.0) -> float:
        """Seconds from start until `up` said every process is SERVING."""
        started = time.monotonic()
        self.wait_for_line("vidsynth is up", timeout)
        return time.monotonic() - started

    def pids(self) -> dict[str, int]:
        with self._lock:
            found = [PIDS_LINE.match(line) for line in self.lines]
        return ast.literal_eval([m for m in found if m][-1].group(1))

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2.0, verify=self.verify).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"/readyz never 200; output:\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        time.sleep(0.1)
    return alive
