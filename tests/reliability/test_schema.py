"""Issue 18: schemathesis over the whole /openapi.json with every check finds nothing.

The schemathesis command line runs as a user would run it (`--checks all`, every phase,
every operation, the admin mode switch included) against a real `vidsynth up` mesh of its
own: its processing mode can only be changed by an admin and the run uses a user's key
(so the switch answers 403), and nothing it creates is shared with another test. The
script writer talks to a local stand-in of the Gemini API, so /v1/scripts/generate does
real work instead of answering 503. Progress streams end after a second on this mesh
(`VIDSYNTH_GATEWAY_STREAM_MAX_SECONDS`), so a fuzzer reading one gets a whole answer.

Generated ids rarely name anything, so the run also draws, part of the time, a real session
with both uploads and a real finished job (its downloads then answer 200, 206 or a Range
refusal, its cancel 409). tests/reliability/schemathesis.toml and schemathesis_hooks.py hold
the only allowances, each explained there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.media.fake_gemini import FakeGemini, answer
from tests.reliability.conftest import RELIABILITY_MESH_ENV, WEBHOOK_HOST
from tests.reliability.schemathesis_hooks import ALLOWED_WEBHOOK
from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXAMPLES_PER_OPERATION = 30
RUN_TIMEOUT_SECONDS = 1500
# Long enough for the longest script a prompt may ask for (trimmed for shorter ones).
SENTENCE = "Our new product turns a photo and a voice into a talking video in minutes. "
LONG_SCRIPT = SENTENCE * 200


@pytest.fixture(scope="module")
def fake_gemini():
    fake = FakeGemini(replies={"*": [answer(LONG_SCRIPT, "fake-gemini")]})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{port}/"
    yield fake
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def schema_mesh(tmp_path_factory, fake_gemini):
    mesh = MeshProcess(
        tmp_path_factory.mktemp("schema") / "var",
        extra_env={
            **RELIABILITY_MESH_ENV,
            "VIDSYNTH_GATEWAY_STREAM_MAX_SECONDS": "1",
            "VIDSYNTH_MEDIA_GEMINI_API_KEY": "fake-gemini-key",
            "VIDSYNTH_MEDIA_GEMINI_BASE_URL": fake_gemini.base_url,
        },
    )
    mesh.wait_up(120)
    yield mesh
    mesh.stop()


def ready_session_with_a_finished_job(url: str) -> tuple[str, str]:
    with httpx.Client(base_url=url, headers=bearer("alice"), timeout=60) as client:
        session_id = client.post("/v1/sessions", json={"display_name": "schemathesis"}).json()["session_id"]
        for kind, sample, content_type in [
            ("face", "portrait.jpg", "image/jpeg"),
            ("voice", "voice.wav", "audio/wav"),
        ]:
            data = (ROOT / "samples" / sample).read_bytes()
            uploaded = client.post(
                f"/v1/sessions/{session_id}/assets/{kind}", files={"file": (sample, data, content_type)}
            )
            assert uploaded.status_code == 201, uploaded.text
        job = client.post(f"/v1/sessions/{session_id}/jobs", json={"script_text": "Hello, fuzzer."}).json()
        deadline = time.monotonic() + 120
        while not (state := client.get(f"/v1/jobs/{job['job_id']}").json())["done"]:
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        assert state["state"] == "completed", state
    return session_id, job["job_id"]


def config_with_real_ids(path: Path, session_id: str, job_id: str) -> Path:
    """The checked-in configuration plus dictionaries of real ids, drawn part of the time."""
    extra = f"""
[dictionaries.ready_sessions]
values = ["{session_id}"]

[dictionaries.finished_jobs]
values = ["{job_id}"]

[parameters]
"path.session_id" = {{ dictionary = "ready_sessions", probability = 0.3 }}
"path.job_id" = {{ dictionary = "finished_jobs", probability = 0.5 }}
"""
    path.write_text((HERE / "schemathesis.toml").read_text() + extra)
    return path


def test_the_hooks_allow_the_meshes_webhook_host():
    assert ALLOWED_WEBHOOK.startswith(f"https://{WEBHOOK_HOST}/")


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 300)
def test_schemathesis_with_every_check_finds_nothing(schema_mesh, tmp_path):
    spec = httpx.get(f"{schema_mesh.url}/openapi.json", timeout=30).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    report = tmp_path / "schemathesis.json"
    config = config_with_real_ids(
        tmp_path / "schemathesis.toml", *ready_session_with_a_finished_job(schema_mesh.url)
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{schema_mesh.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {API_KEYS['alice']}",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "18",
            "--request-timeout",
            "30",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    output = completed.stdout[-20000:] + completed.stderr[-5000:]
    assert completed.returncode == 0, output
    assert f"Tested: {operations}" in completed.stdout, output
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in completed.stdout, output
    summary = json.loads(report.read_text())
    print(json.dumps(summary, indent=1)[:2000])
