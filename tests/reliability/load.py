"""The load campaign: concurrent SSE subscribers, session creates and uploads at fixed
(open-loop) rates through the gateway of a real `vidsynth up` mesh, for a bounded time,
on loopback only. Records per-operation latency, errors (deliberate limit answers
counted apart) and the RSS of every service before, after warm-up and at the end.
Shared by tests/reliability (a few seconds) and scripts/reliability.py (60 s)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psutil

from tests.reliability.faults import FACE, VOICE, gapless
from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess
from tests.support.percentiles import percentile
from vidsynth.http_client import GatewayClient

# Deliberate refusals: the limits doing their job, not failures.
LIMIT_CODES = frozenset(
    {"RATE_LIMITED", "SESSION_LIMIT_REACHED", "QUEUE_FULL", "USER_JOB_LIMIT_REACHED", "TOO_MANY_UPLOADS"}
)
USERS = ("alice", "bob", "root")
SERVICES = ("session", "validator", "stage_runner", "progress", "cleanup", "gateway")
# Limits raised for the load mesh so the offered load, not the limits, is measured.
LOAD_MESH_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "simulation",
    "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "0.2",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "500",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "2000",
    "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "500",
    "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "2000",
    "VIDSYNTH_SESSION_MAX_PER_USER": "100000",
    "VIDSYNTH_SESSION_MAX_GLOBAL": "100000",
    "VIDSYNTH_STAGE_RUNNER_MAX_QUEUED_JOBS": "200",
    # Every load client shares one address: the edge's per-address cap must not be the limit.
    "VIDSYNTH_EDGE_MAX_CONNECTIONS_PER_ADDRESS": "4096",
}


@dataclass
class LoadPlan:
    seconds: float = 60.0
    subscribers: int = 200
    creates_per_second: float = 50.0
    uploads_per_second: float = 10.0
    streamed_sessions: int = 10
    warmup_seconds: float = 10.0


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    limited: Counter = field(default_factory=Counter)

    def record(self, seconds: float, code: str = "") -> None:
        if not code:
            self.latencies.append(seconds)
        elif code in LIMIT_CODES:
            self.limited[code] += 1
        else:
            self.errors[code] += 1

    def summary(self) -> dict:
        seconds = self.latencies
        return {
            "ok": len(seconds),
            "p50_ms": round(percentile(seconds, 0.5) * 1000, 1) if seconds else None,
            "p99_ms": round(percentile(seconds, 0.99) * 1000, 1) if seconds else None,
            "mean_ms": round(statistics.fmean(seconds) * 1000, 1) if seconds else None,
            "errors": sum(self.errors.values()),
            "error_codes": dict(self.errors),
            "limited": sum(self.limited.values()),
        }


@dataclass
class LoadResult:
    plan: LoadPlan
    creates: OpStats = field(default_factory=OpStats)
    uploads: OpStats = field(default_factory=OpStats)
    jobs: OpStats = field(default_factory=OpStats)
    first_event: OpStats = field(default_factory=OpStats)
    jobs_ended: int = 0
    subscribers_complete: int = 0
    subscribers_gapless: int = 0
    subscriber_errors: Counter = field(default_factory=Counter)
    rss_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    elapsed: float = 0.0

    def rss_growth_mb(self) -> dict[str, float]:
        """Per service: RSS at the end minus RSS after warm-up."""
        return {
            name: round(points["end"] - points["warm"], 1)
            for name, points in self.rss_mb.items()
            if "warm" in points and "end" in points
        }


def service_rss_mb(mesh: MeshProcess) -> dict[str, float]:
    """RSS of each of `up`'s service children (clamd apart), in MiB."""
    out: dict[str, float] = {}
    for child in psutil.Process(mesh.process.pid).children(recursive=True):
        try:
            argv = child.cmdline()
            rss = child.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        for name in SERVICES:
            # The module itself (`-m services.validator`), not a worker of it
            # (`-m services.validator.decode_worker`).
            if f"services.{name}" in argv:
                out[name] = round(rss, 1)
    return out


def _code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    try:
        return str(response.json().get("code", f"HTTP_{response.status_code}"))
    except ValueError:
        return f"HTTP_{response.status_code}"


async def _timed(stats: OpStats, request) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as error:
        stats.record(0.0, type(error).__name__)
        return None
    stats.record(time.perf_counter() - started, _code(response))
    return response


async def _at_rate(rate: float, seconds: float, make) -> None:
    """Fires `make(i)` every 1/rate s (open loop: slow answers do not slow the offer)."""
    if rate <= 0:
        return
    tasks: list[asyncio.Task] = []
    started = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(make(i)))
    await asyncio.gather(*tasks)


async def _subscriber(
    http: httpx.AsyncClient,
    user: str,
    session_id: str,
    seqs: list[int],
    terminals: list[str],
    result: LoadResult,
) -> None:
    """Holds one SSE stream open for the whole run, recording every seq and job end."""
    sent_at = time.perf_counter()
    try:
        async with http.stream(
            "GET",
            f"/v1/sessions/{session_id}/events",
            headers=bearer(user),
            timeout=httpx.Timeout(30.0, read=None),
        ) as response:
            if response.status_code != 200:
                await response.aread()
                result.subscriber_errors[_code(response)] += 1
                return
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    if not seqs:
                        result.first_event.record(time.perf_counter() - sent_at)
                    seqs.append(int(line[3:].strip()))
                elif line.startswith("event:") and line[6:].strip() in ("job.completed", "job.failed"):
                    terminals.append(line[6:].strip())
    except httpx.HTTPError as error:
        result.subscriber_errors[type(error).__name__] += 1


