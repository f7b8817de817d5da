"""Mutual TLS behind a `vidsynth up --tls` edge: every internal port (the five services,
the gateway's gRPC and HTTP servers, the services' /metrics) refuses plaintext, TLS without
a client certificate and a certificate from another CA, and serves a caller presenting a
certificate from the mesh's CA; the mesh token stays a second factor; the whole flow
works through the edge."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common import tls
from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import MESH_TOKEN, bearer, mesh_metadata, user_metadata
from tests.support.mesh_process import MeshProcess
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
DOMAIN = "vidsynth.internal"
SERVICES = {"session": 1, "validator": 2, "stage_runner": 3, "progress": 4, "cleanup": 5}


@dataclass(frozen=True)
class InternalPort:
    name: str
    port: int
    protocol: str  # grpc or https
    identity: str  # whose certificate answers there

    @property
    def server_name(self) -> str:
        return f"{self.identity.replace('_', '-')}.{DOMAIN}"


def internal_ports(mesh: MeshProcess) -> list[InternalPort]:
    """Every port `up` opens behind the edge (the README's port table)."""
    g = mesh.grpc_port
    ports = [InternalPort(name, g + offset, "grpc", name) for name, offset in SERVICES.items()]
    ports.append(InternalPort("gateway gRPC", g + 6, "grpc", "gateway"))
    ports.append(InternalPort("gateway HTTP", g + 7, "https", "gateway"))
    ports += [
        InternalPort(f"{name} metrics", g + 100 + offset, "https", name) for name, offset in SERVICES.items()
    ]
    return ports


def mesh_dir(mesh: MeshProcess) -> Path:
    return mesh.ca_file.parent / "mesh"


def edge_pair(mesh: MeshProcess) -> tuple[Path, Path]:
    return mesh_dir(mesh) / "edge.pem", mesh_dir(mesh) / "edge-key.pem"


@pytest.fixture(scope="module")
def foreign_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A client certificate claiming the session service's identity, from another CA."""
    directory = tmp_path_factory.mktemp("foreign")
    authority = tls.write_authority(directory, *tls.create_ca("someone else's CA"))
    files = tls.ensure_certificate(
        authority, directory, "session", [f"session.{DOMAIN}", "127.0.0.1"], client=True
    )
    return files.certificate, files.key


# -- the clients a caller would use ---------------------------------------------------------


def grpc_health(target: InternalPort, credentials: grpc.ChannelCredentials | None) -> int:
    """The service's health status; raises grpc.RpcError when the call cannot be made."""
    address = f"127.0.0.1:{target.port}"
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        options = [("grpc.ssl_target_name_override", target.server_name)]
        channel = grpc.secure_channel(address, credentials, options=options)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status


def http_get(target: InternalPort, verify: ssl.SSLContext | None) -> httpx.Response:
    path = "/healthz" if target.identity == "gateway" else "/metrics"
    if verify is None:
        return httpx.get(f"http://127.0.0.1:{target.port}{path}", timeout=5)
    with httpx.Client(verify=verify, timeout=5) as client:
        # The URL holds the address; the certificate must name the identity.
        return client.get(
            f"https://127.0.0.1:{target.port}{path}", extensions={"sni_hostname": target.server_name}
        )


def context(mesh: MeshProcess, pair: tuple[Path, Path] | None, *, tls12: bool = False) -> ssl.SSLContext:
    result = ssl.create_default_context(cafile=str(mesh.ca_file))
    if pair:
        result.load_cert_chain(*pair)
    if tls12:  # the server then refuses within the handshake itself (TLS 1.3 refuses just after it)
        result.maximum_version = ssl.TLSVersion.TLSv1_2
    return result


def credentials(mesh: MeshProcess, pair: tuple[Path, Path] | None) -> grpc.ChannelCredentials:
    if pair is None:
        return grpc.ssl_channel_credentials(mesh.ca_file.read_bytes())
    return grpc.ssl_channel_credentials(mesh.ca_file.read_bytes(), pair[1].read_bytes(), pair[0].read_bytes())


def handshake(target: InternalPort, tls_context: ssl.SSLContext) -> str:
    """A bare TLS 1.2 handshake with the port: the protocol version on success."""
    with (
        socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw,
        tls_context.wrap_socket(raw, server_hostname=target.server_name) as wrapped,
    ):
        return str(wrapped.version())


def assert_refused(mesh: MeshProcess, target: InternalPort, pair: tuple[Path, Path] | None) -> None:
    """Refused by the real clients (gRPC, httpx) and within a TLS 1.2 handshake, where the
    same handshake with the mesh's certificate succeeds."""
    assert handshake(target, context(mesh, edge_pair(mesh), tls12=True)) == "TLSv1.2", target
    if target.protocol == "grpc":
        with pytest.raises(grpc.RpcError) as caught:
            grpc_health(target, credentials(mesh, pair))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, target
    else:
        with pytest.raises(httpx.TransportError):
            http_get(target, context(mesh, pair))
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(target, context(mesh, pair, tls12=True))


# -- the tests ------------------------------------------------------------------------------


def test_every_internal_port_serves_a_caller_with_a_mesh_certificate(mesh) -> None:
    """The control for the refusals below: the ports are up, and the mesh's certificate opens them."""
    for target in internal_ports(mesh):
        if target.protocol == "grpc":
            assert (
                grpc_health(target, credentials(mesh, edge_pair(mesh)))
                == health_pb2.HealthCheckResponse.SERVING
            )
        else:
            response = http_get(target, context(mesh, edge_pair(mesh)))
            assert response.status_code == 200, target
        assert handshake(target, context(mesh, edge_pair(mesh), tls12=True)) == "TLSv1.2", target


def test_every_internal_port_refuses_plaintext(mesh) -> None:
    for target in internal_ports(mesh):
        if target.protocol == "grpc":
            with pytest.raises(grpc.RpcError) as caught:
                grpc_health(target, None)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, target
        else:
            with pytest.raises(httpx.TransportError):
                http_get(target, None)
        # Whatever a plaintext client sends, nothing it could read as an answer comes back.
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw:
            raw.sendall(
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                if target.protocol == "grpc"
                else b"GET / HTTP/1.1\r\n\r\n"
            )
            answer = b""
            try:
                while chunk := raw.recv(4096):
                    answer += chunk
            except (ConnectionResetError, TimeoutError):
                pass
        assert not answer.startswith((b"HTTP/", b"\x00\x00")), (target, answer[:40])


def test_every_internal_port_refuses_tls_without_a_client_certificate(mesh) -> None:
    for target in internal_ports(mesh):
        assert_refused(mesh, target, None)


def test_every_internal_port_refuses_a_certificate_from_another_ca(mesh, foreign_pair) -> None:
    for target in internal_ports(mesh):
        assert_refused(mesh, target, foreign_pair)


def test_a_server_must_prove_the_identity_the_client_expects(mesh) -> None:
    """The clients check the service's identity, not just the CA: the session service's
    certificate does not pass for the validator's."""
    session = internal_ports(mesh)[0]
    impostor = InternalPort("session as validator", session.port, "grpc", "validator")
    with pytest.raises(grpc.RpcError) as caught:
        grpc_health(impostor, credentials(mesh, edge_pair(mesh)))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_mesh_token_stays_a_second_factor(mesh) -> None:
    """A mesh certificate opens the port; an internal RPC still needs the mesh token."""
    target = f"127.0.0.1:{mesh.grpc_port + SERVICES['session']}"
    options = [("grpc.ssl_target_name_override", f"session.{DOMAIN}")]
    with grpc.secure_channel(target, credentials(mesh, edge_pair(mesh)), options=options) as channel:
        stub = session_internal_pb2_grpc.SessionInternalServiceStub(channel)
        request = session_internal_pb2.BatchGetSessionsRequest()
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchGetSessions(request, metadata=user_metadata("alice"), timeout=10)
        assert error_from_rpc_error(caught.value).code == "PERMISSION_DENIED"
        forged = (("x-vidsynth-mesh-token", "not-" + MESH_TOKEN),)
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchGetSessions(request, metadata=forged, timeout=10)
        assert error_from_rpc_error(caught.value).code == "UNAUTHENTICATED"
        stub.BatchGetSessions(request, metadata=mesh_metadata(), timeout=10)  # both factors: served


def test_up_issues_one_certificate_per_identity(mesh) -> None:
    ca = x509.load_pem_x509_certificate(mesh.ca_file.read_bytes())
    for identity in [*SERVICES, "gateway", "edge"]:
        path = mesh_dir(mesh) / f"{identity}.pem"
        leaf = x509.load_pem_x509_certificate(path.read_bytes())
        name = f"{identity.replace('_', '-')}.{DOMAIN}"
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        usages = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        store = Store([ca])
        PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
        if identity == "edge":  # a client only
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH}
            continue
        assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        for host in (x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))):
            PolicyBuilder().store(store).build_server_verifier(host).verify(leaf, [])
        assert (mesh_dir(mesh) / f"{identity}-key.pem").stat().st_mode & 0o777 == 0o600
    assert mesh_dir(mesh).stat().st_mode & 0o777 == 0o700
    assert f"certificates under {mesh_dir(mesh)}" in mesh.output()


