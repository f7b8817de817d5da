"""Scale-out benchmark: what Redis and a second runner replica buy on this machine.

1. Job throughput (simulation backends, one job slot per replica) with 1 and then 2
   stage_runner replicas sharing one Redis job stream: jobs/s and the 2-vs-1 ratio.
2. Session reads (GetSession p50/p99) on SessionService with SQLite and with Redis.
3. Event delivery (ProgressInternalService.PublishEvents -> ProgressService.Subscribe, p50/p99) with SQLite,
   with Redis on one replica, and with Redis across two replicas (publish on one,
   subscribe on the other).

Every service is a real process (`python -m services.<name>`); SQLite figures are the
floor the Redis ones are compared with, measured in the same run.

    .venv/bin/python -m bench.scale [--jobs 6] [--stage-seconds 0.3] [--reads 400] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from libs.common.settings import MeshSettings
from tests.scale.cluster import Cluster
from tests.stage_runner.conftest import TERMINAL, RunnerMesh, make_media
from tests.support.identities import mesh_metadata, user_metadata
from tests.support.percentiles import percentile
from tests.support.redis_server import RedisServer
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc

POLL_SECONDS = 0.25
# The per-key gRPC rate limit would otherwise be what the latency loops measure.
UNLIMITED = {"VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1000000", "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "1000000"}
RUNNER_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "simulation",
    "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS": "1",
    # One user submits every job: the replicas are measured here, not the per-user shares.
    "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS_PER_USER": "64",
    "VIDSYNTH_STAGE_RUNNER_MAX_QUEUED_JOBS_PER_USER": "1000",
}


def describe(label: str, millis: list[float]) -> str:
    return f"{label:<34} p50 {percentile(millis, 0.5):7.3f} ms   p99 {percentile(millis, 0.99):7.3f} ms"


# ---- 1. job throughput --------------------------------------------------------------------


async def run_jobs(mesh: RunnerMesh, count: int) -> float:
    """Jobs/s for `count` jobs submitted at once, each in its own session."""
    sessions = [await mesh.ready_session() for _ in range(count)]
    jobs = [await mesh.start(session_id) for session_id in sessions]
    pending = {job.job_id for job in jobs}
    finished = []
    while pending:
        await asyncio.sleep(POLL_SECONDS)  # gently: the mesh rate-limits each user
        for job_id in list(pending):
            job = await mesh.get(job_id)
            if job.state in TERMINAL:
                pending.discard(job_id)
                finished.append(job)
    # Server-side times: from the first job accepted to the last one finished.
    began = min(job.create_time.ToNanoseconds() for job in finished)
    elapsed = (max(job.end_time.ToNanoseconds() for job in finished) - began) / 1e9
    for session_id in sessions:  # stay under the per-user session cap
        await mesh.sessions.DeleteSession(
            session_pb2.DeleteSessionRequest(session_id=session_id),
            metadata=user_metadata("alice"),
            timeout=10,
        )
    return count / elapsed


def throughput(base: Path, jobs: int, stage_seconds: float) -> tuple[float, float]:
    redis = RedisServer(base / "redis")
    media = base / "media"
    media.mkdir()
    make_media(media)
    env = {**RUNNER_ENV, "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": str(stage_seconds)}
    cluster = Cluster.create(base / "mesh", redis.url, **env)
    try:
        session = cluster.start("session", "session")
        progress = cluster.start("progress", "progress")
        first = cluster.start("stage_runner", "runner-1")
        cluster.wait_ready()
        settings = MeshSettings(data_dir=base / "mesh" / "data")
        mesh = RunnerMesh(settings, session.address, progress.address, first.address, media)
        one = asyncio.run(_measure_then_close(mesh, jobs))
        cluster.start("stage_runner", "runner-2")
        cluster.wait_ready()
        mesh = RunnerMesh(settings, session.address, progress.address, first.address, media)
        two = asyncio.run(_measure_then_close(mesh, jobs))
        return one, two
    finally:
        cluster.stop()
        redis.stop()


async def _measure_then_close(mesh: RunnerMesh, jobs: int) -> float:
    try:
        await run_jobs(mesh, 1)  # warm-up: channels, cost model, first ffmpeg runs
        return await run_jobs(mesh, jobs)
    finally:
        await mesh.close()


# ---- 2 and 3. session reads and event delivery, SQLite vs Redis -----------------------------


async def session_reads(address: str, reads: int) -> list[float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        alice = user_metadata("alice")
        session = await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=alice, timeout=10)
        request = session_pb2.GetSessionRequest(session_id=session.session_id)
        for _ in range(20):
            await stub.GetSession(request, metadata=alice, timeout=10)
        millis = []
        for _ in range(reads):
            began = time.perf_counter()
            await stub.GetSession(request, metadata=alice, timeout=10)
            millis.append((time.perf_counter() - began) * 1000)
        await stub.DeleteSession(
            session_pb2.DeleteSessionRequest(session_id=session.session_id), metadata=alice, timeout=10
        )
        return millis


async def event_delivery(
    session_address: str, publish_to: str, subscribe_to: str, events: int
) -> list[float]:
    """Publish one event at a time and wait for the subscriber to receive it."""
    async with (
        grpc.aio.insecure_channel(session_address) as session_channel,
        grpc.aio.insecure_channel(publish_to) as publish_channel,
        grpc.aio.insecure_channel(subscribe_to) as subscribe_channel,
    ):
        alice = user_metadata("alice")
        session = await session_pb2_grpc.SessionServiceStub(session_channel).CreateSession(
            session_pb2.CreateSessionRequest(), metadata=alice, timeout=10
        )
        publisher = progress_internal_pb2_grpc.ProgressInternalServiceStub(publish_channel)
        call = progress_pb2_grpc.ProgressServiceStub(subscribe_channel).Subscribe(
            progress_pb2.SubscribeRequest(session_id=session.session_id, after_seq=0),
            metadata=alice,
            timeout=120,
        )
        stream = call.__aiter__()
        millis = []
        for index in range(events + 20):
            event = progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_WARNING, message=str(index))
            began = time.perf_counter()
            await publisher.PublishEvents(
                progress_internal_pb2.PublishEventsRequest(session_id=session.session_id, events=[event]),
                metadata=mesh_metadata("alice"),
                timeout=10,
            )
            received = await asyncio.wait_for(stream.__anext__(), 30)
            assert received.message == str(index)
            if index >= 20:  # the first ones warm up the subscription
                millis.append((time.perf_counter() - began) * 1000)
        call.cancel()
        return millis


def store_latencies(base: Path, reads: int, events: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    sqlite = Cluster.create(base / "sqlite", "", **UNLIMITED)
    try:
        session = sqlite.start("session", "session")
        progress = sqlite.start("progress", "progress")
        sqlite.wait_ready()
        results["session read, sqlite"] = asyncio.run(session_reads(session.address, reads))
        results["event delivery, sqlite"] = asyncio.run(
            event_delivery(session.address, progress.address, progress.address, events)
        )
    finally:
        sqlite.stop()
    redis = RedisServer(base / "redis-latency")
    shared = Cluster.create(base / "redis", redis.url, **UNLIMITED)
    try:
        session = shared.start("session", "session")
        first = shared.start("progress", "progress-a")
        second = shared.start("progress", "progress-b")
        shared.wait_ready()
        results["session read, redis"] = asyncio.run(session_reads(session.address, reads))
        results["event delivery, redis"] = asyncio.run(
            event_delivery(session.address, first.address, first.address, events)
        )
        results["event delivery, redis 2 replicas"] = asyncio.run(
            event_delivery(session.address, first.address, second.address, events)
        )
    finally:
        shared.stop()
        redis.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=6, help="jobs per throughput run")
    parser.add_argument("--stage-seconds", type=float, default=0.3, help="simulated seconds per stage")
    parser.add_argument("--reads", type=int, default=400, help="GetSession calls per store")
    parser.add_argument("--events", type=int, default=200, help="events delivered per store")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-scale-") as tmp:
        base = Path(tmp)
        one, two = throughput(base / "throughput", args.jobs, args.stage_seconds)
        latencies = store_latencies(base / "latency", args.reads, args.events)
    print(f"job throughput, 1 runner replica   {one:6.2f} jobs/s")
    print(f"job throughput, 2 runner replicas  {two:6.2f} jobs/s")
    print(f"  ratio 2 vs 1 replicas: {two / one:.2f}x (ideal 2.00x)")
    for label, millis in latencies.items():
        print(describe(label, millis))
    for kind in ("session read", "event delivery"):
        floor = statistics.median(latencies[f"{kind}, sqlite"])
        redis = statistics.median(latencies[f"{kind}, redis"])
        print(f"  ratio {kind} p50 redis / sqlite: {redis / floor:.2f}x")
    crossed = statistics.median(latencies["event delivery, redis 2 replicas"])
    print(f"  ratio event delivery p50 across replicas / sqlite: {crossed / floor:.2f}x")
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
