"""Traces of a real mesh (`vidsynth up`, clamd, real ffmpeg) read back from the in-test
OTLP/HTTP receiver: a job is one trace from the HTTP request through StartJob, the
session look-ups, every stage and its ffmpeg runs, the progress publishes and the
webhook; uploads have a span per check; nothing secret or personal is exported."""

from __future__ import annotations

import asyncio
import json
import os
import time

import grpc
import httpx
import pytest

from tests.support.identities import API_KEYS, MESH_TOKEN, bearer, user_metadata
from tests.support.otlp_receiver import ReceivedSpan, traces_of
from tests.tracing.conftest import WEBHOOK_SECRET
from tests.validator.corpus import PORTRAIT, VOICE
from vidsynth.v1 import session_pb2, session_pb2_grpc

pytestmark = pytest.mark.slow

SCRIPT = "Quokka zebra lantern. This private sentence is long enough for a short talking head video."
FACE_NAME = "holiday-photo-of-me-7f3a9.jpg"
VOICE_NAME = "my-voice-memo-91c2e.wav"
STAGES = ["script", "voice", "face", "animate", "assemble"]
WAIT_SECONDS = 90.0


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id, span id) of a client span the test pretends to be in."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def upload(client: httpx.Client, session_id: str, kind: str, traceparent: str) -> httpx.Response:
    path, name, content_type = (
        (PORTRAIT, FACE_NAME, "image/jpeg")
        if kind == "face"
        else (
            VOICE,
            VOICE_NAME,
            "audio/wav",
        )
    )
    return client.post(
        f"/v1/sessions/{session_id}/assets/{kind}",
        headers={**bearer("alice"), "traceparent": traceparent},
        files={"file": (name, path.read_bytes(), content_type)},
    )


def wait_done(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=bearer("alice")).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never finished")


def one(spans: list[ReceivedSpan], **match) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name) for s in found])
    return found[0]


@pytest.fixture(scope="module")
def finished_job(traced_mesh):
    """One job through the gateway, in a trace the test started; its uploads in two more."""
    mesh, receiver = traced_mesh.mesh, traced_mesh.receiver
    face_parent, face_trace, _ = new_traceparent()
    voice_parent, voice_trace, _ = new_traceparent()
    job_parent, job_trace, client_span = new_traceparent()
    with httpx.Client(base_url=mesh.url, timeout=30) as client:
        session_id = client.post("/v1/sessions", headers=bearer("alice"), json={}).json()["session_id"]
        assert upload(client, session_id, "face", face_parent).status_code == 201
        assert upload(client, session_id, "voice", voice_parent).status_code == 201
        webhook = f"http://127.0.0.1:{traced_mesh.webhooks.port}/hooks/secret-path-token"
        created = client.post(
            f"/v1/sessions/{session_id}/jobs",
            headers={**bearer("alice"), "traceparent": job_parent},
            json={"script_text": SCRIPT, "webhook_url": webhook},
        )
        assert created.status_code == 202, created.text
        job = wait_done(client, created.json()["job_id"])
    assert job["state"] == "completed", job
    spans = receiver.wait_for(
        lambda got: (
            any(s.trace_id == job_trace and s.name == "webhook delivery" for s in got)
            and any(s.trace_id == job_trace and s.name == "job run" for s in got)
        ),
        WAIT_SECONDS,
    )
    return {
        "job": job,
        "spans": spans,
        "job_trace": job_trace,
        "client_span": client_span,
        "face_trace": face_trace,
        "voice_trace": voice_trace,
    }


