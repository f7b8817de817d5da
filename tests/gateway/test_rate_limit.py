"""Per-key token buckets: a unit test with a test clock, and 429s through the app."""

from __future__ import annotations

import pytest

from libs.common.rate_limit import TokenBucketLimiter
from services.gateway.config import GatewaySettings
from tests.gateway.problems import assert_problem
from tests.support.identities import bearer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    clock.now += 100  # refills only up to the burst
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") > 0


def test_bucket_map_is_bounded():
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_buckets=10, clock=Clock())
    for n in range(100):
        limiter.acquire(f"addr:{n}")
    assert len(limiter._buckets) == 10


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(gateway_rate_limit_per_second=0.05, gateway_rate_limit_burst=3)


async def test_each_key_gets_429_with_retry_after(client):
    for _ in range(3):
        assert (await client.get("/v1/sessions", headers=bearer("alice"))).status_code == 200
    response = await client.get("/v1/sessions", headers=bearer("alice"))
    body = assert_problem(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1
    assert body["retry_after"] > 0
    # Bob's key has its own bucket; health checks are never limited.
    assert (await client.get("/v1/sessions", headers=bearer("bob"))).status_code == 200
    for _ in range(5):
        assert (await client.get("/healthz")).status_code == 200


async def test_unauthenticated_callers_share_their_address_bucket(client):
    for _ in range(3):
        assert_problem(
            await client.get("/v1/sessions", headers={"Authorization": "Bearer guess"}),
            401,
            "UNAUTHENTICATED",
        )
    assert_problem(
        await client.get("/v1/sessions", headers={"Authorization": "Bearer guess2"}), 429, "RATE_LIMITED"
    )


async def test_junk_from_an_address_does_not_lock_a_user_out_of_their_progress_stream(client):
    """Issue 15, item 3: a request carrying a valid stream token is limited by the token's
    user, not by the address it shares with junk traffic (or with everyone behind a proxy)."""
    created = await client.post("/v1/sessions", headers=bearer("alice"))
    session_id = created.json()["session_id"]
    issued = await client.post(f"/v1/sessions/{session_id}/stream-token", headers=bearer("alice"))
    token = issued.json()["token"]
    for _ in range(3):  # the address's whole burst, spent on wrong keys
        await client.get("/v1/sessions", headers={"Authorization": "Bearer junk"})
    assert_problem(
        await client.get("/v1/sessions", headers={"Authorization": "Bearer junk"}), 429, "RATE_LIMITED"
    )
    # A forged or foreign token is junk too: the address bucket answers.
    forged = await client.get(f"/v1/sessions/{session_id}/events", params={"token": token[:-2] + "xx"})
    assert_problem(forged, 429, "RATE_LIMITED")
    # Alice's own stream, opened with her token, still opens (its own bucket, per user).
    async with client.stream("GET", f"/v1/sessions/{session_id}/events", params={"token": token}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
