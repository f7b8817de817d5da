"""API keys in a file of hashes (issue 15, item 7), on real `vidsynth up` process trees: a
key revoked with `vidsynth keys revoke` is refused within seconds by the gateway and by
every gRPC service; a malformed file keeps the last good keys in every process (and says
so in each one's log) and stops `up` and any single process at start; SIGHUP reloads at
once; the environment's keys keep working beside the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from libs.common import ids
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import bearer, mesh_env, user_metadata
from tests.support.mesh_process import MeshProcess
from tests.support.ports import free_port, free_port_block
from vidsynth.v1 import (
    cleanup_pb2,
    cleanup_pb2_grpc,
    progress_pb2,
    progress_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    stage_runner_pb2,
    stage_runner_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)

pytestmark = pytest.mark.slow
MESH_PROCESSES = ("session", "validator", "stage_runner", "progress", "cleanup", "gateway")
# The watchers poll every second; the bound leaves room for a loaded machine.
REFUSED_WITHIN_SECONDS = 6.0


def keys_cli(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIDSYNTH_API_KEYS_FILE": str(path)}
    return subprocess.run(
        [sys.executable, "-m", "vidsynth.cli", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def add_key(path: Path, user: str, *flags: str) -> str:
    made = keys_cli(path, "add", user, *flags, "--json")
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["api_key"]


def write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(".scratch")
    scratch.write_text(text)
    scratch.chmod(0o600)
    os.replace(scratch, path)


def grpc_calls(grpc_port: int) -> dict[str, Callable[[tuple], object]]:
    """One cheap public RPC per service, by service name."""

    def channel(service: str) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS[service]}")

    session = session_pb2_grpc.SessionServiceStub(channel("session"))
    validator = validator_pb2_grpc.ValidatorServiceStub(channel("validator"))
    runner = stage_runner_pb2_grpc.StageRunnerServiceStub(channel("stage_runner"))
    progress = progress_pb2_grpc.ProgressServiceStub(channel("progress"))
    cleanup = cleanup_pb2_grpc.CleanupServiceStub(channel("cleanup"))
    return {
        "session": lambda md: session.ListSessions(session_pb2.ListSessionsRequest(), metadata=md, timeout=5),
        "validator": lambda md: validator.GetUploadPolicy(
            validator_pb2.GetUploadPolicyRequest(), metadata=md, timeout=5
        ),
        "stage_runner": lambda md: runner.GetCapabilities(
            stage_runner_pb2.GetCapabilitiesRequest(), metadata=md, timeout=5
        ),
        "progress": lambda md: progress.GetProgress(
            progress_pb2.GetProgressRequest(session_id=ids.new_id("session")), metadata=md, timeout=5
        ),
        "cleanup": lambda md: cleanup.GetResourceHealth(
            cleanup_pb2.GetResourceHealthRequest(), metadata=md, timeout=5
        ),
    }


def grpc_outcome(call, metadata) -> str:
    try:
        call(metadata)
    except grpc.RpcError as error:
        return error_from_rpc_error(error).code
    return "OK"


def outcomes(mesh: MeshProcess, key: str) -> dict[str, str]:
    """How the gateway and each service answer `key` ("UNAUTHENTICATED" when refused)."""
    metadata = (("authorization", f"Bearer {key}"),)
    found = {name: grpc_outcome(call, metadata) for name, call in grpc_calls(mesh.grpc_port).items()}
    response = httpx.get(f"{mesh.url}/v1/sessions", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    found["gateway"] = "UNAUTHENTICATED" if response.status_code == 401 else str(response.status_code)
    return found


def accepted_everywhere(found: dict[str, str]) -> bool:
    return set(found) == set(MESH_PROCESSES) and "UNAUTHENTICATED" not in found.values()


def refused_everywhere(found: dict[str, str]) -> bool:
    return set(found.values()) == {"UNAUTHENTICATED"}


def wait_until(mesh: MeshProcess, key: str, condition, limit: float) -> float:
    started = time.monotonic()
    while not condition(found := outcomes(mesh, key)):
        assert time.monotonic() - started < limit, found
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def keys_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys") / "api-keys"


@pytest.fixture(scope="module")
def keyed_mesh(tmp_path_factory, keys_path):
    add_key(keys_path, "seed")  # the file exists before the mesh starts
    mesh = MeshProcess(
        tmp_path_factory.mktemp("keys-mesh") / "var",
        extra_env={"VIDSYNTH_PROCESSING_MODE": "simulation", "VIDSYNTH_API_KEYS_FILE": str(keys_path)},
    )
    mesh.wait_up(90)
    yield mesh
    mesh.stop()


def test_a_revoked_key_is_refused_within_seconds_by_the_gateway_and_every_service(keyed_mesh, keys_path):
    carol = add_key(keys_path, "carol")
    dave = add_key(keys_path, "dave", "--admin")
    for key in (carol, dave):  # a watcher may have read the file between the two writes
        wait_until(keyed_mesh, key, accepted_everywhere, REFUSED_WITHIN_SECONDS)
    # The file's admin line reaches the session service's own keyring.
    with grpc.insecure_channel(
        f"127.0.0.1:{keyed_mesh.grpc_port + SERVICE_PORT_OFFSETS['session']}"
    ) as channel:
        listed = session_pb2_grpc.SessionServiceStub(channel).ListActiveSessions(
            session_pb2.ListActiveSessionsRequest(),
            metadata=(("authorization", f"Bearer {dave}"),),
            timeout=5,
        )
    assert listed is not None

    revoked = keys_cli(keys_path, "revoke", carol)
    assert revoked.returncode == 0, revoked.stderr
    took = wait_until(keyed_mesh, carol, refused_everywhere, REFUSED_WITHIN_SECONDS)
    print(f"revoked key refused everywhere after {took:.2f} s")
    assert accepted_everywhere(outcomes(keyed_mesh, dave))
    # Environment keys keep working beside the file.
    assert httpx.get(f"{keyed_mesh.url}/v1/sessions", headers=bearer("alice"), timeout=5).status_code == 200
    with grpc.insecure_channel(
        f"127.0.0.1:{keyed_mesh.grpc_port + SERVICE_PORT_OFFSETS['session']}"
    ) as channel:
        session_pb2_grpc.SessionServiceStub(channel).ListSessions(
            session_pb2.ListSessionsRequest(), metadata=user_metadata("alice"), timeout=5
        )


def test_a_malformed_file_on_reload_keeps_the_last_good_keys_and_is_logged(keyed_mesh, keys_path):
    erin = add_key(keys_path, "erin")
    wait_until(keyed_mesh, erin, accepted_everywhere, REFUSED_WITHIN_SECONDS)
    good = keys_path.read_text()
    start = len(keyed_mesh.output().splitlines())
    write_atomically(keys_path, good + "sha256:not-a-hash mallory admin\n")

    def failed_reloads() -> dict[str, str]:
        lines = keyed_mesh.output().splitlines()[start:]
        return {line.split("]")[0].lstrip("["): line for line in lines if "keys_file.reload_failed" in line}

    deadline = time.monotonic() + 15
    while set(failed_reloads()) != set(MESH_PROCESSES) and time.monotonic() < deadline:
        time.sleep(0.2)
    logged = failed_reloads()
    assert set(logged) == set(MESH_PROCESSES), logged
    assert all('"level": "error"' in line and " line " in line for line in logged.values()), logged
    assert accepted_everywhere(outcomes(keyed_mesh, erin))  # the last good keys
    # The helper will not build on a broken file either.
    refused = keys_cli(keys_path, "add", "frank")
    said = " ".join(refused.stderr.split())
    bad_line = len(good.splitlines()) + 1
    assert refused.returncode == 5, said
    assert f"line {bad_line}: expected `sha256:<64 hex digits> USER [admin]`" in said, said
    assert "fix it before changing it" in said
    write_atomically(keys_path, good)
    frank = add_key(keys_path, "frank")
    wait_until(keyed_mesh, frank, accepted_everywhere, REFUSED_WITHIN_SECONDS)


def test_sighup_to_up_reloads_every_process_at_once(tmp_path):
    keys_path = tmp_path / "api-keys"
    add_key(keys_path, "seed")
    mesh = MeshProcess(
        tmp_path / "var",
        extra_env={
            "VIDSYNTH_PROCESSING_MODE": "simulation",
            "VIDSYNTH_API_KEYS_FILE": str(keys_path),
            "VIDSYNTH_API_KEYS_RELOAD_SECONDS": "3600",  # no polling to speak of
        },
    )
    try:
        mesh.wait_up(90)
        time.sleep(1.0)
        grace = add_key(keys_path, "grace")
        time.sleep(2.0)
        assert refused_everywhere(outcomes(mesh, grace))  # nobody looked at the file again
        mesh.process.send_signal(signal.SIGHUP)
        took = wait_until(mesh, grace, accepted_everywhere, 5.0)
        print(f"SIGHUP: new key accepted everywhere after {took:.2f} s")
        assert mesh.process.poll() is None and mesh.ready()
    finally:
        mesh.stop()


def test_a_malformed_file_stops_up_and_each_process_at_start(tmp_path):
    keys_path = tmp_path / "api-keys"
    add_key(keys_path, "seed")
    with keys_path.open("a") as handle:
        handle.write("alice-plain-key alice\n")
    lines = len(keys_path.read_text().splitlines())
    mesh = MeshProcess(tmp_path / "var", extra_env={"VIDSYNTH_API_KEYS_FILE": str(keys_path)})
    try:
        assert mesh.process.wait(30) == 2
    finally:
        mesh.stop()
    assert f"[up] refusing to start: API keys file {keys_path} line {lines}" in mesh.output()
    assert "vidsynth is up" not in mesh.output()

    env = {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_API_KEYS_FILE": str(keys_path),
        "VIDSYNTH_DATA_DIR": str(tmp_path / "lone"),
        "VIDSYNTH_GRPC_PORT": str(free_port_block()),
        "VIDSYNTH_HTTP_PORT": str(free_port()),
    }
    for name in ("session", "gateway"):
        lone = subprocess.run(
            [sys.executable, "-m", f"services.{name}"], capture_output=True, text=True, env=env, timeout=60
        )
        assert lone.returncode != 0
        assert f"vidsynth {name}: refusing to start: API keys file {keys_path} line {lines}" in lone.stderr
