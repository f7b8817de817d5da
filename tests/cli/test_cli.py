"""The operator's CLI against a real mesh (simulation backends, so jobs are quick)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess
from tests.support.ports import free_port

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


def vidsynth(
    mesh: MeshProcess | None, *args: str, user: str = "alice", **env_overrides: str
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VIDSYNTH_API_KEY": API_KEYS[user],
        "COLUMNS": "120",
        **(
            {"VIDSYNTH_GRPC_TARGET": f"127.0.0.1:{mesh.grpc_port}", "VIDSYNTH_URL": mesh.url}
            if mesh is not None
            else {}
        ),
        **env_overrides,
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


def test_submit_without_json_names_the_session_and_job_and_says_ready_once(mesh, tmp_path) -> None:
    out = tmp_path / "plain.mp4"
    args = ["submit", "--face", str(FACE), "--voice", str(VOICE), "--script", "Plain words."]
    result = vidsynth(mesh, *args, "--follow", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    session_id = re.search(r"\bsession (ses_[0-9a-f]{24})\b", result.stderr)
    job_id = re.search(r"\bjob (job_[0-9a-f]{24}) queued in session (ses_[0-9a-f]{24})", result.stderr)
    assert session_id and job_id, result.stderr
    assert job_id.group(2) == session_id.group(1)
    assert f"job {job_id.group(1)} completed" in result.stderr
    assert result.stderr.count("video ready") == 1, result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"

    queued = vidsynth(mesh, *args)  # without --follow: the ids, then back to the shell
    assert queued.returncode == 0, queued.stderr[-3000:]
    assert re.search(r"job job_[0-9a-f]{24} queued in session ses_[0-9a-f]{24}", queued.stderr), queued.stderr


def test_status_prints_a_table_for_people(mesh) -> None:
    submitted = vidsynth(
        mesh, "submit", "--face", str(FACE), "--voice", str(VOICE), "--script", "Status.", "--json"
    )
    job_id = json.loads(submitted.stdout)["job_id"]
    watched = vidsynth(mesh, "watch", json.loads(submitted.stdout)["session_id"], "--json")
    assert watched.returncode == 0, watched.stderr[-2000:]
    status = vidsynth(mesh, "status", job_id)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"job {job_id}" in status.stderr and "completed" in status.stderr
    assert "assemble" in status.stderr and "output video: video/mp4" in status.stderr


def test_health_follows_the_documented_environment(mesh) -> None:
    """VIDSYNTH_GRPC_TARGET and VIDSYNTH_URL point it at this mesh (not the default ports)."""
    here = vidsynth(mesh, "health")
    assert here.returncode == 0, here.stdout + here.stderr
    assert here.stdout.count("SERVING") == 6  # five services and the gateway
    elsewhere = free_port()
    wrong_gateway = vidsynth(mesh, "health", VIDSYNTH_URL=f"http://127.0.0.1:{elsewhere}")
    assert wrong_gateway.returncode == 1
    assert re.search(r"gateway\s.*UNREACHABLE", wrong_gateway.stdout), wrong_gateway.stdout
    assert wrong_gateway.stdout.count("SERVING") == 5
    by_flag = vidsynth(None, "health", "--grpc", f"127.0.0.1:{mesh.grpc_port}", "--url", mesh.url)
    assert by_flag.returncode == 0, by_flag.stdout
    refused = vidsynth(None, "health", "--grpc", "no-port-here")
    assert refused.returncode == 5 and "INVALID_ARGUMENT" in refused.stderr


@pytest.mark.parametrize(
    "command", ["", "up", "demo", "health", "submit", "status", "watch", "download", "caps", "cleanup"]
)
def test_help_shows_no_value_after_flags(command) -> None:
    result = vidsynth(None, *([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout, result.stdout
    flag_lines = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("--help")]
    assert flag_lines and flag_lines[0][1] == "Show", flag_lines
