"""The jobs routes of the gateway over HTTP: 202 + Idempotency-Key, reads, cancel,
downloads with Range requests and content types, capabilities, problem+json errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.support.identities import bearer


@pytest.fixture
async def http(start_mesh):
    async def open_client(**overrides):
        mesh = await start_mesh(**overrides)
        app = create_app(
            mesh.settings,
            GatewaySettings(gateway_rate_limit_per_second=10_000, gateway_rate_limit_burst=10_000),
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        clients.append((client, app))
        return mesh, client

    clients: list = []
    yield open_client
    for client, app in clients:
        await client.aclose()
        await app.state.gateway.close()


async def wait_state(client: httpx.AsyncClient, job_id: str, states: set[str], user: str = "alice") -> dict:
    for _ in range(1200):
        body = (await client.get(f"/v1/jobs/{job_id}", headers=bearer(user))).json()
        if body["state"] in states:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job stuck: {body}")


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_create_read_download(http):
    mesh, client = await http()
    session_id = await mesh.ready_session()
    body = {"script_text": "Hello from the gateway.", "options": {"size": 128}}
    created = await client.post(
        f"/v1/sessions/{session_id}/jobs", json=body, headers={**bearer("alice"), "Idempotency-Key": "abc-1"}
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["state"] == "queued" and created.headers["location"] == f"/v1/jobs/{job['job_id']}"
    again = await client.post(
        f"/v1/sessions/{session_id}/jobs", json=body, headers={**bearer("alice"), "Idempotency-Key": "abc-1"}
    )
    assert again.status_code == 202 and again.json()["job_id"] == job["job_id"]
    conflict = await client.post(
        f"/v1/sessions/{session_id}/jobs",
        json={"script_text": "Other words."},
        headers={**bearer("alice"), "Idempotency-Key": "abc-1"},
    )
    assert_problem(conflict, 409, "IDEMPOTENCY_CONFLICT")

    done = await wait_state(client, job["job_id"], {"completed", "failed"})
    assert done["state"] == "completed" and [s["status"] for s in done["stages"]] == ["completed"] * 5
    sizes = {o["name"]: o["size_bytes"] for o in done["outputs"]}

    video_url = f"/v1/jobs/{job['job_id']}/outputs/video"
    full = await client.get(video_url, headers=bearer("alice"))
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert len(full.content) == sizes["video"]
    part = await client.get(video_url, headers={**bearer("alice"), "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{sizes['video']}"
    # Range errors are problems with a code like every other error (issue 15, item 4).
    beyond = await client.get(video_url, headers={**bearer("alice"), "Range": f"bytes={sizes['video']}-"})
    assert_problem(beyond, 416, "RANGE_NOT_SATISFIABLE")
    assert beyond.headers["content-range"] == f"bytes */{sizes['video']}"
    # A malformed Range is ignored (RFC 9110 section 14.2): the whole file.
    ignored = await client.get(video_url, headers={**bearer("alice"), "Range": "bytes=50-10"})
    assert ignored.status_code == 200 and ignored.content == full.content
    thumbnail = await client.get(f"/v1/jobs/{job['job_id']}/outputs/thumbnail", headers=bearer("alice"))
    assert thumbnail.headers["content-type"] == "image/jpeg" and thumbnail.content[:2] == b"\xff\xd8"
    script = await client.get(f"/v1/jobs/{job['job_id']}/outputs/script", headers=bearer("alice"))
    assert script.headers["content-type"].startswith("text/plain") and "gateway" in script.text
    audio = await client.get(f"/v1/jobs/{job['job_id']}/outputs/audio", headers=bearer("alice"))
    assert audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"

    # Output names are an enum of the API: an unknown one is a bad request, a known one the
    # job did not produce is not found.
    unknown = await client.get(f"/v1/jobs/{job['job_id']}/outputs/nope", headers=bearer("alice"))
    assert_problem(unknown, 400, "INVALID_ARGUMENT")
    assert [e["field"] for e in unknown.json()["errors"]] == ["name"]
    assert_problem(
        await client.get(f"/v1/jobs/{job['job_id']}/outputs/captions_srt", headers=bearer("alice")),
        404,
        "OUTPUT_NOT_FOUND",
    )
    assert_problem(await client.get(video_url, headers=bearer("bob")), 404, "JOB_NOT_FOUND")
    assert_problem(await client.get(f"/v1/jobs/{job['job_id']}", headers=bearer("bob")), 404, "JOB_NOT_FOUND")
    assert_problem(await client.get(video_url), 401, "UNAUTHENTICATED")
    assert_problem(
        await client.post(f"/v1/jobs/{job['job_id']}/cancel", headers=bearer("alice")),
        409,
        "JOB_NOT_CANCELLABLE",
    )
    listed = await client.get(f"/v1/sessions/{session_id}/jobs", headers=bearer("alice"))
    assert [j["job_id"] for j in listed.json()["jobs"]] == [job["job_id"]]


async def test_cancel_and_errors_over_http(http):
    mesh, client = await http(stage_runner_simulation_seconds=30.0)
    session_id = await mesh.ready_session()
    created = await client.post(
        f"/v1/sessions/{session_id}/jobs", json={"script_text": "Hi."}, headers=bearer("alice")
    )
    job_id = created.json()["job_id"]
    await wait_state(client, job_id, {"running"})
    cancelled = await client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer("alice"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert_problem(
        await client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer("bob")), 404, "JOB_NOT_FOUND"
    )

    empty = await mesh.new_session()
    assert_problem(
        await client.post(f"/v1/sessions/{empty}/jobs", json={"script_text": "Hi."}, headers=bearer("alice")),
        409,
        "INVALID_SESSION_STATE",
    )
    assert_problem(
        await client.post(
            f"/v1/sessions/{session_id}/jobs", json={"script_text": "Hi."}, headers=bearer("bob")
        ),
        404,
        "SESSION_NOT_FOUND",
    )
    assert_problem(
        await client.post(
            f"/v1/sessions/{session_id}/jobs",
            json={"script_text": "Hi.", "extra": 1},
            headers=bearer("alice"),
        ),
        400,
        "INVALID_ARGUMENT",
    )
    assert_problem(
        await client.post(f"/v1/sessions/{session_id}/jobs", json={}, headers=bearer("alice")),
        400,
        "INVALID_ARGUMENT",
    )
    assert_problem(
        await client.post(
            f"/v1/sessions/{session_id}/jobs",
            json={"script_text": "Hi.", "webhook_url": "http://x.test/"},
            headers=bearer("alice"),
        ),
        400,
        "WEBHOOK_URL_NOT_ALLOWED",
    )
    assert_problem(
        await client.post(
            f"/v1/sessions/{session_id}/jobs", json={"script_text": "x" * 20_001}, headers=bearer("alice")
        ),
        422,
        "SCRIPT_TOO_LONG",
    )
    assert_problem(await client.get("/v1/jobs/not-a-job", headers=bearer("alice")), 400, "INVALID_ID")


async def test_queue_full_over_http(http):
    mesh, client = await http(
        stage_runner_max_running_jobs=1, stage_runner_max_queued_jobs=1, stage_runner_simulation_seconds=30.0
    )
    job_ids = []
    for _ in range(2):
        session_id = await mesh.ready_session()
        response = await client.post(
            f"/v1/sessions/{session_id}/jobs", json={"script_text": "Hi."}, headers=bearer("alice")
        )
        job_ids.append(response.json()["job_id"])
    refused = await client.post(
        f"/v1/sessions/{await mesh.ready_session()}/jobs",
        json={"script_text": "Hi."},
        headers=bearer("alice"),
    )
    assert_problem(refused, 429, "QUEUE_FULL")
    assert int(refused.headers["retry-after"]) >= 5
    for job_id in reversed(job_ids):
        await client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer("alice"))


async def test_one_users_share_of_the_queue_over_http(http):
    mesh, client = await http(
        stage_runner_max_running_jobs=1,
        stage_runner_max_queued_jobs_per_user=1,
        stage_runner_simulation_seconds=30.0,
    )
    job_ids = []
    for _ in range(2):  # one runs, one waits: alice's share of the waiting room
        session_id = await mesh.ready_session("alice")
        response = await client.post(
            f"/v1/sessions/{session_id}/jobs", json={"script_text": "Hi."}, headers=bearer("alice")
        )
        job_ids.append(response.json()["job_id"])
    refused = await client.post(
        f"/v1/sessions/{await mesh.ready_session('alice')}/jobs",
        json={"script_text": "Hi."},
        headers=bearer("alice"),
    )
    assert_problem(refused, 429, "USER_JOB_LIMIT_REACHED")
    assert int(refused.headers["retry-after"]) >= 5 and refused.json()["retry_after"] >= 5
    # Bob's job is accepted, and goes before alice's waiting one.
    bob = await client.post(
        f"/v1/sessions/{await mesh.ready_session('bob')}/jobs",
        json={"script_text": "Hi."},
        headers=bearer("bob"),
    )
    assert bob.status_code == 202 and bob.json()["queue_position"] == 1
    alice_waiting = (await client.get(f"/v1/jobs/{job_ids[1]}", headers=bearer("alice"))).json()
    assert alice_waiting["queue_position"] == 2
    await client.post(f"/v1/jobs/{bob.json()['job_id']}/cancel", headers=bearer("bob"))
    for job_id in reversed(job_ids):
        await client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer("alice"))


async def test_capabilities_mode_and_scripts(http):
    mesh, client = await http()
    caps = await client.get("/v1/capabilities?refresh=true", headers=bearer("alice"))
    assert caps.status_code == 200
    body = caps.json()
    assert body["mode"] == "simulation" and {s["stage"] for s in body["stages"]} == {
        "script",
        "voice",
        "face",
        "animate",
        "enhance",
        "assemble",
    }
    assert {b["name"]: b["kind"] for b in body["backends"]}["sadtalker"] == "external"
    assert_problem(
        await client.put("/v1/capabilities/mode", json={"mode": "production"}, headers=bearer("alice")),
        403,
        "PERMISSION_DENIED",
    )
    switched = await client.put("/v1/capabilities/mode", json={"mode": "auto"}, headers=bearer("root"))
    assert switched.status_code == 200 and switched.json()["mode"] == "auto"
    assert_problem(
        await client.post("/v1/scripts/generate", json={"topic": "owls"}, headers=bearer("alice")),
        503,
        "STAGE_UNAVAILABLE",
    )
    session_id = await mesh.ready_session()
    estimate = await client.post(
        f"/v1/sessions/{session_id}/jobs:estimate",
        json={"script_text": "one two three"},
        headers=bearer("alice"),
    )
    assert estimate.status_code == 200 and estimate.json()["total_seconds"] > 0


async def test_list_jobs_pages_over_http_with_opaque_tokens(http):
    """The gateway passes ListJobs' AIP-158 tokens through: each job once, oldest first."""
    mesh, client = await http()
    session_id = await mesh.ready_session()
    made = []
    for _ in range(3):
        job = await mesh.start(session_id)
        made.append(job.job_id)
        await mesh.wait_done(job.job_id)
    url = f"/v1/sessions/{session_id}/jobs"
    seen, tokens, token = [], [], ""
    while True:
        page = await client.get(url, params={"page_size": 2, "page_token": token}, headers=bearer("alice"))
        assert page.status_code == 200, page.text
        seen += [j["job_id"] for j in page.json()["jobs"]]
        token = page.json()["next_page_token"]
        if not token:
            break
        tokens.append(token)
    assert seen == made
    assert len(tokens) == 1 and not tokens[0].isdigit()
    for bad in ("2", tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB")):
        refused = await client.get(url, params={"page_token": bad}, headers=bearer("alice"))
        assert_problem(refused, 400, "INVALID_ARGUMENT")
        assert [e["field"] for e in refused.json()["errors"]] == ["page_token"]
