"""One user holds the queue (issue 15, item 3): through the gateway of a real mesh, alice
starts more jobs than her share, then bob starts one. Records what each is told: alice's
refusal (code, Retry-After) and bob's place in line and ETA, and whether bob's job really
starts before alice's waiting ones. Shared by tests/reliability and scripts/reliability.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime

from tests.reliability.faults import FACE, VOICE
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient, GatewayError

HEAVY_JOBS = 6
SCRIPT = "One sentence, please."
WAIT_SECONDS = 120.0


@dataclass
class FairShareResult:
    heavy_accepted: int = 0
    heavy_refused: list[str] = field(default_factory=list)  # "429 USER_JOB_LIMIT_REACHED"
    heavy_retry_after: list[str] = field(default_factory=list)  # the Retry-After headers
    other_position: int = 0
    other_eta_seconds: float = 0.0
    heavy_waiting_positions: list[int] = field(default_factory=list)
    # Alice's jobs that started before bob's did, among those still waiting when he queued.
    heavy_started_first: int = -1


async def _ready(client: GatewayClient) -> str:
    session_id = (await client.create_session("fair-share"))["session_id"]
    await client.upload(session_id, "face", FACE)
    await client.upload(session_id, "voice", VOICE)
    return session_id


def _epoch(stamp: str) -> float:
    """RFC 3339 in UTC with 0 to 9 fraction digits (`...:05Z`, `...:05.120Z`)."""
    whole, _, fraction = stamp.removesuffix("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def _started_at(job: dict) -> float | None:
    return _epoch(job["start_time"]) if job["start_time"] else None


async def _start_time(client: GatewayClient, job_id: str) -> float | None:
    """When the job started, waiting for it; None if it ended (cancelled) without starting."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        job = await client.get_job(job_id)
        if (started := _started_at(job)) is not None:
            return started
        if job["state"] in ("completed", "failed", "cancelled"):
            return None
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never started")


async def heavy_user(mesh: MeshProcess, attempts: int = HEAVY_JOBS + 1) -> FairShareResult:
    result = FairShareResult()
    async with (
        GatewayClient(mesh.url, API_KEYS["alice"], timeout=60) as alice,
        GatewayClient(mesh.url, API_KEYS["bob"], timeout=60) as bob,
    ):
        alice_sessions = [await _ready(alice) for _ in range(attempts)]
        bob_session = await _ready(bob)
        heavy = []
        for session_id in alice_sessions:
            response = await alice.http.post(f"/v1/sessions/{session_id}/jobs", json={"script_text": SCRIPT})
            if response.status_code == 202:
                heavy.append(response.json())
            else:
                result.heavy_refused.append(f"{response.status_code} {response.json()['code']}")
                result.heavy_retry_after.append(response.headers.get("retry-after", ""))
        result.heavy_accepted = len(heavy)
        other = await bob.start_job(bob_session, {"script_text": SCRIPT})
        result.other_position, result.other_eta_seconds = other["queue_position"], other["eta_seconds"]
        waiting = [j for j in [await alice.get_job(j["job_id"]) for j in heavy] if j["state"] == "queued"]
        result.heavy_waiting_positions = [j["queue_position"] for j in waiting]
        bob_started = await _start_time(bob, other["job_id"])
        assert bob_started is not None
        # Read once bob's job runs: one of hers that has not started by now did not start first.
        starts = [_started_at(await alice.get_job(j["job_id"])) for j in waiting]
        result.heavy_started_first = sum(1 for s in starts if s is not None and s < bob_started)
        for job in heavy:
            with contextlib.suppress(GatewayError):
                await alice.cancel_job(job["job_id"])
        with contextlib.suppress(GatewayError):
            await bob.cancel_job(other["job_id"])
    return result
