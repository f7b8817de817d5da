"""Fixtures of the cleanup tests: real directories with aged files, a cleanup service
started in-process with thresholds chosen around the machine's real usage."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest

from libs.common import ids
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from services.cleanup.config import CleanupSettings
from services.cleanup.server import build
from services.cleanup.sessions import SessionStatus
from vidsynth.v1 import cleanup_pb2_grpc

DAY = 86400.0


@dataclass
class StaticSessionStatus:
    """A session-status source answering from a table (stands in for a SessionService
    that can see every owner's sessions; unknown ids are UNKNOWN, as in production)."""

    table: dict[str, SessionStatus] = field(default_factory=dict)

    async def status(self, session_id: str) -> SessionStatus:
        return self.table.get(session_id, SessionStatus.UNKNOWN)


def write_file(path: Path, size: int, age_seconds: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if age_seconds:
        stamp = time.time() - age_seconds
        os.utime(path, (stamp, stamp))
    return path


def age_tree(path: Path, age_seconds: float) -> None:
    """Backdates a directory and everything inside it."""
    stamp = time.time() - age_seconds
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (stamp, stamp))
    os.utime(path, (stamp, stamp))


def make_session(sessions_dir: Path, age_seconds: float, size: int = 4096) -> tuple[str, Path]:
    """A session dir with one old file in each of assets, work and output."""
    session_id = ids.new_id("session")
    paths = session_paths(sessions_dir, session_id)
    paths.create()
    write_file(paths.assets / "face.png", size, age_seconds)
    write_file(paths.work / "voice.wav", size, age_seconds)
    write_file(paths.output / "video.mp4", size, age_seconds)
    return session_id, paths.root


def current_memory_percent() -> float:
    return psutil.virtual_memory().percent


def current_disk_percent(path: Path) -> float:
    while not path.exists():
        path = path.parent
    return psutil.disk_usage(str(path)).percent


def thresholds(level: str) -> dict[str, float]:
    """Thresholds that put the real current usage at `level` ("ok", "warning", "critical")."""
    if level == "critical":
        return {"warning_percent": 0.0, "critical_percent": 0.0}
    if level == "warning":
        return {"warning_percent": 0.0, "critical_percent": 100.0}
    return {"warning_percent": 100.0, "critical_percent": 100.0}


def cleanup_settings(memory: str = "ok", disk: str = "ok", **overrides) -> CleanupSettings:
    mem, dsk = thresholds(memory), thresholds(disk)
    values = {
        "cleanup_memory_warning_percent": mem["warning_percent"],
        "cleanup_memory_critical_percent": mem["critical_percent"],
        "cleanup_disk_warning_percent": dsk["warning_percent"],
        "cleanup_disk_critical_percent": dsk["critical_percent"],
        # Scheduled runs stay out of the way unless a test asks for them.
        "cleanup_auto_emergency": False,
        "cleanup_monitor_interval_seconds": 3600.0,
        **{
            f"cleanup_{name}_interval_seconds": 3600.0
            for name in ("sweep", "work", "spool", "quarantine", "output", "orphan")
        },
    }
    values.update(overrides)
    return CleanupSettings(**values)


@pytest.fixture
def start_cleanup(in_process_mesh):
    """`stub = await start_cleanup(settings, status_source)`: a running CleanupService."""

    async def start(settings: CleanupSettings | None = None, sessions=None):
        service = await in_process_mesh.start(
            "cleanup",
            functools.partial(
                build, cleanup_settings=settings or cleanup_settings(), session_status=sessions
            ),
        )
        return cleanup_pb2_grpc.CleanupServiceStub(service.channel())

    return start


@pytest.fixture
def sessions_dir(mesh_settings) -> Path:
    path = mesh_settings.sessions_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


async def expect_error(call, code: str, grpc_code: grpc.StatusCode | None = None):
    """Awaits a failing RPC; asserts its catalogued code; returns the VidsynthError."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = error_from_rpc_error(caught.value)
    assert error.code == code, (error.code, error.message)
    if grpc_code is not None:
        assert caught.value.code() == grpc_code
    return error
