"""Fair shares between users: another user's place in line while one user holds six long jobs.

Starts the mesh (`vidsynth up`, built-in backends, the default queue settings) and:

1. floor: bob's one-sentence job on an idle queue: its ETA and its real run time;
2. alice starts six long jobs (~19,000-character scripts);
3. bob starts the same one-sentence job: his queue position and ETA as the gateway
   reports them, and how long the job really took, as ratios to the floor;
4. alice tries a seventh long job (refused past the per-user cap, with Retry-After).

Everything left is cancelled at the end. Nothing is derived from the scheduler: the
position and ETA are what the API tells bob, the run time is measured from outside.

    .venv/bin/python -m bench.fair_queue

Target: bob at most second in line, and his job done within 3x the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from libs.common.log import configure_logging
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient, GatewayError

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
HEAVY_JOBS = 6
SHORT_SCRIPT = "Hello, this is one sentence."
LONG_SCRIPT = ("This is a long script that keeps the stage runner busy for a good while. " * 260)[:19_000]
TARGET_POSITION = 2
TARGET_RATIO = 3.0
MESH_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "auto",
    # The API limits are not what this measures.
    "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "5000",
}


async def ready_session(client: GatewayClient) -> str:
    session_id = (await client.create_session("fair-queue bench"))["session_id"]
    await client.upload(session_id, "face", FACE)
    await client.upload(session_id, "voice", VOICE)
    return session_id


async def timed_job(client: GatewayClient, session_id: str, limit: float) -> tuple[dict, float | None]:
    """(the job as StartJob answered, seconds until it completed or None past `limit`)."""
    started = time.perf_counter()
    job = await client.start_job(session_id, {"script_text": SHORT_SCRIPT})
    try:
        end = await asyncio.wait_for(client.wait_for_job(session_id, job["job_id"]), limit)
    except TimeoutError:
        return job, None
    if end["type"] != "job.completed":
        raise RuntimeError(f"bob's job did not complete: {end}")
    return job, time.perf_counter() - started


async def cancel_quietly(client: GatewayClient, job_id: str) -> None:
    with contextlib.suppress(GatewayError):
        await client.cancel_job(job_id)


async def run(max_wait: float) -> None:
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as tmp:
        mesh = MeshProcess(Path(tmp) / "var", extra_env=MESH_ENV)
        try:
            mesh.wait_up()
            async with (
                GatewayClient(mesh.url, API_KEYS["alice"], timeout=120) as alice,
                GatewayClient(mesh.url, API_KEYS["bob"], timeout=120) as bob,
            ):
                bob_sessions = [await ready_session(bob) for _ in range(2)]
                alice_sessions = [await ready_session(alice) for _ in range(HEAVY_JOBS + 1)]
                floor_job, floor_seconds = await timed_job(bob, bob_sessions[0], 600)
                assert floor_seconds is not None
                print(
                    f"floor: bob alone: position {floor_job['queue_position']}, "
                    f"ETA {floor_job['eta_seconds']:.1f} s, done in {floor_seconds:.1f} s"
                )

                heavy = [
                    await alice.start_job(session_id, {"script_text": LONG_SCRIPT})
                    for session_id in alice_sessions[:HEAVY_JOBS]
                ]
                print(
                    f"alice: {len(heavy)} long jobs; her last: position {heavy[-1]['queue_position']}, "
                    f"ETA {heavy[-1]['eta_seconds'] / 60:.1f} min"
                )
                job, seconds = await timed_job(bob, bob_sessions[1], max_wait)
                position, eta = job["queue_position"], job["eta_seconds"]
                done = f"done in {seconds:.1f} s" if seconds is not None else f"not done in {max_wait:.0f} s"
                ratio = seconds / floor_seconds if seconds is not None else float("inf")
                verdict = "ok" if position <= TARGET_POSITION and ratio <= TARGET_RATIO else "over target"
                print(
                    f"bob behind alice: position {position}, ETA {eta:.1f} s "
                    f"({eta / floor_job['eta_seconds']:.2f}x the floor ETA), {done} "
                    f"({ratio:.2f}x the floor)  ({verdict})"
                )
                if seconds is None:
                    await cancel_quietly(bob, job["job_id"])
                try:
                    heavy.append(await alice.start_job(alice_sessions[-1], {"script_text": LONG_SCRIPT}))
                    print("alice's seventh long job: accepted")
                except GatewayError as error:
                    print(f"alice's seventh long job: {error.status} {error.code}")
                for heavy_job in heavy:
                    await cancel_quietly(alice, heavy_job["job_id"])
        finally:
            mesh.stop()


def main() -> None:
    configure_logging("bench", "warning")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-wait", type=float, default=900, help="seconds to wait for bob's job")
    asyncio.run(run(parser.parse_args().max_wait))


if __name__ == "__main__":
    main()
