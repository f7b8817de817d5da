"""Stream tokens: minted per session and user, accepted only for that session, on SSE and WS."""

from __future__ import annotations

import httpx
import pytest

from libs.common.errors import VidsynthError
from services.gateway.stream_tokens import StreamTokenSigner
from tests.progress.sse_client import events
from tests.support.identities import bearer
from tests.support.synthetic_events import job_events, publish


async def mint(client: httpx.AsyncClient, base: str, session_id: str, user: str = "alice") -> httpx.Response:
    return await client.post(f"{base}/v1/sessions/{session_id}/stream-token", headers=bearer(user))


def test_signer_round_trip_and_refusals():
    signer = StreamTokenSigner(b"secret", ttl_seconds=60)
    token, grant = signer.issue("ses_a", "alice", now=1000)
    assert signer.verify(token, "ses_a", now=1059) == grant
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for candidate, session_id, now in [
        (token, "ses_b", 1000),  # another session
        (token, "ses_a", 1060),  # expired
        (tampered, "ses_a", 1000),
        ("st1..", "ses_a", 1000),
        ("garbage", "ses_a", 1000),
    ]:
        with pytest.raises(VidsynthError) as caught:
            signer.verify(candidate, session_id, now=now)
        assert caught.value.code == "STREAM_TOKEN_INVALID"
    other_key = StreamTokenSigner(b"other", ttl_seconds=60)
    with pytest.raises(VidsynthError):
        other_key.verify(token, "ses_a", now=1000)


async def test_token_opens_its_session_and_no_other(progress_mesh, gateway_url):
    session_a = await progress_mesh.create_session("alice")
    session_b = await progress_mesh.create_session("alice")
    await publish(progress_mesh.channel, session_a, job_events(), batch_size=100)
    async with httpx.AsyncClient(timeout=30) as client:
        minted = await mint(client, gateway_url, session_a)
        assert minted.status_code == 200
        body = minted.json()
        assert body["session_id"] == session_a and body["expires_in"] > 0
        token = body["token"]

        async with client.stream(
            "GET",
            f"{gateway_url}/v1/sessions/{session_a}/events",
            params={"token": token, "until_terminal": "true"},
        ) as response:
            assert response.status_code == 200
            ids = [int(frame.id) async for frame in events(response)]
        assert ids[0] == 1 and len(ids) == len(job_events())

        refused = await client.get(f"{gateway_url}/v1/sessions/{session_b}/events", params={"token": token})
        assert refused.status_code == 401
        assert refused.json()["code"] == "STREAM_TOKEN_INVALID"


async def test_token_cannot_be_minted_for_another_users_session(progress_mesh, gateway_url):
    bobs = await progress_mesh.create_session("bob")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await mint(client, gateway_url, bobs, user="alice")
        assert response.status_code == 404
        assert response.json()["code"] == "SESSION_NOT_FOUND"
        anonymous = await client.post(f"{gateway_url}/v1/sessions/{bobs}/stream-token")
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "UNAUTHENTICATED"
