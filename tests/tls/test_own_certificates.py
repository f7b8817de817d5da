"""Operators bring their own CA and certificates for mutual TLS inside the mesh: `up --tls`
uses them (and makes no development CA), and settings naming files that are missing or do
not fit stop `up`, or a service started on its own, at start with a message naming them."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from libs.common import tls
from tests.support.identities import mesh_env, user_metadata
from tests.support.mesh_process import MeshProcess
from tests.support.ports import free_port_block
from vidsynth.v1 import session_pb2, session_pb2_grpc

pytestmark = pytest.mark.slow
IDENTITIES = ["session", "validator", "stage_runner", "progress", "cleanup", "gateway", "edge"]


@pytest.fixture(scope="module")
def operator_pki(tmp_path_factory) -> dict[str, Path]:
    """The operator's own CA, one shared pair for every service (a wildcard over the mesh's
    domain, plus the loopback address the edge also serves), and a certificate directory
    holding all identities but the edge."""
    root = tmp_path_factory.mktemp("operator-pki")
    authority = tls.write_authority(root, *tls.create_ca("operator CA"))
    shared = tls.ensure_certificate(
        authority, root, "shared", ["*.vidsynth.internal", "127.0.0.1", "localhost"], client=True
    )
    partial = root / "partial"
    partial.mkdir()
    for identity in IDENTITIES[:-1]:
        name = f"{identity.replace('_', '-')}.vidsynth.internal"
        tls.ensure_certificate(authority, partial, identity, [name], client=True)
    return {
        "ca": authority.path,
        "cert": shared.certificate,
        "key": shared.key,
        "partial": partial,
        "root": root,
    }


def failed_start(data_dir: Path, env: dict[str, str]) -> tuple[int, str]:
    mesh = MeshProcess(data_dir, extra_env=env, tls=True)
    try:
        code = mesh.process.wait(60)
    finally:
        mesh.stop()
    mesh._reader.join(5)
    return code, mesh.output()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing CA", "cannot read the CA file {root}/missing-ca.pem"),
        ("missing key", "cannot read the TLS key {root}/missing-key.pem"),
        (
            "a directory without the edge's pair",
            "mesh TLS: cannot read the TLS certificate {root}/partial/edge.pem",
        ),
        ("a CA alone", "VIDSYNTH_MESH_TLS_CA_FILE is set: set VIDSYNTH_MESH_TLS_CERT_DIR"),
    ],
)
def test_up_refuses_to_start_with_unusable_files(tmp_path, operator_pki, case, expected) -> None:
    root = operator_pki["root"]
    env = {
        "missing CA": {
            "VIDSYNTH_MESH_TLS_CA_FILE": str(root / "missing-ca.pem"),
            "VIDSYNTH_MESH_TLS_CERT_DIR": str(operator_pki["partial"]),
        },
        "missing key": {
            "VIDSYNTH_MESH_TLS_CA_FILE": str(operator_pki["ca"]),
            "VIDSYNTH_MESH_TLS_CERT_FILE": str(operator_pki["cert"]),
            "VIDSYNTH_MESH_TLS_KEY_FILE": str(root / "missing-key.pem"),
        },
        "a directory without the edge's pair": {
            "VIDSYNTH_MESH_TLS_CA_FILE": str(operator_pki["ca"]),
            "VIDSYNTH_MESH_TLS_CERT_DIR": str(operator_pki["partial"]),
        },
        "a CA alone": {"VIDSYNTH_MESH_TLS_CA_FILE": str(operator_pki["ca"])},
    }[case]
    code, output = failed_start(tmp_path / "var", env)
    assert code == 1, output
    assert f"[up] cannot start: {expected.format(root=root)}" in output, output
    assert "[session]" not in output and "vidsynth is up" not in output  # nothing was started


@pytest.mark.parametrize("service", ["session", "gateway"])
def test_a_service_started_alone_stops_at_start_on_a_missing_certificate(operator_pki, service) -> None:
    """The compose / Kubernetes case: each process reads its own settings."""
    env = {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_GRPC_PORT": str(free_port_block()),
        "VIDSYNTH_MESH_TLS": "true",
        "VIDSYNTH_MESH_TLS_CA_FILE": str(operator_pki["ca"]),
        "VIDSYNTH_MESH_TLS_CERT_DIR": str(operator_pki["root"]),  # has shared.pem, not <service>.pem
    }
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    missing = operator_pki["root"] / f"{service}.pem"
    assert f"vidsynth {service}: cannot start: cannot read the TLS certificate {missing}" in done.stderr


def test_a_mesh_runs_on_the_operators_own_ca_and_certificates(tmp_path, operator_pki) -> None:
    env = {
        "VIDSYNTH_PROCESSING_MODE": "simulation",
        "VIDSYNTH_MESH_TLS_CA_FILE": str(operator_pki["ca"]),
        "VIDSYNTH_MESH_TLS_CERT_FILE": str(operator_pki["cert"]),
        "VIDSYNTH_MESH_TLS_KEY_FILE": str(operator_pki["key"]),
        # The edge serves the same operator's certificate to the public.
        "VIDSYNTH_EDGE_TLS_CERT_FILE": str(operator_pki["cert"]),
        "VIDSYNTH_EDGE_TLS_KEY_FILE": str(operator_pki["key"]),
    }
    mesh = MeshProcess(tmp_path / "var", extra_env=env, tls=True)
    try:
        mesh.wait_up(90)
        assert "(the operator's certificates)" in mesh.output()
        assert not (tmp_path / "var" / "tls").exists()  # no development CA was needed
        verify = ssl.create_default_context(cafile=str(operator_pki["ca"]))
        assert httpx.get(f"{mesh.url}/readyz", verify=verify, timeout=10).status_code == 200
        credentials = grpc.ssl_channel_credentials(operator_pki["ca"].read_bytes())
        with grpc.secure_channel(mesh.grpc_target, credentials) as channel:  # through the edge, to session
            stub = session_pb2_grpc.SessionServiceStub(channel)
            created = stub.CreateSession(
                session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"), timeout=10
            )
            assert (
                stub.GetSession(
                    session_pb2.GetSessionRequest(session_id=created.session_id),
                    metadata=user_metadata("alice"),
                    timeout=10,
                ).session_id
                == created.session_id
            )
        # Behind the edge the operator's CA decides: its pair gets in, no certificate does not.
        session = f"127.0.0.1:{mesh.grpc_port + 1}"
        options = [("grpc.ssl_target_name_override", "session.vidsynth.internal")]
        pair = grpc.ssl_channel_credentials(
            operator_pki["ca"].read_bytes(),
            operator_pki["key"].read_bytes(),
            operator_pki["cert"].read_bytes(),
        )
        request = session_pb2.ListSessionsRequest()
        with grpc.secure_channel(session, pair, options=options) as channel:
            session_pb2_grpc.SessionServiceStub(channel).ListSessions(
                request, metadata=user_metadata("alice"), timeout=10
            )
        with (
            grpc.secure_channel(session, credentials, options=options) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            session_pb2_grpc.SessionServiceStub(channel).ListSessions(
                request, metadata=user_metadata("alice"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        mesh.stop()
