"""The web page in a real browser: Debian's chromium driven by playwright-core (Node)
against a real `vidsynth up` mesh in simulation mode.

The Node script (page_test.mjs) does the clicking; this module starts the mesh, hands it
the samples, and checks what it observed (`vidsynth up` runs clamd on the project's test
signatures). Screenshots land in test-artifacts/web/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WEB_TESTS = Path(__file__).parent
SAMPLES = ROOT / "samples"
ARTIFACTS = ROOT / "test-artifacts" / "web"
NODE_TIMEOUT_SECONDS = 300


def sample(*patterns: str) -> Path:
    for pattern in patterns:
        found = sorted(SAMPLES.glob(pattern))
        if found:
            return found[0]
    raise AssertionError(f"no sample matching {patterns} in {SAMPLES}")


@pytest.fixture(params=["http", "https"])
def mesh(request, tmp_path):
    process = MeshProcess(
        tmp_path / "var",
        tls=request.param == "https",
        extra_env={
            "VIDSYNTH_PROCESSING_MODE": "simulation",
            # Long enough per stage that the test can kill the gateway and cancel mid-job.
            "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "2.0",
            # Stream tokens expire before the gateway is killed, so the page's reconnect
            # usually needs a fresh token (?after=) rather than the browser's own retry.
            "VIDSYNTH_STREAM_TOKEN_TTL_SECONDS": "10",
            # One job at a time, so the page's job queues behind another user's.
            "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS": "1",
            # The page's own requests (files, polls, uploads) must not trip the limiter.
            "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "500",
            "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "200",
        },
    )
    try:
        process.wait_up(timeout=120)
        yield process
    finally:
        process.stop()


def spki_pin(certificate: Path) -> str:
    """What chromium's --ignore-certificate-errors-spki-list takes: base64(SHA-256(SPKI))."""
    public_key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def run_page_test(mesh: MeshProcess, tmp_path: Path) -> tuple[int, dict, str]:
    bad = tmp_path / "holiday-photo.jpg"
    bad.write_text("This is a plain text file that only pretends to be a photo.\n" * 20)
    policy = httpx.get(
        f"{mesh.url}/v1/upload-policy", headers=bearer("alice"), timeout=30, verify=mesh.verify
    ).json()
    face_cap = next(k["max_bytes"] for k in policy["kinds"] if k["kind"] == "face")
    big = tmp_path / "huge-photo.jpg"
    with big.open("wb") as handle:
        handle.truncate(face_cap + 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()  # Only this run's screenshots, so a failure shot is never an old one.
    env = {
        **os.environ,
        "BASE_URL": mesh.url,
        "API_KEY": API_KEYS["alice"],
        "OTHER_API_KEY": API_KEYS["bob"],
        "FACE_FILE": str(sample("*face*.jp*g", "*portrait*.jp*g", "*astronaut*.jp*g", "*.jp*g", "*.png")),
        "VOICE_FILE": str(sample("*voice*.wav", "*.wav", "*.mp3", "*.ogg")),
        "BAD_FILE": str(bad),
        "BIG_FILE": str(big),
        "ARTIFACTS": str(ARTIFACTS),
        "USER_DATA_DIR": str(tmp_path / "chromium-profile"),
        "GATEWAY_PID": str(mesh.pids()["gateway"]),
    }
    if mesh.tls:
        env["NODE_EXTRA_CA_CERTS"] = str(mesh.ca_file)  # Node's own fetch calls
        env["TRUSTED_SPKI"] = spki_pin(mesh.ca_file.with_name("edge.pem"))
    completed = subprocess.run(
        ["node", str(WEB_TESTS / "page_test.mjs")],
        cwd=WEB_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT ")) if lines else {}
    log = completed.stdout[-6000:] + completed.stderr[-3000:]
    return completed.returncode, result, log


# Mesh start-up plus two simulated jobs; generous for a loaded 2-core machine.
@pytest.mark.timeout(NODE_TIMEOUT_SECONDS + 180)
def test_page_uploads_runs_resumes_plays_and_cancels(mesh, tmp_path):
    code, result, log = run_page_test(mesh, tmp_path)
    assert code == 0 and result.get("ok"), f"{result.get('error')}\n{log}\nmesh:\n{mesh.output()[-3000:]}"
    steps = {step["name"]: step for step in result["steps"]}
    (ARTIFACTS / "result.json").write_text(json.dumps(result, indent=2))

    # Over TLS the page is a secure context served over HTTP/2 (ALPN); plain HTTP is HTTP/1.1.
    assert steps["page loaded"]["protocol"] == ("h2" if mesh.tls else "http/1.1")
    assert steps["page loaded"]["secure"] is True  # loopback http counts as secure too

    assert "API key" in steps["wrong key refused"]["text"]
    assert "did not accept this key" in steps["wrong key refused"]["keyStatus"]
    keys = steps["key storage"]
    assert "for this tab only" in keys["tabOnly"]["status"] and not keys["tabOnly"]["remember"]
    assert keys["inOtherTab"]["status"] == "No key saved yet."
    assert "remembered on this device" in keys["inLaterTab"]["status"]
    assert "largest accepted" in steps["oversized file refused in the browser"]["text"]
    refusal = steps["refused upload shown"]
    # The validator refuses by detected content: text is not an accepted image type.
    assert refusal["code"] in ("FILE_TYPE_NOT_ALLOWED", "FILE_CONTENT_MISMATCH")
    assert refusal["text"].strip()

    completed = steps["job 1 completed"]
    assert any(text.startswith("Position in the queue: ") for text in completed["queueSeen"])
    assert completed["overallSteps"] >= 3
    assert completed["stageBarsMoved"] >= 3
    assert all(stage["status"] in ("completed", "skipped") for stage in completed["stages"])
    assert all(stage["value"] == 100 for stage in completed["stages"] if stage["status"] == "completed")
    if "gateway killed mid-job" in steps:
        assert completed["stream"]["reconnects"] >= 1

    video = steps["video playable"]["video"]
    assert video["readyState"] >= 1
    assert video["duration"] > 0
    assert video["width"] > 0

    assert "Cancelled" in steps["job 2 cancelled"]["status"]
    assert steps["phone width fits"]["overflow"] <= 1
    for name in ("01-refused-upload", "04-completed", "05-cancelled", "06-phone-390"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