def test_the_whole_flow_runs_over_https_through_the_edge(mesh) -> None:
    """Session, uploads, a job to the end, its events and its video: every hop behind the edge is mutual TLS."""
    with httpx.Client(base_url=mesh.url, headers=bearer("alice"), verify=mesh.verify, timeout=30) as client:
        session_id = client.post("/v1/sessions", json={}).json()["session_id"]
        for kind, path in (("face", FACE), ("voice", VOICE)):
            uploaded = client.post(
                f"/v1/sessions/{session_id}/assets/{kind}", files={"file": (path.name, path.read_bytes())}
            )
            assert uploaded.status_code in (200, 201), uploaded.text
        started = client.post(
            f"/v1/sessions/{session_id}/jobs", json={"script_text": "Mutual TLS all the way."}
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        deadline = time.monotonic() + 240
        while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        assert job["state"] == "completed", job
        video = client.get(f"/v1/jobs/{job_id}/outputs/video")
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        listed = next(o for o in job["outputs"] if o["name"] == "video")
        assert len(video.content) == listed["size_bytes"]
        events = []
        with client.stream("GET", f"/v1/sessions/{session_id}/events", params={"after": 0}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
                    if events[-1]["type"] == "job.completed":
                        break
        assert events[-1]["type"] == "job.completed" and events[-1]["job_id"] == job_id


def test_health_checks_present_a_mesh_certificate(mesh) -> None:
    """`vidsynth health` and the containers' healthcheck reach the services only with the mesh's certificates."""
    base = {
        **os.environ,
        "VIDSYNTH_GRPC_TARGET": mesh.grpc_target,
        "VIDSYNTH_URL": mesh.url,
        "VIDSYNTH_TLS_CA": str(mesh.ca_file),
    }
    mesh_env = {
        "VIDSYNTH_MESH_TLS": "true",
        "VIDSYNTH_MESH_TLS_CA_FILE": str(mesh.ca_file),
        "VIDSYNTH_MESH_TLS_CERT_DIR": str(mesh_dir(mesh)),
    }

    def run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *argv], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    with_certificate = run("vidsynth.cli", "health", env={**base, **mesh_env})
    assert with_certificate.returncode == 0, with_certificate.stdout + with_certificate.stderr
    rows = {
        line.split()[1]: line.split()[3] for line in with_certificate.stdout.splitlines() if "SERVING" in line
    }
    assert rows == {name: "SERVING" for name in [*SERVICES, "gateway"]}, with_certificate.stdout
    without = run("vidsynth.cli", "health", env=base)
    rows = {line.split()[1]: line.split()[3] for line in without.stdout.splitlines() if line.count("│") == 3}
    assert without.returncode == 1
    assert rows == {**{name: "UNREACHABLE" for name in SERVICES}, "gateway": "SERVING"}, without.stdout

    session = f"127.0.0.1:{mesh.grpc_port + SERVICES['session']}"
    assert run("libs.common.healthcheck", session, "session", env={**base, **mesh_env}).returncode == 0
    assert run("libs.common.healthcheck", session, env=base).returncode == 1  # plaintext: refused
    unnamed = run("libs.common.healthcheck", session, env={**base, **mesh_env})
    assert unnamed.returncode == 1 and "name the service" in unnamed.stderr
