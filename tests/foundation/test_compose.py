"""docker-compose.yml is valid and describes the whole mesh behind its nginx edge (no
Docker engine runs here: the edge's config is checked by this machine's nginx instead)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from libs.common.settings import SERVICE_PORT_OFFSETS
from vidsynth.cli.edge import COMPOSE_CONFIG_FILE, nginx_binary

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "VIDSYNTH_API_KEYS": "key=alice", "VIDSYNTH_MESH_TOKEN": "token"}


def _compose(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )


def test_compose_file_is_valid_and_runs_every_service() -> None:
    result = _compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "session",
        "validator",
        "stage_runner",
        "progress",
        "cleanup",
        "gateway",
        "edge",
        "redis",
        "clamav",
        "jaeger",  # only with --profile tracing
    }


def rendered_services() -> dict[str, dict]:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def published(service: dict) -> set[int]:
    """Host ports, from `{published: ...}` or `[ip:]host:container[/proto]` spellings."""
    return {
        int(p["published"]) if isinstance(p, dict) else int(p.split("/")[0].split(":")[-2])
        for p in service.get("ports", [])
    }


def test_every_mesh_service_has_a_grpc_healthcheck_behind_the_edge() -> None:
    services = rendered_services()
    for name, offset in SERVICE_PORT_OFFSETS.items():
        assert services[name]["healthcheck"]["test"][-1] == f"127.0.0.1:{50051 + offset}", name
    # Only the edge is published: HTTP on 8080 and the one public gRPC address on 50051 (the
    # optional trace viewer's UI, on the host's loopback only, is no way into the mesh).
    assert {name for name, service in services.items() if published(service)} == {"edge", "jaeger"}
    assert [str(p).startswith("127.0.0.1:") for p in services["jaeger"]["ports"]] == [True]
    assert published(services["edge"]) == {8080, 50051}


def test_the_edge_routes_to_the_addresses_the_services_use() -> None:
    services = rendered_services()
    environment = services["gateway"]["environment"]
    text = COMPOSE_CONFIG_FILE.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s+server ([\w.:]+);", text))
    for name in SERVICE_PORT_OFFSETS:
        assert upstreams[f"grpc_{name}"] == environment[f"VIDSYNTH_{name.upper()}_ADDR"], name
    assert upstreams["gateway_grpc"] == environment["VIDSYNTH_GATEWAY_ADDR"]
    assert upstreams["gateway_http"] == f"gateway:{environment['VIDSYNTH_HTTP_PORT']}"
    edge_address = services["edge"]["networks"]["default"]["ipv4_address"]
    assert environment["VIDSYNTH_GATEWAY_TRUSTED_PROXIES"] == edge_address
    mount = next(v for v in services["edge"]["volumes"] if "nginx.compose.conf" in str(v))
    assert (
        "/etc/vidsynth/nginx.conf" in str(mount)
        and services["edge"]["command"][-1] == "/etc/vidsynth/nginx.conf"
    )


def test_the_edge_config_is_rendered_from_the_template_and_nginx_accepts_it(tmp_path) -> None:
    assert (
        subprocess.run([sys.executable, "-m", "scripts.gen_edge_config", "--check"], cwd=ROOT).returncode == 0
    ), "run `python -m scripts.gen_edge_config`"
    # The compose names and paths do not exist here: point them at this machine, then let nginx judge.
    text = COMPOSE_CONFIG_FILE.read_text()
    text = re.sub(
        r"server (session|validator|stage_runner|progress|cleanup|gateway):", "server 127.0.0.1:", text
    )
    text = (
        text.replace("user nginx;", "")
        .replace("/var/cache/nginx", str(tmp_path))
        .replace("/var/run/", f"{tmp_path}/")
    )
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    check = subprocess.run(
        [
            nginx_binary(),
            "-t",
            "-q",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_compose_refuses_to_start_without_secrets() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("VIDSYNTH_API_KEYS", "VIDSYNTH_MESH_TOKEN")}
    result = _compose("config", env=env)
    assert result.returncode != 0
    assert "VIDSYNTH_API_KEYS" in result.stderr or "VIDSYNTH_MESH_TOKEN" in result.stderr


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2
    assert "\nUSER vidsynth" in dockerfile


def test_tracing_is_an_optional_profile_and_off_unless_an_endpoint_is_given() -> None:
    rendered = yaml.safe_load(_compose("config").stdout)
    assert rendered["services"]["jaeger"]["profiles"] == ["tracing"]
    assert all(
        rendered["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
        for name in ("session", "validator", "stage_runner", "progress", "cleanup", "gateway")
    )
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}
    traced = yaml.safe_load(_compose("--profile", "tracing", "config", env=env).stdout)
    assert traced["services"]["gateway"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert published(traced["services"]["jaeger"]) == {16686}