def test_a_job_is_one_trace_from_the_http_request_to_its_last_stage(finished_job, traced_mesh) -> None:
    trace = traces_of(finished_job["spans"])[finished_job["job_trace"]]
    assert {"vidsynth-gateway", "vidsynth-stage-runner", "vidsynth-session", "vidsynth-progress"} <= {
        s.service for s in trace
    }
    # The gateway continued the caller's trace, named after the route, not the raw path.
    http = one(trace, service="vidsynth-gateway", kind="server")
    assert http.parent_span_id == finished_job["client_span"]
    assert http.name == "POST /v1/sessions/{session_id}/jobs"
    assert http.attributes["http.route"] == "/v1/sessions/{session_id}/jobs"
    # The gateway's context reached the runner through the call's metadata.
    start_server = one(trace, service="vidsynth-stage-runner", kind="server")
    assert start_server.name == "vidsynth.v1.StageRunnerService/StartJob"
    assert start_server.parent_span_id == http.span_id
    assert start_server.attributes["rpc.grpc.status_code"] == 0
    # The session look-ups of StartJob and of the run are spans of the session service.
    session_calls = [s for s in trace if s.service == "vidsynth-session" and s.kind == "server"]
    assert {s.name.rsplit("/", 1)[-1] for s in session_calls} >= {"GetSession", "UpdateSessionState"}
    # The run, later, continues StartJob's trace; every stage is a span of it.
    run = one(trace, name="job run")
    assert run.parent_span_id == start_server.span_id
    assert run.attributes["vidsynth.job.id"] == finished_job["job"]["job_id"]
    assert run.attributes["vidsynth.job.state"] == "completed"
    stages = sorted((s for s in trace if s.name.startswith("stage ")), key=lambda s: s.start_ns)
    assert [s.name for s in stages] == [f"stage {name}" for name in STAGES]
    assert all(s.parent_span_id == run.span_id and s.status_code != 2 for s in stages)
    backends = {stage["stage"]: stage["backend"] for stage in finished_job["job"]["stages"]}
    assert {s.attributes["vidsynth.stage"]: s.attributes["vidsynth.backend"] for s in stages} == backends
    # ffmpeg runs are children of their stage, with exit status and pid, without arguments.
    stage_ids = {s.span_id for s in stages}
    ffmpeg = [s for s in trace if s.name == "ffmpeg"]
    assert ffmpeg and all(s.parent_span_id in stage_ids for s in ffmpeg)
    assert all(s.attributes["process.exit.code"] == 0 and s.attributes["process.pid"] > 0 for s in ffmpeg)
    assert all(
        set(s.attributes) == {"process.executable.name", "process.pid", "process.exit.code"} for s in ffmpeg
    )
    # Progress publishes: client spans of the runner answered by the progress service.
    publishes = [s for s in trace if s.service == "vidsynth-progress" and s.name.endswith("/PublishEvents")]
    assert len(publishes) >= len(STAGES)
    runner_ids = {s.span_id for s in trace if s.service == "vidsynth-stage-runner"}
    assert all(p.parent_span_id in runner_ids for p in publishes)
    # Every span's parent is in the trace, but the gateway's (the caller's own span).
    ids = {s.span_id for s in trace}
    assert [s for s in trace if s.parent_span_id not in ids] == [http]


def test_the_webhook_delivery_carries_the_jobs_trace(finished_job, traced_mesh) -> None:
    trace = traces_of(finished_job["spans"])[finished_job["job_trace"]]
    delivery = one(trace, name="webhook delivery")
    assert delivery.kind == "client" and delivery.attributes["server.address"] == "127.0.0.1"
    assert delivery.attributes["vidsynth.webhook.delivered"] is True
    sent = traced_mesh.webhooks.deliveries[-1]
    assert sent["traceparent"].split("-")[1:3] == [finished_job["job_trace"], delivery.span_id]
    assert "baggage" not in sent


def test_each_upload_check_is_a_span_of_the_uploads_trace(finished_job) -> None:
    traces = traces_of(finished_job["spans"])
    face = traces[finished_job["face_trace"]]
    voice = traces[finished_job["voice_trace"]]
    face_checks = {s.name for s in face if s.service == "vidsynth-validator"}
    assert {
        "check scan",
        "check type",
        "check image",
        "check decode",
        "check face",
        "check safe copy",
        "store safe copy",
    } <= face_checks
    image = one(face, name="check image")
    assert {one(face, name=f"check {n}").parent_span_id for n in ("decode", "face", "safe copy")} == {
        image.span_id
    }
    scan = one(face, name="check scan")
    assert scan.attributes == {"vidsynth.scan.scanned": True, "vidsynth.scan.clean": True}
    assert one(face, name="check type").attributes["vidsynth.upload.detected_type"] == "image/jpeg"
    voice_checks = {s.name for s in voice if s.service == "vidsynth-validator"}
    assert {"check scan", "check type", "check audio", "store safe copy", "ffmpeg"} <= voice_checks
    # Both reached the session service (ownership, registration) in the same trace.
    assert {"vidsynth-gateway", "vidsynth-validator", "vidsynth-session"} <= {s.service for s in voice}


