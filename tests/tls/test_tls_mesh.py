"""`vidsynth up --tls`: a development CA under <data-dir>/tls, HTTPS on P (HTTP/2 and
HTTP/1.1 by ALPN) and gRPC over TLS on G, used by a Python gRPC client and the CLI, and
reused on the next start."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from libs.common.rpc_status import error_from_rpc_error
from tests.support.grpc_flow import run_job
from tests.support.identities import API_KEYS, user_metadata
from tests.support.mesh_process import MeshProcess
from vidsynth.v1 import progress_pb2, session_pb2, session_pb2_grpc

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"


def negotiated(mesh: MeshProcess, protocols: list[str]) -> str | None:
    context = ssl.create_default_context(cafile=str(mesh.ca_file))
    context.set_alpn_protocols(protocols)
    with (
        socket.create_connection(("127.0.0.1", mesh.http_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def test_up_makes_a_ca_prints_it_and_serves_https(mesh) -> None:
    assert mesh.ca_file.is_file()
    assert f"CA {mesh.ca_file}" in mesh.output()
    assert f"export VIDSYNTH_TLS_CA={mesh.ca_file}" in mesh.output()
    assert "vidsynth is up in" in mesh.output() and mesh.url.startswith("https://")
    assert negotiated(mesh, ["h2", "http/1.1"]) == "h2"
    assert negotiated(mesh, ["http/1.1"]) == "http/1.1"
    response = httpx.get(f"{mesh.url}/readyz", verify=mesh.verify, timeout=10)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(mesh.ca_file),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            f"https://localhost:{mesh.http_port}/healthz",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert curl.stdout == "2 200", curl.stderr
    # Without the CA the certificate is not trusted: it is no public one.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{mesh.url}/healthz", timeout=10)


def test_the_grpc_flow_runs_over_tls_against_g_alone(mesh) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=mesh.ca_file.read_bytes())
    with grpc.secure_channel(mesh.grpc_target, credentials) as channel:
        result = run_job(channel, API_KEYS["alice"], FACE, VOICE, "Hello over TLS.")
        assert [r.report.accepted for r in result.reports] == [True, True]
        assert result.events[-1].type == progress_pb2.EVENT_TYPE_JOB_COMPLETED
        seqs = [e.seq for e in result.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        listed = next(o for o in result.job.outputs if o.name == "video")
        assert 0 < result.first_read < listed.size_bytes  # the resumed read had work left
        assert len(result.video) == listed.size_bytes
        assert hashlib.sha256(result.video).hexdigest() == listed.sha256
        assert result.video[4:8] == b"ftyp"
        with pytest.raises(grpc.RpcError) as caught:
            session_pb2_grpc.SessionServiceStub(channel).GetSession(
                session_pb2.GetSessionRequest(session_id="ses_000000000000000000000000"),
                metadata=user_metadata("alice"),
                timeout=10,
            )
        assert error_from_rpc_error(caught.value).code == "SESSION_NOT_FOUND"
    # A plain-text client cannot talk to the TLS port.
    with grpc.insecure_channel(mesh.grpc_target) as plain, pytest.raises(grpc.RpcError):
        session_pb2_grpc.SessionServiceStub(plain).ListSessions(
            session_pb2.ListSessionsRequest(), metadata=user_metadata("alice"), timeout=5
        )


def test_the_cli_works_over_tls(mesh, tmp_path) -> None:
    out = tmp_path / "tls.mp4"
    env = {
        **os.environ,
        "VIDSYNTH_API_KEY": API_KEYS["alice"],
        "VIDSYNTH_GRPC_TARGET": mesh.grpc_target,
        "VIDSYNTH_URL": mesh.url,
        "VIDSYNTH_TLS_CA": str(mesh.ca_file),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidsynth.cli",
            "submit",
            "--face",
            str(FACE),
            "--voice",
            str(VOICE),
            "--script",
            "The command line over TLS.",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"
    missing = subprocess.run(
        [sys.executable, "-m", "vidsynth.cli", "caps"],
        capture_output=True,
        text=True,
        env={**env, "VIDSYNTH_TLS_CA": str(tmp_path / "nope.pem")},
        timeout=60,
        check=False,
    )
    assert missing.returncode == 5 and "VIDSYNTH_TLS_CA" in missing.stdout + missing.stderr


def test_certificates_are_reused_on_the_next_start(tmp_path) -> None:
    first = MeshProcess(tmp_path / "var", tls=True)
    try:
        first.wait_up()
    finally:
        first.stop()
    tls_dir = first.ca_file.parent
    before = {path.relative_to(tls_dir): path.read_bytes() for path in tls_dir.rglob("*.pem")}
    # The CA, the edge's pair and one pair per mesh identity (services, gateway, edge).
    expected = {"ca.pem", "ca-key.pem", "edge.pem", "edge-key.pem"}
    for identity in ("session", "validator", "stage_runner", "progress", "cleanup", "gateway", "edge"):
        expected |= {f"mesh/{identity}.pem", f"mesh/{identity}-key.pem"}
    assert {str(name) for name in before} == expected
    second = MeshProcess(tmp_path / "var", tls=True)
    try:
        second.wait_up()
        assert httpx.get(f"{second.url}/healthz", verify=second.verify, timeout=10).status_code == 200
    finally:
        second.stop()
    assert {path.relative_to(tls_dir): path.read_bytes() for path in tls_dir.rglob("*.pem")} == before
