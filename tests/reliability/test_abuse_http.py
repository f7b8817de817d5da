"""Issue 11, item 4 over HTTP: hostile ids and names, other users' ids on every route,
oversized headers, slow-drip uploads, stream-token misuse, private webhook targets."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from libs.common.errors import CATALOG
from libs.common.settings import MeshSettings
from services.gateway.stream_tokens import StreamTokenSettings, signer_from_settings
from tests.reliability.conftest import UPLOAD_IDLE_SECONDS, WEBHOOK_HOST
from tests.reliability.owned import HOSTILE_IDS, HOSTILE_NAMES, make_owned
from tests.support.identities import MESH_TOKEN, bearer

pytestmark = pytest.mark.slow
REFUSALS = {
    "INVALID_ID",
    "NOT_FOUND",
    "SESSION_NOT_FOUND",
    "JOB_NOT_FOUND",
    "OUTPUT_NOT_FOUND",
    "INVALID_ARGUMENT",
}


@pytest.fixture(scope="module")
def owned(mesh):
    return make_owned(mesh, "alice")


def routes(session_id: str, job_id: str, name: str = "video") -> list[tuple[str, str, dict]]:
    """Every route that takes an id or a name, with a body where it needs one."""
    job_body = {"json": {"script_text": "hi"}}
    return [
        ("GET", f"/v1/sessions/{session_id}", {}),
        ("DELETE", f"/v1/sessions/{session_id}", {}),
        ("POST", f"/v1/sessions/{session_id}/assets/face", {"files": {"file": ("a.jpg", b"x")}}),
        ("POST", f"/v1/sessions/{session_id}/jobs", job_body),
        ("POST", f"/v1/sessions/{session_id}/jobs:estimate", job_body),
        ("GET", f"/v1/sessions/{session_id}/jobs", {}),
        ("GET", f"/v1/sessions/{session_id}/events", {}),
        ("POST", f"/v1/sessions/{session_id}/stream-token", {}),
        ("GET", f"/v1/jobs/{job_id}", {}),
        ("POST", f"/v1/jobs/{job_id}/cancel", {}),
        ("GET", f"/v1/jobs/{job_id}/outputs/{name}", {}),
    ]


def assert_refused(response: httpx.Response, allowed: set[str]) -> None:
    assert 400 <= response.status_code < 500, (response.request.url, response.status_code, response.text)
    body = response.json()
    assert body["code"] in allowed and body["code"] in CATALOG, (response.request.url, body)


def test_hostile_ids_and_names_are_refused_on_every_route(ready_mesh, owned):
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("alice"), timeout=30, follow_redirects=True
    ) as http:
        for hostile in HOSTILE_IDS:
            for method, path, kwargs in routes(hostile, hostile):
                assert_refused(http.request(method, path, **kwargs), REFUSALS)
        for name in HOSTILE_NAMES:
            response = http.get(f"/v1/jobs/{owned.job_id}/outputs/{name}")
            assert_refused(response, REFUSALS)
        for kind in ["../face", "face;ls", "FACE", "%2e%2e"]:
            response = http.post(f"/v1/sessions/{owned.session_id}/assets/{kind}", content=b"x")
            assert_refused(response, REFUSALS)


def test_hostile_display_names_and_filenames_stay_data(ready_mesh, owned):
    hostile = "<script>alert(1)</script>'; DROP TABLE sessions; -- ../../etc"
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("alice"), timeout=30, follow_redirects=True
    ) as http:
        created = http.post("/v1/sessions", json={"display_name": hostile})
        if created.status_code == 201:
            assert created.json()["display_name"] == hostile
            assert created.headers["content-type"].startswith("application/json")
        else:
            assert_refused(created, {"INVALID_ARGUMENT"})
    sessions_root = ready_mesh.data_dir / "sessions"
    outside = [p for p in ready_mesh.data_dir.rglob("*passwd*")] + [p for p in sessions_root.rglob("*..*")]
    assert not outside, outside


def test_other_users_ids_answer_not_found_on_every_route(ready_mesh, owned):
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("bob"), timeout=30, follow_redirects=True
    ) as http:
        for method, path, kwargs in routes(owned.session_id, owned.job_id):
            response = http.request(method, path, **kwargs)
            assert_refused(response, {"SESSION_NOT_FOUND", "JOB_NOT_FOUND", "NOT_FOUND"})
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("alice"), timeout=30, follow_redirects=True
    ) as http:
        assert http.get(f"/v1/sessions/{owned.session_id}").status_code == 200
        assert http.get(f"/v1/jobs/{owned.job_id}").json()["state"] == "completed"


def test_oversized_headers_are_refused_and_the_gateway_stays_up(ready_mesh):
    with httpx.Client(base_url=ready_mesh.url, timeout=30) as http:
        assert http.get("/v1/sessions", headers={**bearer("alice"), "X-Fine": "a" * 8192}).status_code == 200
        for size in (256 * 1024, 1024 * 1024, 8 * 1024 * 1024):
            response = http.get("/v1/sessions", headers={**bearer("alice"), "X-Big": "a" * size})
            assert response.status_code == 431, (size, response.status_code)
            assert response.json()["code"] == "REQUEST_HEADERS_TOO_LARGE"
        assert http.get("/healthz").status_code == 200


def _spools(mesh, session_id: str) -> list:
    return list((mesh.data_dir / "sessions" / session_id).rglob(".upload-*"))


def test_slow_drip_upload_is_cut_and_its_spool_freed(ready_mesh):
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("alice"), timeout=30, follow_redirects=True
    ) as http:
        session_id = http.post("/v1/sessions", json={}).json()["session_id"]
    key = bearer("alice")["Authorization"]
    head = (
        f"POST /v1/sessions/{session_id}/assets/voice?filename=v.wav HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: {key}\r\nContent-Type: audio/wav\r\n"
        "Content-Length: 200000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", ready_mesh.http_port), timeout=60) as sock:
        sock.sendall(head + b"RIFF" + b"\0" * 2000)  # a beginning, then nothing more
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:  # the whole problem+json body
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    waited = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 504 " in status_line and b"DEADLINE_EXCEEDED" in answer, answer[:400]
    assert waited >= UPLOAD_IDLE_SECONDS
    deadline = time.monotonic() + 30
    while _spools(ready_mesh, session_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _spools(ready_mesh, session_id)


def test_stream_tokens_expired_forged_or_for_another_session_are_refused(ready_mesh, owned):
    signer = signer_from_settings(MeshSettings(mesh_token=MESH_TOKEN), StreamTokenSettings())
    expired, _ = signer.issue(owned.session_id, "alice", now=time.time() - 3600)
    with httpx.Client(base_url=ready_mesh.url, timeout=30) as http:
        other = http.post("/v1/sessions", json={}, headers=bearer("alice")).json()["session_id"]
        minted = http.post(f"/v1/sessions/{owned.session_id}/stream-token", headers=bearer("alice")).json()
        token = minted["token"]
        events = f"/v1/sessions/{owned.session_id}/events"
        # A live token replays the session's events (reconnects reuse it until it expires).
        for _ in range(2):
            replayed = http.get(events, params={"token": token, "until_terminal": "true"})
            assert replayed.status_code == 200 and "job.completed" in replayed.text
        refusals = [
            (events, expired),
            (f"/v1/sessions/{other}/events", token),
            (events, token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")),
            (events, "st1." + token.split(".", 1)[1][::-1]),
            (events, ""),
        ]
        for path, candidate in refusals:
            response = http.get(path, params={"token": candidate})
            assert response.status_code == 401 and response.json()["code"] in (
                "STREAM_TOKEN_INVALID",
                "UNAUTHENTICATED",
            ), (candidate, response.text)
        # A token bob minted cannot be had for alice's session at all.
        stolen = http.post(f"/v1/sessions/{owned.session_id}/stream-token", headers=bearer("bob"))
        assert_refused(stolen, {"SESSION_NOT_FOUND"})


PRIVATE_WEBHOOKS = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    f"http://{WEBHOOK_HOST}@127.0.0.1/hook",
    f"http://{WEBHOOK_HOST}.127.0.0.1.nip.io/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
]


def test_webhooks_aimed_at_private_addresses_are_refused(ready_mesh, owned):
    with httpx.Client(
        base_url=ready_mesh.url, headers=bearer("alice"), timeout=30, follow_redirects=True
    ) as http:
        for url in PRIVATE_WEBHOOKS:
            response = http.post(
                f"/v1/sessions/{owned.session_id}/jobs", json={"script_text": "hi", "webhook_url": url}
            )
            assert_refused(response, {"WEBHOOK_URL_NOT_ALLOWED"})


async def test_gateway_rate_limit_is_per_key(ready_mesh):
    """The front door's own bucket (burst lowered in-process; the mesh's is raised for load)."""
    from services.gateway.app import create_app
    from services.gateway.config import GatewaySettings

    settings = MeshSettings(
        grpc_port=ready_mesh.grpc_port,
        api_keys="alice-key-0123456789=alice,bob-key-0123456789=bob",
        mesh_token=MESH_TOKEN,
    )
    app = create_app(settings, GatewaySettings(gateway_rate_limit_per_second=1, gateway_rate_limit_burst=5))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        answers = await asyncio.gather(
            *(http.get("/v1/sessions", headers=bearer("alice")) for _ in range(12))
        )
        limited = [a for a in answers if a.status_code == 429]
        assert limited and all(a.json()["code"] == "RATE_LIMITED" for a in limited)
        assert all(float(a.headers["retry-after"]) > 0 for a in limited)
        assert (await http.get("/v1/sessions", headers=bearer("bob"))).status_code == 200
        await app.state.gateway.close()
