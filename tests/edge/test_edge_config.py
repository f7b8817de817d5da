"""The edge's config as `vidsynth up` renders it, checked by nginx itself (`nginx -t`),
and the ways `up` refuses to start: no nginx, certificate settings that point nowhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libs.common import tls
from libs.common.settings import MeshSettings
from services.validator.config import ValidatorSettings
from tests.support.ports import free_port, free_port_block
from vidsynth.cli import edge
from vidsynth.v1 import cleanup_pb2, progress_pb2, session_pb2, stage_runner_pb2, validator_pb2

PUBLIC_PROTO_MODULES = (session_pb2, validator_pb2, stage_runner_pb2, progress_pb2, cleanup_pb2)


def mesh_config(tmp_path: Path, certificate: tls.CertificateFiles | None = None) -> tuple[str, list[str]]:
    grpc_port = free_port_block()
    mesh = MeshSettings(grpc_port=grpc_port, http_port=free_port(), gateway_http_port=grpc_port + 7)
    config = edge.config_for_mesh(mesh, edge.EdgeSettings(), tmp_path, certificate)
    path = edge.write_config(config, edge.edge_dir(tmp_path))
    return path.read_text(), edge.nginx_argv(edge.nginx_binary(), path)


def test_the_shipped_head_timeout_is_about_20_seconds(tmp_path) -> None:
    assert edge.EdgeSettings().edge_header_timeout_seconds == 20.0
    text, _ = mesh_config(tmp_path)
    assert "client_header_timeout 20000ms;" in text


async def test_nginx_accepts_the_rendered_config_with_and_without_tls(tmp_path) -> None:
    _, argv = mesh_config(tmp_path / "plain")
    await edge.check_config(argv)
    authority = tls.ensure_ca(tmp_path / "tls")
    certificate = tls.ensure_certificate(authority, tmp_path / "tls", "edge", ["127.0.0.1", "localhost"])
    text, argv = mesh_config(tmp_path / "tls-mesh", certificate)
    await edge.check_config(argv)
    assert re.search(r"listen 127\.0\.0\.1:\d+ ssl http2;", text)  # HTTPS: HTTP/2 and HTTP/1.1 by ALPN
    assert f'ssl_certificate "{certificate.certificate}";' in text


async def test_a_config_nginx_refuses_fails_with_its_reason(tmp_path) -> None:
    _, argv = mesh_config(tmp_path)
    config = Path(argv[-1])
    config.write_text(
        config.read_text().replace("client_header_timeout 20000ms;", "client_header_timeout x;")
    )
    with pytest.raises(edge.EdgeError, match="invalid value"):
        await edge.check_config(argv)


def test_the_body_cap_is_the_upload_cap(tmp_path) -> None:
    validator = ValidatorSettings()
    largest = max(validator.validator_face_max_bytes, validator.validator_voice_max_bytes)
    text, _ = mesh_config(tmp_path)
    caps = [int(v) for v in re.findall(r"client_max_body_size (\d+);", text)]
    # HTTP: the upload plus its multipart framing; gRPC: room for the validator to answer first.
    assert caps[0] == largest + 64 * 1024
    assert caps[1] > caps[0]


def test_every_public_service_is_routed_to_its_own_backend_and_nothing_else(tmp_path) -> None:
    grpc_port = free_port_block()
    mesh = MeshSettings(grpc_port=grpc_port, http_port=free_port())
    text = edge.render(edge.config_for_mesh(mesh, edge.EdgeSettings(), tmp_path, None))
    public = {
        service.full_name
        for module in PUBLIC_PROTO_MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    routed = dict(re.findall(r"location /([\w.]+)/ \{\s+grpc_pass grpc://(\w+);", text))
    upstreams = dict(re.findall(r"upstream (\w+) \{\s+server ([\d.:]+);", text))
    expected_ports = {
        "vidsynth.v1.SessionService": grpc_port + 1,
        "vidsynth.v1.ValidatorService": grpc_port + 2,
        "vidsynth.v1.StageRunnerService": grpc_port + 3,
        "vidsynth.v1.ProgressService": grpc_port + 4,
        "vidsynth.v1.CleanupService": grpc_port + 5,
    }
    assert public == set(expected_ports)
    for service, port in expected_ports.items():
        assert upstreams[routed[service]] == f"127.0.0.1:{port}", service
    for service in (
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        assert upstreams[routed[service]] == f"127.0.0.1:{grpc_port + 6}"
    assert set(routed) == {
        *expected_ports,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert "internal" not in " ".join(routed)


def test_address_overrides_move_the_backends(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDSYNTH_PROGRESS_ADDR", "10.1.2.3:7000")
    mesh = MeshSettings(grpc_port=free_port_block(), http_port=free_port())
    text = edge.render(edge.config_for_mesh(mesh, edge.EdgeSettings(), tmp_path, None))
    assert re.search(r"upstream grpc_progress \{\s+server 10\.1\.2\.3:7000;", text)


def run_up(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidsynth.cli",
            "up",
            "--data-dir",
            str(tmp_path / "var"),
            "--http-port",
            str(free_port()),
            "--grpc-port",
            str(free_port_block()),
            *args,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - started


def test_up_without_nginx_fails_at_once_naming_the_debian_package(tmp_path) -> None:
    result, seconds = run_up(tmp_path, {"VIDSYNTH_EDGE_NGINX": "nginx-that-is-not-installed"})
    assert result.returncode == 1
    assert "is not installed" in result.stdout and "Debian package `nginx`" in result.stdout
    assert "[up] pids:" not in result.stdout  # nothing was started
    assert seconds < 20


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {
                "VIDSYNTH_EDGE_TLS_CERT_FILE": "/no/such/cert.pem",
                "VIDSYNTH_EDGE_TLS_KEY_FILE": "/no/such/key.pem",
            },
            "cannot read the TLS certificate /no/such/cert.pem",
        ),
        ({"VIDSYNTH_EDGE_TLS_CERT_FILE": "/etc/hostname"}, "set both VIDSYNTH_EDGE_TLS_CERT_FILE"),
    ],
)
def test_certificate_settings_that_point_nowhere_fail_at_start(tmp_path, env, message) -> None:
    result, _ = run_up(tmp_path, env, "--tls")
    assert result.returncode == 1
    assert message in result.stdout
    assert "[up] pids:" not in result.stdout
