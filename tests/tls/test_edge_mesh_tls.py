"""The edge's config under mesh TLS, checked by nginx itself (`nginx -t`): every backend
reached over TLS with the edge's client certificate, verifying the backend's identity;
without mesh TLS not one TLS directive towards the backends."""

from __future__ import annotations

import re
from pathlib import Path

from libs.common import tls
from libs.common.mesh_tls import MeshTlsSettings, load
from libs.common.settings import MeshSettings
from tests.support.ports import free_port, free_port_block
from vidsynth.cli import edge
from vidsynth.cli.mesh_certs import issue_development

HOSTS = ["127.0.0.1", "localhost"]
BACKENDS = {
    "vidsynth.v1.SessionService": "session.vidsynth.internal",
    "vidsynth.v1.ValidatorService": "validator.vidsynth.internal",
    "vidsynth.v1.StageRunnerService": "stage-runner.vidsynth.internal",
    "vidsynth.v1.ProgressService": "progress.vidsynth.internal",
    "vidsynth.v1.CleanupService": "cleanup.vidsynth.internal",
    "grpc.health.v1.Health": "gateway.vidsynth.internal",
    "grpc.reflection.v1.ServerReflection": "gateway.vidsynth.internal",
}


def render(tmp_path: Path, with_mesh_tls: bool) -> tuple[str, list[str], Path]:
    tls_dir = tmp_path / "tls"
    authority = tls.ensure_ca(tls_dir)
    certificate = tls.ensure_certificate(authority, tls_dir, "edge", HOSTS)
    identity = None
    if with_mesh_tls:
        directory = issue_development(authority, tls_dir, "vidsynth.internal", HOSTS)
        identity = load("edge", MeshTlsSettings(mesh_tls_ca_file=authority.path, mesh_tls_cert_dir=directory))
    grpc_port = free_port_block()
    mesh = MeshSettings(grpc_port=grpc_port, http_port=free_port(), gateway_http_port=grpc_port + 7)
    config = edge.config_for_mesh(mesh, edge.EdgeSettings(), tmp_path, certificate, identity)
    path = edge.write_config(config, edge.edge_dir(tmp_path))
    return path.read_text(), edge.nginx_argv(edge.nginx_binary(), path), tls_dir


async def test_with_mesh_tls_every_backend_is_reached_over_verified_mutual_tls(tmp_path) -> None:
    text, argv, tls_dir = render(tmp_path, with_mesh_tls=True)
    await edge.check_config(argv)
    for service, name in BACKENDS.items():
        block = re.search(rf"location /{re.escape(service)}/ \{{(.*?)\}}", text, re.S)
        assert block, service
        assert re.search(r"grpc_pass grpcs://\w+;", block.group(1)), block.group(1)
        assert f"grpc_ssl_name {name};" in block.group(1)
    for prefix in ("grpc", "proxy"):
        assert f'{prefix}_ssl_certificate "{tls_dir / "mesh" / "edge.pem"}";' in text
        assert f'{prefix}_ssl_certificate_key "{tls_dir / "mesh" / "edge-key.pem"}";' in text
        assert f'{prefix}_ssl_trusted_certificate "{tls_dir / "ca.pem"}";' in text
        assert f"{prefix}_ssl_verify on;" in text
    assert "proxy_ssl_name gateway.vidsynth.internal;" in text
    assert "proxy_pass http://" not in text and "grpc_pass grpc://" not in text
    assert text.count("proxy_pass https://gateway_http;") == 3


async def test_without_mesh_tls_the_backends_stay_plaintext(tmp_path) -> None:
    text, argv, _ = render(tmp_path, with_mesh_tls=False)
    await edge.check_config(argv)
    assert not re.search(r"(grpc|proxy)_ssl_", text)
    assert "grpcs://" not in text and "proxy_pass https://" not in text
    assert text.count("proxy_pass http://gateway_http;") == 3
