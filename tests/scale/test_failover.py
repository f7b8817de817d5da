"""Replicas behave as one system: events cross progress replicas, and a SIGKILLed runner's
job is finished by the other runner, the client's event stream continuing without a gap
and the job's trace going on where the dead replica left it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import grpc
import httpx
import redis

from tests.progress.sse_client import events
from tests.support.identities import bearer, mesh_metadata, user_metadata
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.validator.corpus import PORTRAIT, VOICE
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc

ALICE = bearer("alice")
WAIT_SECONDS = 90.0
SCRIPT = "Hello there. This sentence is long enough to make a short talking head video for the test."


async def ready_session(gateway_a: str, gateway_b: str) -> str:
    async with httpx.AsyncClient(base_url=gateway_a, timeout=30) as client:
        created = await client.post("/v1/sessions", headers=ALICE)
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
    # Uploads go through the other gateway: both reach the one validator and session service.
    async with httpx.AsyncClient(base_url=gateway_b, timeout=30) as client:
        for kind, path, content_type in (("face", PORTRAIT, "image/jpeg"), ("voice", VOICE, "audio/wav")):
            response = await client.post(
                f"/v1/sessions/{session_id}/assets/{kind}",
                headers=ALICE,
                files={"file": (path.name, path.read_bytes(), content_type)},
            )
            assert response.status_code == 201, response.text
    return session_id


async def collect_sse(gateway: str, session_id: str, seen: list[dict], first: asyncio.Event) -> None:
    """Every event of the session through `gateway`'s SSE until the job's terminal event."""
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=httpx.Timeout(10, read=WAIT_SECONDS)) as client,
        client.stream("GET", f"/v1/sessions/{session_id}/events", headers=ALICE) as response,
    ):
        assert response.status_code == 200
        first.set()
        async for frame in events(response):
            body = frame.json()
            seen.append({"id": int(frame.id), "event": frame.event, **body})
            if frame.event in ("job.completed", "job.failed", "job.cancelled"):
                return


async def wait_until(condition, limit: float = WAIT_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_events_published_on_one_progress_replica_reach_a_subscriber_on_the_other(scaled_mesh):
    first, second = scaled_mesh.progress
    session_id = await ready_session(scaled_mesh.gateways[0].url, scaled_mesh.gateways[1].url)
    async with grpc.aio.insecure_channel(first.address) as a, grpc.aio.insecure_channel(second.address) as b:
        subscription = progress_pb2_grpc.ProgressServiceStub(b).Subscribe(
            progress_pb2.SubscribeRequest(session_id=session_id, after_seq=0),
            metadata=user_metadata("alice"),
            timeout=WAIT_SECONDS,
        )
        received: list[progress_pb2.ProgressEvent] = []

        async def read() -> None:
            async for event in subscription:
                received.append(event)
                if len(received) == 3:
                    return

        # The replica sends its headers once it has accepted the stream, before the first
        # event (services/progress/servicer.py): from then on the subscriber is live.
        await asyncio.wait_for(subscription.initial_metadata(), WAIT_SECONDS)
        reader = asyncio.create_task(read())
        await progress_internal_pb2_grpc.ProgressInternalServiceStub(a).PublishEvents(
            progress_internal_pb2.PublishEventsRequest(
                session_id=session_id,
                events=[
                    progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_WARNING, message=f"m{i}")
                    for i in range(3)
                ],
            ),
            metadata=mesh_metadata("alice"),
            timeout=10,
        )
        await asyncio.wait_for(reader, WAIT_SECONDS)
        subscription.cancel()
    assert [e.message for e in received] == ["m0", "m1", "m2"]
    assert [e.seq for e in received] == [1, 2, 3]


def owner_pid(redis_url: str, job_id: str) -> int:
    """The pid of the runner replica holding the job (consumer names end in -<pid>-<rand>)."""
    owner = redis.Redis.from_url(redis_url).hget(f"vidsynth:stage_runner:job:{job_id}", "owner")
    return int(owner.decode().rsplit("-", 2)[1]) if owner else 0


async def test_a_killed_runners_job_is_finished_by_the_other_from_its_checkpoint(scaled_mesh, tmp_path):
    gateway_a, gateway_b = (g.url for g in scaled_mesh.gateways)
    session_id = await ready_session(gateway_a, gateway_b)
    seen: list[dict] = []
    subscribed = asyncio.Event()
    subscriber = asyncio.create_task(collect_sse(gateway_b, session_id, seen, subscribed))
    await asyncio.wait_for(subscribed.wait(), 30)

    trace_id = os.urandom(16).hex()
    async with httpx.AsyncClient(base_url=gateway_a, timeout=30) as client:
        started = await client.post(
            f"/v1/sessions/{session_id}/jobs",
            headers={**ALICE, "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
            json={"script_text": SCRIPT},
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]

    # Kill whichever runner took the job once a real stage (voice) has its checkpoint (and
    # its span is out: a SIGKILL loses only what a process has not exported yet).
    await wait_until(lambda: any(e["event"] == "stage.completed" and e.get("stage") == "voice" for e in seen))
    pid = await asyncio.to_thread(owner_pid, scaled_mesh.redis.url, job_id)
    victim = scaled_mesh.cluster.by_pid(pid)
    assert victim in scaled_mesh.runners
    await asyncio.to_thread(
        scaled_mesh.traces.wait_for, lambda spans: bool(stage_spans(spans, trace_id, "voice", pid)), 10
    )
    await asyncio.to_thread(scaled_mesh.cluster.kill, victim)
    killed_at = len(seen)

    await asyncio.wait_for(subscriber, WAIT_SECONDS)
    types = [e["event"] for e in seen]
    assert types[-1] == "job.completed", json.dumps(seen[-3:], indent=1)
    ids = [e["id"] for e in seen]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # no gap, no repeat
    # The survivor resumed: voice was not run again, later stages were.
    after_kill = seen[killed_at:]
    assert any(e["event"] == "job.started" and "resumed" in e.get("message", "") for e in after_kill)
    voice_starts = [e for e in seen if e["event"] == "stage.started" and e.get("stage") == "voice"]
    assert len(voice_starts) == 1
    assert any(e["event"] == "stage.completed" and e.get("stage") == "assemble" for e in after_kill)

    survivor = next(r for r in scaled_mesh.runners if r is not victim)
    gateway = scaled_mesh.gateway_for_runner(survivor).url
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        job = (await client.get(f"/v1/jobs/{job_id}", headers=ALICE)).json()
        assert job["state"] == "completed", job
        video = await client.get(f"/v1/jobs/{job_id}/outputs/video", headers=ALICE)
        assert video.status_code == 200
    await asyncio.to_thread(assert_resumed_in_the_same_trace, scaled_mesh.traces, trace_id, victim, survivor)
    path = tmp_path / "video.mp4"
    path.write_bytes(video.content)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(probe.stdout.split()) == ["audio", "video"]


def stage_spans(spans: list[ReceivedSpan], trace_id: str, stage: str, pid: int) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.trace_id == trace_id and s.name == f"stage {stage}" and s.resource.get("process.pid") == pid
    ]


def assert_resumed_in_the_same_trace(traces: OtlpReceiver, trace_id: str, victim, survivor) -> None:
    """The survivor's run continues the trace of the request that started the job: its
    stages there after the victim's, the victim's checkpoints restored, not redone."""
    spans = traces.wait_for(
        lambda got: bool(stage_spans(got, trace_id, "assemble", survivor.pid)), WAIT_SECONDS
    )
    trace = [s for s in spans if s.trace_id == trace_id]
    start_job = [s for s in trace if s.name.endswith("/StartJob") and s.kind == "server"]
    assert len(start_job) == 1
    resumed = [s for s in trace if s.name == "job run" and s.resource["process.pid"] == survivor.pid]
    assert len(resumed) == 1 and resumed[0].attributes["vidsynth.job.resumed"] is True
    assert resumed[0].parent_span_id == start_job[0].span_id
    before = {
        s.name for s in trace if s.resource.get("process.pid") == victim.pid and s.name.startswith("stage ")
    }
    assert {"stage script", "stage voice"} <= before
    after = [s for s in trace if s.parent_span_id == resumed[0].span_id and s.name.startswith("stage ")]
    restored = {s.name for s in after if s.attributes["vidsynth.stage.restored"]}
    ran = {s.name for s in after if not s.attributes["vidsynth.stage.restored"]}
    assert {"stage script", "stage voice"} <= restored and {"stage animate", "stage assemble"} <= ran
    assert before | restored | ran == {
        f"stage {n}" for n in ("script", "voice", "face", "animate", "assemble")
    }
