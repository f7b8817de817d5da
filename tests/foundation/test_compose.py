"""docker-compose.yml is valid and describes the whole mesh (no Docker engine runs here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

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
        "redis",
        "clamav",
        "jaeger",  # only with --profile tracing
    }


def test_every_mesh_service_has_a_grpc_healthcheck() -> None:
    rendered = _compose("config").stdout
    for port in range(50051, 50056):
        assert f"127.0.0.1:{port}" in rendered
    assert rendered.count("libs.common.healthcheck") == 5
    assert "8080:8080" in rendered or "published: 8080" in rendered


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
    assert traced["services"]["jaeger"]["ports"] == [{"published": 16686, "target": 16686}]