def test_no_span_carries_keys_scripts_or_file_names(finished_job, traced_mesh) -> None:
    everything = b"".join(traced_mesh.receiver.bodies)
    secrets = [
        *API_KEYS.values(),
        MESH_TOKEN,
        WEBHOOK_SECRET,
        "secret-path-token",  # the webhook URL's path
        FACE_NAME,
        VOICE_NAME,
        "Quokka",
        "private sentence",
        "Bearer",
    ]
    leaked = [s for s in secrets if s.encode() in everything]
    assert leaked == []
    # The scan sees the real export (it holds the job's own ids as attribute strings).
    assert finished_job["job"]["job_id"].encode() in everything


def test_each_process_reports_its_own_service_name(finished_job) -> None:
    services = {s.service for s in finished_job["spans"]}
    assert services >= {
        "vidsynth-gateway",
        "vidsynth-session",
        "vidsynth-validator",
        "vidsynth-stage-runner",
        "vidsynth-progress",
    }
    assert "one-name-for-all" not in services


def test_the_jobs_log_lines_carry_its_trace_id(finished_job, traced_mesh) -> None:
    job_id = finished_job["job"]["job_id"]
    lines = []
    for line in traced_mesh.mesh.output().splitlines():
        if not line.startswith("[stage_runner] {"):
            continue
        entry = json.loads(line.split(" ", 1)[1])
        if entry.get("job_id") == job_id:
            lines.append(entry)
    events = {entry["event"] for entry in lines}
    assert {"job.queued", "job.started", "job.completed"} <= events, events
    assert {entry.get("trace_id") for entry in lines} == {finished_job["job_trace"]}
    span_ids = {s.span_id for s in finished_job["spans"] if s.trace_id == finished_job["job_trace"]}
    assert {entry["span_id"] for entry in lines} <= span_ids


def test_a_malformed_traceparent_is_ignored(traced_mesh) -> None:
    receiver = traced_mesh.receiver
    with httpx.Client(base_url=traced_mesh.url, timeout=30) as client:
        answers = [
            client.post("/v1/sessions", headers={**bearer("alice"), "traceparent": bad}, json={})
            for bad in ("garbage", "00-zzzz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01")
        ]
    assert [a.status_code for a in answers] == [201, 201, 201]
    request_ids = {a.headers["x-request-id"] for a in answers}

    def gateway_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s
            for s in spans
            if s.service == "vidsynth-gateway" and s.attributes.get("vidsynth.request_id") in request_ids
        ]

    def reached_session(spans: list[ReceivedSpan], trace_id: str) -> bool:
        return any(
            s.trace_id == trace_id and s.service == "vidsynth-session" and s.name.endswith("/CreateSession")
            for s in spans
        )

    spans = receiver.wait_for(
        lambda got: (
            len(gateway_spans(got)) == 3 and all(reached_session(got, s.trace_id) for s in gateway_spans(got))
        )
    )
    started = gateway_spans(spans)
    # Each request started a trace of its own, carried on to the session service.
    assert all(s.parent_span_id == "" and s.status_code != 2 for s in started)
    assert len({s.trace_id for s in started}) == 3


async def test_the_edge_passes_trace_context_over_http_and_grpc(traced_mesh) -> None:
    """Both of the edge's doors (nginx proxy_pass and grpc_pass) hand `traceparent` on."""
    http_parent, http_trace, http_span = new_traceparent()
    grpc_parent, grpc_trace, grpc_span = new_traceparent()
    with httpx.Client(base_url=traced_mesh.url, timeout=30) as client:  # the edge's HTTP port
        assert (
            client.post(
                "/v1/sessions", headers={**bearer("alice"), "traceparent": http_parent}, json={}
            ).status_code
            == 201
        )
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{traced_mesh.mesh.grpc_port}"
    ) as channel:  # its gRPC port
        await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(),
            metadata=(*user_metadata("alice"), ("traceparent", grpc_parent)),
            timeout=30,
        )

    def arrived(spans: list[ReceivedSpan]) -> bool:
        return any(s.trace_id == http_trace and s.service == "vidsynth-session" for s in spans) and any(
            s.trace_id == grpc_trace for s in spans
        )

    spans = await asyncio.to_thread(traced_mesh.receiver.wait_for, arrived)
    gateway = one([s for s in spans if s.trace_id == http_trace], service="vidsynth-gateway")
    assert gateway.parent_span_id == http_span
    session = one([s for s in spans if s.trace_id == grpc_trace], service="vidsynth-session")
    assert session.name == "vidsynth.v1.SessionService/CreateSession" and session.parent_span_id == grpc_span
