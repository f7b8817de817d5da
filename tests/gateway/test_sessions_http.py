"""The sessions routes over HTTP, and every error path of the gateway's front door."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools

import pytest

from libs.common import ids
from services.gateway.path_ids import malformed_id
from services.session.config import SessionSettings
from services.session.server import build
from tests.gateway.problems import assert_problem
from tests.session.helpers import FACE, VOICE, asset
from tests.support.fake_clock import FakeClock
from tests.support.identities import bearer, mesh_metadata
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import session_pb2 as pb

ALICE = bearer("alice")
BOB = bearer("bob")


async def create(client, headers=ALICE, **body) -> dict:
    response = await client.post("/v1/sessions", headers=headers, json=body or None)
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_get_list_delete(client, in_process_mesh):
    session = await create(client, display_name="demo")
    assert session["state"] == "created"
    assert session["display_name"] == "demo"
    assert session["assets"] == []
    assert session["active_job_id"] is None
    created = dt.datetime.fromisoformat(session["create_time"])
    expires = dt.datetime.fromisoformat(session["expire_time"])
    assert expires - created == dt.timedelta(hours=1)
    sid = session["session_id"]

    response = await client.get(f"/v1/sessions/{sid}", headers=ALICE)
    assert response.status_code == 200
    assert response.json()["session_id"] == sid

    bare = await client.post("/v1/sessions", headers=ALICE)  # no body at all is fine
    assert bare.status_code == 201
    assert bare.headers["location"] == f"/v1/sessions/{bare.json()['session_id']}"

    listed = await client.get("/v1/sessions", params={"page_size": 1}, headers=ALICE)
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["sessions"]) == 1
    assert page["next_page_token"]
    rest = await client.get("/v1/sessions", params={"page_token": page["next_page_token"]}, headers=ALICE)
    assert {s["session_id"] for s in page["sessions"] + rest.json()["sessions"]} == {
        sid,
        bare.json()["session_id"],
    }

    deleted = await client.delete(f"/v1/sessions/{sid}", headers=ALICE)
    assert deleted.status_code == 200
    assert deleted.json() == {"session_id": sid, "bytes_freed": 0}
    assert not (in_process_mesh.settings.sessions_dir / sid).exists()
    assert_problem(await client.get(f"/v1/sessions/{sid}", headers=ALICE), 404, "SESSION_NOT_FOUND")


async def test_assets_show_in_the_session_json(client, session_service):
    session = await create(client)
    async with session_service.channel() as channel:
        stub = session_internal_pb2_grpc.SessionInternalServiceStub(channel)
        for kind in (FACE, VOICE):
            await stub.RegisterAsset(
                session_internal_pb2.RegisterAssetRequest(
                    session_id=session["session_id"], asset=asset(kind)
                ),
                metadata=mesh_metadata("alice"),
            )
    body = (await client.get(f"/v1/sessions/{session['session_id']}", headers=ALICE)).json()
    assert body["state"] == "ready"
    assert [a["kind"] for a in body["assets"]] == ["face", "voice"]
    assert body["assets"][0]["content_type"] == "image/png"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_and_wrong_keys_are_401(client, headers):
    assert_problem(await client.post("/v1/sessions", headers=headers), 401, "UNAUTHENTICATED")
    assert_problem(await client.get("/v1/sessions", headers=headers), 401, "UNAUTHENTICATED")
    sid = ids.new_id("session")
    assert_problem(await client.get(f"/v1/sessions/{sid}", headers=headers), 401, "UNAUTHENTICATED")
    assert_problem(await client.delete(f"/v1/sessions/{sid}", headers=headers), 401, "UNAUTHENTICATED")


async def test_another_users_session_is_404(client):
    sid = (await create(client))["session_id"]
    assert_problem(await client.get(f"/v1/sessions/{sid}", headers=BOB), 404, "SESSION_NOT_FOUND")
    assert_problem(await client.delete(f"/v1/sessions/{sid}", headers=BOB), 404, "SESSION_NOT_FOUND")
    assert (await client.get("/v1/sessions", headers=BOB)).json()["sessions"] == []
    assert (await client.get(f"/v1/sessions/{sid}", headers=ALICE)).status_code == 200


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/sessions/not-an-id",
        "/v1/sessions/ses_123",
        "/v1/sessions/..%2F..%2Fetc%2Fpasswd",
        "/v1/sessions/%2e%2e",
        "/v1/sessions/ses_0123456789abcdef01234567%00",
        "/v1/sessions/ses_..%2F..%2Fvar",
        "/v1/sessions/..%5C..%5Cwindows",
        "/v1/sessions/job_0123456789abcdef01234567",
    ],
)
async def test_malformed_ids_and_traversal_are_400(client, raw_path):
    for method in ("GET", "DELETE"):
        request = client.build_request(method, "http://gateway.test", headers=ALICE)
        request.url = request.url.copy_with(raw_path=raw_path.encode())
        body = assert_problem(await client.send(request), 400, "INVALID_ID")
        assert body["errors"][0]["field"] == "session_id"


@pytest.mark.parametrize(
    "path",
    ["/v1/sessions/..", "/v1/sessions/../../etc/passwd", "/v1/jobs/x/outputs", "/v1/sessions/ses_x/events"],
)
def test_path_guard_sees_unnormalised_paths(path):
    # httpx normalises `..` segments before sending; a raw client (curl --path-as-is) does not.
    error = malformed_id(path)
    assert error is not None
    assert error.code == "INVALID_ID"


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/sessions/", "/healthz", "/v1/capabilities"])
def test_path_guard_leaves_other_paths_alone(path):
    assert malformed_id(path) is None
    assert malformed_id(f"/v1/sessions/{ids.new_id('session')}/assets/face") is None


async def test_malformed_json_is_400(client):
    response = await client.post(
        "/v1/sessions", headers={**ALICE, "Content-Type": "application/json"}, content=b'{"display_name": '
    )
    assert_problem(response, 400, "MALFORMED_JSON")


async def test_unknown_and_invalid_fields_are_400_with_violations(client):
    body = assert_problem(
        await client.post("/v1/sessions", headers=ALICE, json={"display_name": "a", "user_id": "bob"}),
        400,
        "INVALID_ARGUMENT",
    )
    assert body["errors"][0]["field"] == "user_id"
    body = assert_problem(
        await client.post("/v1/sessions", headers=ALICE, json={"display_name": "x" * 101}),
        400,
        "INVALID_ARGUMENT",
    )
    assert body["errors"][0]["field"] == "display_name"
    body = assert_problem(
        await client.post("/v1/sessions", headers=ALICE, json={"display_name": 7}), 400, "INVALID_ARGUMENT"
    )
    assert body["errors"][0]["field"] == "display_name"
    assert_problem(await client.post("/v1/sessions", headers=ALICE, json=[1, 2]), 400, "INVALID_ARGUMENT")
    body = assert_problem(
        await client.get("/v1/sessions", params={"page_size": "lots"}, headers=ALICE), 400, "INVALID_ARGUMENT"
    )
    assert body["errors"][0]["field"] == "page_size"
    assert_problem(
        await client.get("/v1/sessions", params={"page_token": "forged"}, headers=ALICE),
        400,
        "INVALID_ARGUMENT",
    )


async def test_non_json_body_is_415(client):
    response = await client.post(
        "/v1/sessions", headers={**ALICE, "Content-Type": "text/plain"}, content=b"display_name=x"
    )
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_oversize_bodies_are_413(client):
    big = {"display_name": "x" * 5000}
    assert_problem(await client.post("/v1/sessions", headers=ALICE, json=big), 413, "REQUEST_TOO_LARGE")

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    response = await client.post(
        "/v1/sessions", headers={**ALICE, "Content-Type": "application/json"}, content=chunks()
    )
    assert_problem(response, 413, "REQUEST_TOO_LARGE")


async def test_uploads_are_not_capped_by_the_json_body_limit(client):
    sid = ids.new_id("session")
    response = await client.post(f"/v1/sessions/{sid}/assets/face", headers=ALICE, content=b"x" * 10_000)
    assert response.status_code != 413


async def test_session_limit_is_429_with_retry_after(client):
    for _ in range(3):
        await create(client)
    response = await client.post("/v1/sessions", headers=ALICE)
    body = assert_problem(response, 429, "SESSION_LIMIT_REACHED")
    assert 1 <= int(response.headers["retry-after"]) <= 3600
    assert body["retry_after"] >= 1


async def test_concurrent_creates_through_the_gateway_respect_the_cap(client):
    responses = await asyncio.gather(*(client.post("/v1/sessions", headers=ALICE) for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [429] * 47
    assert {r.json()["code"] for r in responses if r.status_code == 429} == {"SESSION_LIMIT_REACHED"}


async def test_illegal_transition_is_409(client, session_service):
    session = await create(client)
    sid = session["session_id"]
    async with session_service.channel() as channel:
        stub = session_internal_pb2_grpc.SessionInternalServiceStub(channel)
        for kind in (FACE, VOICE):
            await stub.RegisterAsset(
                session_internal_pb2.RegisterAssetRequest(session_id=sid, asset=asset(kind)),
                metadata=mesh_metadata("alice"),
            )
        await stub.UpdateSessionState(
            session_internal_pb2.UpdateSessionStateRequest(
                session_id=sid, state=pb.SESSION_STATE_PROCESSING, job_id=ids.new_id("job")
            ),
            metadata=mesh_metadata("alice"),
        )
    assert (await client.get(f"/v1/sessions/{sid}", headers=ALICE)).json()["state"] == "processing"
    assert_problem(await client.delete(f"/v1/sessions/{sid}", headers=ALICE), 409, "INVALID_SESSION_STATE")
    forced = await client.delete(f"/v1/sessions/{sid}", params={"force": "true"}, headers=ALICE)
    assert forced.status_code == 200


async def test_unknown_route_and_method_are_problems(client):
    assert_problem(await client.get("/v1/nothing-here", headers=ALICE), 404, "NOT_FOUND")
    assert_problem(await client.put("/v1/sessions", headers=ALICE), 405, "METHOD_NOT_ALLOWED")


async def test_request_id_is_echoed(client):
    response = await client.get("/v1/sessions", headers={**ALICE, "X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


async def test_security_headers(client):
    for response in (
        await client.get("/v1/sessions", headers=ALICE),
        await client.get("/v1/sessions"),
        await client.get("/healthz"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "server" not in response.headers
    assert (await client.get("/v1/sessions", headers=ALICE)).headers["cache-control"] == "no-store"


async def test_cors_allowlist(client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = await client.options("/v1/sessions", headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = await client.options("/v1/sessions", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = await client.get("/v1/sessions", headers={**ALICE, "Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    other = await client.get("/v1/sessions", headers={**ALICE, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


class TestExpiry:
    @pytest.fixture
    def session_settings(self) -> SessionSettings:
        return SessionSettings(session_idle_ttl_seconds=0.3, session_activity_write_interval_seconds=0)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def session_service(self, in_process_mesh, session_settings, clock):
        # The service's clock is the test's: time passes when the test says, not while it sleeps.
        return await in_process_mesh.start(
            "session", functools.partial(build, session_settings=session_settings, clock=clock)
        )

    async def test_expired_session_is_410_until_swept(self, client, session_service, clock):
        sid = (await create(client))["session_id"]
        clock.advance(0.6)
        assert_problem(await client.get(f"/v1/sessions/{sid}", headers=ALICE), 410, "SESSION_EXPIRED")
        assert_problem(await client.delete(f"/v1/sessions/{sid}", headers=ALICE), 410, "SESSION_EXPIRED")
        listed = (await client.get("/v1/sessions", headers=ALICE)).json()["sessions"]
        assert [(s["session_id"], s["state"]) for s in listed] == [(sid, "expired")]
        async with session_service.channel() as channel:
            stub = session_internal_pb2_grpc.SessionInternalServiceStub(channel)
            swept = await stub.SweepExpiredSessions(
                session_internal_pb2.SweepExpiredSessionsRequest(), metadata=mesh_metadata()
            )
        assert list(swept.session_ids) == [sid]
        assert_problem(await client.get(f"/v1/sessions/{sid}", headers=ALICE), 404, "SESSION_NOT_FOUND")
