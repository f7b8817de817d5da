"""The gateway reads every setting it uses once, when its app is built: a bad one stops the
process at boot with a line naming it, instead of failing the first request that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pydantic
import pytest

from libs.common.settings import GATEWAY_HTTP_PORT_OFFSET
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from tests.support.identities import mesh_env
from tests.support.ports import free_port_block

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_SECONDS = 60.0


def gateway_env(tmp_path, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_DATA_DIR": str(tmp_path / "var"),
        "VIDSYNTH_GRPC_PORT": str(port),
        "VIDSYNTH_HTTP_PORT": str(port + GATEWAY_HTTP_PORT_OFFSET),
        **extra,
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # Read by /metrics and /v1/health only: before, the gateway served and those failed.
        ("VIDSYNTH_METRICS_PORT", "-5"),
        ("VIDSYNTH_GATEWAY_RATE_LIMIT_BURST", "0"),
        ("VIDSYNTH_STREAM_TOKEN_TTL_SECONDS", "1"),
    ],
)
def test_a_bad_setting_stops_the_gateway_process_before_it_serves(tmp_path, variable, value):
    port = free_port_block()
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway"],
        env=gateway_env(tmp_path, port, **{variable: value}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("vidsynth gateway: refusing to start: ")
    assert variable in last_line
    assert "Traceback" not in result.stderr
    assert "gateway.starting" not in result.stderr + result.stdout


def test_with_good_settings_the_same_process_serves(tmp_path):
    """The control: the environment above, without the bad setting, serves /healthz."""
    port = free_port_block()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        env=gateway_env(tmp_path, port),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert process.poll() is None, "the gateway exited"
            try:
                response = httpx.get(f"http://127.0.0.1:{port + GATEWAY_HTTP_PORT_OFFSET}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway never served"
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_app_is_built_with_every_setting_read(mesh_settings, monkeypatch):
    for variable in ("VIDSYNTH_METRICS_PORT", "VIDSYNTH_STREAM_TOKEN_TTL_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    state = create_app(mesh_settings).state.gateway
    assert isinstance(state, GatewayState)
    assert state.metrics_settings.metrics_port == -1 and state.stream_tokens.ttl_seconds == 300
    monkeypatch.setenv("VIDSYNTH_METRICS_PORT", "-5")
    with pytest.raises(pydantic.ValidationError):
        create_app(mesh_settings)
