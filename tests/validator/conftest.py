from __future__ import annotations

import functools
import socket
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest

import services.session.server
import services.validator.server
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.validator.config import ValidatorSettings
from tests.support.identities import user_metadata
from tests.support.ports import free_port
from tests.validator.corpus import EICAR
from vidsynth.cli.clamd import clamd_command
from vidsynth.v1 import session_pb2, session_pb2_grpc, validator_pb2_grpc

CLAMD_START_SECONDS = 60.0
TEST_SIGNATURES = [
    ("Vidsynth.Test.EICAR", EICAR),
    ("Vidsynth.Test.Marker", b"VIDSYNTH-MALWARE-TEST-PATTERN"),
]


def write_signature_db(directory: Path) -> Path:
    """A ClamAV .ndb database the test owns: EICAR and a marker, matched anywhere in a file."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "tests.ndb"
    db.write_text("".join(f"{name}:0:*:{pattern.hex()}\n" for name, pattern in TEST_SIGNATURES))
    return db


def _ping(address: str) -> bool:
    host, _, port = address.removeprefix("tcp:").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as sock:
            sock.sendall(b"nPING\n")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


def start_clamd(base: Path, stream_max_bytes: int) -> tuple[subprocess.Popen, str]:
    db = write_signature_db(base / "signatures")
    argv, address, db_kind = clamd_command(
        base / "var",
        tcp_port=free_port(),
        official_db_dir=base / "no-official-db",
        test_db=db,
        stream_max_bytes=stream_max_bytes,
    )
    assert db_kind == "test-signatures"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + CLAMD_START_SECONDS
    while not _ping(address):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"clamd did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc, address


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def clamd_address(tmp_path_factory) -> str:
    """A real clamd on loopback with a signature database this test run wrote."""
    proc, address = start_clamd(tmp_path_factory.mktemp("clamd"), stream_max_bytes=64 * 1024 * 1024)
    yield address
    _stop(proc)


@pytest.fixture(scope="session")
def small_stream_clamd_address(tmp_path_factory) -> str:
    """A clamd whose INSTREAM limit (1 MB) is below the upload cap."""
    proc, address = start_clamd(tmp_path_factory.mktemp("clamd-small"), stream_max_bytes=1024 * 1024)
    yield address
    _stop(proc)


def validator_settings_for(clamd: str, **overrides) -> ValidatorSettings:
    values = {
        "validator_clamd_address": clamd,
        "validator_face_max_bytes": 3 * 1024 * 1024,
        "validator_voice_max_bytes": 4 * 1024 * 1024,
        "validator_audio_max_seconds": 10.0,
        "validator_chunk_bytes": 256 * 1024,
    }
    values.update(overrides)
    return ValidatorSettings(**values)


@pytest.fixture
def validator_settings(clamd_address) -> ValidatorSettings:
    return validator_settings_for(clamd_address)


class Mesh:
    """Session + validator in-process, a gateway app over them, and helpers."""

    def __init__(self, in_process_mesh) -> None:
        self.in_process = in_process_mesh

    @property
    def settings(self):
        return self.in_process.settings

    async def start(self, validator_settings: ValidatorSettings) -> Mesh:
        await self.in_process.start("session", services.session.server.build)
        self.validator_service = await self.in_process.start(
            "validator",
            functools.partial(services.validator.server.build, validator_settings=validator_settings),
        )
        self.channel = grpc.aio.insecure_channel(self.in_process.running["validator"].address)
        self.session_channel = grpc.aio.insecure_channel(self.in_process.running["session"].address)
        self.validator = validator_pb2_grpc.ValidatorServiceStub(self.channel)
        self.sessions = session_pb2_grpc.SessionServiceStub(self.session_channel)
        self.app = create_app(
            self.settings,
            GatewaySettings(gateway_rate_limit_per_second=10_000, gateway_rate_limit_burst=10_000),
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gateway", timeout=60
        )
        return self

    async def new_session(self, user: str = "alice") -> str:
        session = await self.sessions.CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata(user)
        )
        return session.session_id

    async def get_session(self, session_id: str, user: str = "alice") -> session_pb2.Session:
        return await self.sessions.GetSession(
            session_pb2.GetSessionRequest(session_id=session_id), metadata=user_metadata(user)
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.app.state.gateway.close()
        await self.channel.close()
        await self.session_channel.close()


@pytest.fixture
async def mesh(in_process_mesh, validator_settings):
    running = await Mesh(in_process_mesh).start(validator_settings)
    yield running
    await running.close()