async def _job_driver(
    http: httpx.AsyncClient, user: str, session_id: str, until: float, ended: Counter, result: LoadResult
) -> None:
    """Runs jobs one after another on a session until `until`, so its streams carry events."""
    while time.monotonic() < until:
        response = await _timed(
            result.jobs,
            http.post(f"/v1/sessions/{session_id}/jobs", json={"script_text": "Load."}, headers=bearer(user)),
        )
        if response is None or response.status_code != 202:
            await asyncio.sleep(1.0)
            continue
        job_id = response.json()["job_id"]
        while True:
            await asyncio.sleep(0.5)
            job = await http.get(f"/v1/jobs/{job_id}", headers=bearer(user))
            if job.status_code == 200 and job.json().get("state") in ("completed", "failed", "cancelled"):
                ended[session_id] += 1
                break


async def _prepare_streamed_sessions(base_url: str, count: int) -> list[tuple[str, str]]:
    """Sessions with both uploads accepted, one per (round-robin) user, ready for a job."""
    prepared = []
    for i in range(count):
        user = USERS[i % len(USERS)]
        async with GatewayClient(base_url, API_KEYS[user]) as client:
            session_id = (await client.create_session(f"load-stream-{i}"))["session_id"]
            await client.upload(session_id, "face", FACE)
            await client.upload(session_id, "voice", VOICE)
        prepared.append((user, session_id))
    return prepared


async def _settle(seqs, terminals, streams, ended: Counter, timeout: float = 30.0) -> None:
    """Waits (bounded) until every subscriber has seen the end of every job of its session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(terminals[i]) >= ended[sid] for i, (_, sid) in enumerate(streams)):
            return
        await asyncio.sleep(0.2)


async def run_load(mesh: MeshProcess, plan: LoadPlan) -> LoadResult:
    result = LoadResult(plan)
    result.rss_mb = {name: {"start": mb} for name, mb in service_rss_mb(mesh).items()}
    streamed = await _prepare_streamed_sessions(mesh.url, plan.streamed_sessions)
    upload_targets = await _prepare_streamed_sessions(mesh.url, len(USERS))
    # Streams and requests get separate pools sized so nothing queues inside the client:
    # an httpx pool with thousands of waiters burns the generator's CPU, not the mesh's.
    stream_limits = httpx.Limits(max_connections=plan.subscribers + 10, max_keepalive_connections=0)
    request_limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    faces, voices = FACE.read_bytes(), VOICE.read_bytes()
    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=mesh.url, limits=stream_limits, timeout=60.0) as streams_http,
        httpx.AsyncClient(base_url=mesh.url, limits=request_limits, timeout=60.0) as http,
    ):
        streams = [streamed[i % len(streamed)] for i in range(plan.subscribers)]
        seqs: list[list[int]] = [[] for _ in streams]
        terminals: list[list[str]] = [[] for _ in streams]
        subscribers = [
            asyncio.create_task(_subscriber(streams_http, user, sid, seqs[i], terminals[i], result))
            for i, (user, sid) in enumerate(streams)
        ]
        ended: Counter = Counter()
        until = time.monotonic() + plan.seconds
        drivers = [_job_driver(http, user, sid, until, ended, result) for user, sid in streamed]

        async def create(i: int) -> None:
            user = USERS[i % len(USERS)]
            await _timed(result.creates, http.post("/v1/sessions", json={}, headers=bearer(user)))

        async def upload(i: int) -> None:
            user, session_id = upload_targets[i % len(upload_targets)]
            kind, name, body = ("face", "face.jpg", faces) if i % 2 == 0 else ("voice", "voice.wav", voices)
            files = {"file": (name, body)}
            await _timed(
                result.uploads,
                http.post(f"/v1/sessions/{session_id}/assets/{kind}", files=files, headers=bearer(user)),
            )

        async def sample_rss_after_warmup() -> None:
            await asyncio.sleep(min(plan.warmup_seconds, plan.seconds / 2))
            for name, mb in service_rss_mb(mesh).items():
                result.rss_mb.setdefault(name, {})["warm"] = mb

        await asyncio.gather(
            _at_rate(plan.creates_per_second, plan.seconds, create),
            _at_rate(plan.uploads_per_second, plan.seconds, upload),
            sample_rss_after_warmup(),
            *drivers,
        )
        await _settle(seqs, terminals, streams, ended)
        for task in subscribers:
            task.cancel()
        await asyncio.gather(*subscribers, return_exceptions=True)
    for i, (_, sid) in enumerate(streams):
        if len(terminals[i]) == ended[sid]:
            result.subscribers_complete += 1
        if seqs[i] and gapless(seqs[i]) and seqs[i][0] == 1:
            result.subscribers_gapless += 1
    result.jobs_ended = sum(ended.values())
    result.elapsed = time.monotonic() - started
    for name, mb in service_rss_mb(mesh).items():
        result.rss_mb.setdefault(name, {})["end"] = mb
    return result
