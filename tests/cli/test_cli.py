"""The operator's CLI against a real mesh (simulation backends, so jobs are quick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    mesh = MeshProcess(
        tmp_path_factory.mktemp("cli") / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "simulation"}
    )
    mesh.wait_up()
    yield mesh
    mesh.stop()


def vidsynth(mesh: MeshProcess, *args: str, user: str = "alice") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VIDSYNTH_API_KEY": API_KEYS[user],
        "VIDSYNTH_GRPC_TARGET": f"127.0.0.1:{mesh.grpc_port}",
        "VIDSYNTH_URL": mesh.url,
        "COLUMNS": "120",
    }
    return subprocess.run(
        [sys.executable, "-m", "vidsynth.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_submit_follow_writes_the_video(mesh, tmp_path) -> None:
    out = tmp_path / "result.mp4"
    result = vidsynth(
        mesh,
        "submit",
        "--face",
        str(FACE),
        "--voice",
        str(VOICE),
        "--script",
        "Hello from the command line.",
        "--follow",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [
        json.loads(line) for line in result.stdout.splitlines() if line.startswith("{") and line.endswith("}")
    ]
    types = [line["type"] for line in lines if "type" in line]
    assert types[0] == "job.queued" and types[-1] == "job.completed"
    assert "stage.progress" in types or "stage.completed" in types
    assert out.stat().st_size > 1000
    assert out.read_bytes()[4:8] == b"ftyp"
    final = json.loads(result.stdout[result.stdout.rindex('{\n  "job"') :])
    job_id = final["job"]["job_id"]

    status = vidsynth(mesh, "status", job_id, "--json")
    assert status.returncode == 0
    printed = json.loads(status.stdout)
    assert printed["state"] == "completed"
    # One spelling: --json prints exactly what the HTTP API answers for the same job.
    assert printed == httpx.get(f"{mesh.url}/v1/jobs/{job_id}", headers=bearer("alice"), timeout=30).json()
    assert final["job"] == printed

    thumb = tmp_path / "thumb.jpg"
    assert vidsynth(mesh, "download", job_id, "--name", "thumbnail", "--out", str(thumb)).returncode == 0
    assert thumb.read_bytes()[:2] == b"\xff\xd8"


def test_errors_map_to_catalog_codes_and_exit_codes(mesh) -> None:
    missing = vidsynth(mesh, "status", "job_000000000000000000000000", "--json")
    assert missing.returncode == 4
    assert json.loads(missing.stdout)["error"]["code"] == "JOB_NOT_FOUND"

    malformed = vidsynth(mesh, "status", "../etc/passwd", "--json")
    assert malformed.returncode == 5
    assert json.loads(malformed.stdout)["error"]["code"] == "INVALID_ID"

    env_without_key = vidsynth(mesh, "caps", "--json", "--api-key", "wrong-key")
    assert env_without_key.returncode == 3
    assert json.loads(env_without_key.stdout)["error"]["code"] == "UNAUTHENTICATED"

    refused = vidsynth(
        mesh, "submit", "--face", str(VOICE), "--voice", str(VOICE), "--script", "hi", "--json"
    )
    assert refused.returncode == 5
    assert json.loads(refused.stdout)["error"]["code"] in {"FILE_TYPE_NOT_ALLOWED", "FILE_CONTENT_MISMATCH"}


def test_admin_commands(mesh) -> None:
    caps = vidsynth(mesh, "caps", "--json")
    assert caps.returncode == 0
    printed = json.loads(caps.stdout)
    assert printed["mode"] == "simulation"
    assert {backend["kind"] for backend in printed["backends"]} <= {
        "builtin",
        "external",
        "api",
        "simulation",
    }

    denied = vidsynth(mesh, "cleanup", "--json")
    assert denied.returncode == 3
    assert json.loads(denied.stdout)["error"]["code"] == "PERMISSION_DENIED"

    cleaned = vidsynth(mesh, "cleanup", "--json", user="root")
    assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    body = json.loads(cleaned.stdout)
    assert isinstance(body["bytes_freed"], int)  # a number, not protobuf-JSON's string
    assert all(isinstance(result["items_removed"], int) for result in body["results"])
