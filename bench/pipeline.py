"""The whole pipeline through the gateway vs the same backends called directly.

Starts the mesh (`vidsynth up`, built-in backends), uploads the bundled samples, and
times jobs with a ~10 s and a ~60 s script from StartJob to the downloaded MP4. The
floor is the same work (espeak-ng voice, face crop, animation, assembly) run directly
in this process by `render_talking_head`, in the same run. Then 4 concurrent jobs,
as throughput relative to one job at a time.

    .venv/bin/python -m bench.pipeline [--rounds 1]

Target: gateway wall time <= 1.15x the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from libs.common.log import configure_logging
from services.stage_runner.media.talking_head import render_talking_head
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
TARGET_RATIO = 1.15
SENTENCE = "This sentence is part of a benchmark script that vidsynth turns into a talking head video. "
SCRIPTS = {"10s": SENTENCE * 2, "60s": SENTENCE * 10}


async def ready_session(client: GatewayClient) -> str:
    session_id = (await client.create_session("bench"))["session_id"]
    await client.upload(session_id, "face", FACE)
    await client.upload(session_id, "voice", VOICE)
    return session_id


async def through_gateway(client: GatewayClient, session_id: str, script: str, out: Path) -> float:
    started = time.perf_counter()
    job = await client.start_job(session_id, {"script_text": script})
    end = await client.wait_for_job(session_id, job["job_id"])
    if end["type"] != "job.completed":
        raise RuntimeError(f"job failed: {end}")
    await client.download(job["job_id"], "video", out)
    return time.perf_counter() - started


async def direct(script: str, out_dir: Path) -> float:
    started = time.perf_counter()
    await render_talking_head(FACE, VOICE, script, out_dir, size=256, fps=25)
    return time.perf_counter() - started


async def run(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as tmp:
        work = Path(tmp)
        mesh = MeshProcess(work / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "auto"})
        try:
            mesh.wait_up()
            async with GatewayClient(mesh.url, API_KEYS["alice"], timeout=300) as client:
                # Both sides warm up first: espeak-ng calibrates once per process.
                await direct(SCRIPTS["10s"], work / "warm")
                await through_gateway(client, await ready_session(client), SCRIPTS["10s"], work / "warm.mp4")
                print(f"{'script':<8}{'floor s':>10}{'gateway s':>12}{'ratio':>8}")
                for name, script in SCRIPTS.items():
                    floors, gateways = [], []
                    for i in range(rounds):
                        floors.append(await direct(script, work / f"direct-{name}-{i}"))
                        session_id = await ready_session(client)
                        gateways.append(
                            await through_gateway(client, session_id, script, work / f"{name}-{i}.mp4")
                        )
                    floor, gateway = statistics.median(floors), statistics.median(gateways)
                    verdict = "ok" if gateway / floor <= TARGET_RATIO else "over target"
                    print(f"{name:<8}{floor:>10.2f}{gateway:>12.2f}{gateway / floor:>7.2f}x  ({verdict})")

                sessions = [await ready_session(client) for _ in range(4)]
                one = await through_gateway(client, sessions[0], SCRIPTS["10s"], work / "one.mp4")
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        through_gateway(client, s, SCRIPTS["10s"], work / f"four-{i}.mp4")
                        for i, s in enumerate(sessions)
                    )
                )
                four = time.perf_counter() - started
                print(
                    f"4 concurrent 10s jobs: {four:.2f}s vs {one:.2f}s for one; "
                    f"throughput {4 / four:.2f} jobs/s = {(4 / four) / (1 / one):.2f}x one job at a time"
                )
        finally:
            mesh.stop()


def main() -> None:
    configure_logging("bench", "warning")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
