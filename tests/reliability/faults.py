"""The fault campaign: a job runs through a real `vidsynth up` process tree while one
child is SIGKILLed (and restarted by `up`) or SIGSTOPped then SIGCONTed. Each case checks
that the job ends (completed, or failed with a catalogued code), that its accepted uploads
and finished outputs are still there, and that an SSE subscriber (through the gateway,
resuming with Last-Event-ID) and a direct gRPC subscriber (resuming with `after_seq`) saw
every event of the session exactly once. Shared by tests/reliability and
scripts/reliability.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from libs.common.errors import CATALOG
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import API_KEYS, user_metadata
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import TERMINAL_EVENTS, GatewayClient
from vidsynth.v1 import progress_pb2, progress_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
FAULT_SERVICES = ("session", "validator", "progress", "stage_runner", "gateway")
FAULT_SIGNALS = ("SIGKILL", "SIGSTOP")
# Simulated stages of this length make a job last a few seconds: long enough to hit.
FAULT_MESH_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "simulation",
    "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "0.6",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "5000",
    "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1000",
    "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "5000",
    "VIDSYNTH_SESSION_MAX_PER_USER": "1000",
}
STOP_SECONDS = 2.0
MAX_LOG_LINES = 20
CASE_TIMEOUT_SECONDS = 120.0
PROGRESS_PORT_OFFSET = SERVICE_PORT_OFFSETS["progress"]
GRPC_PROGRESS_EVENT_NAMES = {
    progress_pb2.EVENT_TYPE_JOB_COMPLETED: "job.completed",
    progress_pb2.EVENT_TYPE_JOB_FAILED: "job.failed",
    progress_pb2.EVENT_TYPE_JOB_CANCELLED: "job.cancelled",
}


@dataclass
class FaultResult:
    service: str
    signal: str
    outcome: str = ""  # job.completed / job.failed / job.cancelled
    error_code: str = ""
    sse_seqs: list[int] = field(default_factory=list)
    grpc_seqs: list[int] = field(default_factory=list)
    grpc_resumes: int = 0
    outputs_ok: bool = False
    assets_kept: bool = False
    restarted: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems


def child_pid(mesh: MeshProcess, service: str) -> int:
    """The current pid of `up`'s child `service` (it changes when `up` restarts it)."""
    marker = f"services.{service}"
    for child in psutil.Process(mesh.process.pid).children(recursive=True):
        try:
            if marker in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
        except psutil.NoSuchProcess:
            continue
    raise LookupError(f"no running child {service}")


def gapless(seqs: list[int]) -> bool:
    """Every seq from the first one seen on, once each, in order."""
    return bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def sse_subscriber(client: GatewayClient, session_id: str, result: FaultResult) -> str:
    """Follows the session over SSE through every drop; the terminal event's type."""
    async for event in client.events(session_id, max_resumes=60):
        result.sse_seqs.append(int(event["seq"]))
        if event.get("type") in TERMINAL_EVENTS:
            if event.get("error"):
                result.error_code = event["error"].get("code", "")
            return event["type"]
    return ""


async def grpc_subscriber(mesh: MeshProcess, session_id: str, result: FaultResult) -> None:
    """Subscribes straight to ProgressService with the user's key, resuming after a drop."""
    target = f"127.0.0.1:{mesh.grpc_port + PROGRESS_PORT_OFFSET}"
    after = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = progress_pb2_grpc.ProgressServiceStub(channel)
        while True:
            try:
                request = progress_pb2.SubscribeRequest(session_id=session_id, after_seq=after)
                async for event in stub.Subscribe(request, metadata=user_metadata("alice"), timeout=60):
                    result.grpc_seqs.append(event.seq)
                    after = event.seq
                    if event.type in GRPC_PROGRESS_EVENT_NAMES:
                        return
            except grpc.RpcError:
                pass
            result.grpc_resumes += 1
            await asyncio.sleep(min(0.2 * result.grpc_resumes, 1.0))


async def _first_stage(client: GatewayClient, job_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await client.get_job(job_id)
        if job.get("state") in ("running", "completed", "failed", "cancelled"):
            return
        await asyncio.sleep(0.1)


async def _await_restart(mesh: MeshProcess, service: str, old_pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if child_pid(mesh, service) != old_pid:
                return True
        except LookupError:
            pass
        await asyncio.sleep(0.1)
    return False


async def _with_retries(call, attempts: int = 40):
    """A setup call during which the mesh may still be recovering from the previous case."""
    for attempt in range(attempts):
        try:
            return await call()
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    return None


async def run_fault_case(
    mesh: MeshProcess,
    service: str,
    sig: str,
    workdir: Path,
    pid_of: Callable[[], int] | None = None,
    restart: Callable[[int], Awaitable[bool]] | None = None,
) -> FaultResult:
    """`pid_of`/`restart` target a process `up` does not supervise (Redis): its pid, and
    how to bring it back after SIGKILL (by default `up` restarts its own children)."""
    result = FaultResult(service, sig)
    started = time.monotonic()
    first_line = len(mesh.lines)
    async with GatewayClient(mesh.url, API_KEYS["alice"], timeout=30) as client:
        session_id = (await _with_retries(lambda: client.create_session(f"fault-{service}")))["session_id"]
        await _with_retries(lambda: client.upload(session_id, "face", FACE))
        await _with_retries(lambda: client.upload(session_id, "voice", VOICE))
        body = {"script_text": "A fault is injected while I speak."}
        # Retried with an Idempotency-Key: a retry after a lost answer is the same job.
        job = await _with_retries(lambda: client.start_job(session_id, body, idempotency_key=session_id))
        sse = asyncio.create_task(sse_subscriber(client, session_id, result))
        grpc_sub = asyncio.create_task(grpc_subscriber(mesh, session_id, result))
        await _first_stage(client, job["job_id"])
        pid = pid_of() if pid_of else child_pid(mesh, service)
        os.kill(pid, signal.SIGKILL if sig == "SIGKILL" else signal.SIGSTOP)
        if sig == "SIGSTOP":
            await asyncio.sleep(STOP_SECONDS)
            os.kill(pid, signal.SIGCONT)
            result.restarted = True
        elif restart is not None:
            result.restarted = await restart(pid)
        else:
            result.restarted = await _await_restart(mesh, service, pid)
        try:
            async with asyncio.timeout(CASE_TIMEOUT_SECONDS):
                result.outcome = await sse
                await grpc_sub
        except TimeoutError:
            result.problems.append("the job did not end in time")
            sse.cancel()
            grpc_sub.cancel()
        except Exception as error:
            result.problems.append(f"subscriber failed: {error!r}")
            grpc_sub.cancel()
        await _check_after(client, session_id, job["job_id"], workdir, result)
    result.seconds = time.monotonic() - started
    if result.problems:
        # What the mesh logged at error level during the case: the first clue when one fails in CI.
        result.problems += [line[:2000] for line in error_lines(mesh.lines[first_line:])][-MAX_LOG_LINES:]
    return result


def error_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if '"level": "error"' in line or "Traceback" in line]


async def _check_after(
    client: GatewayClient, session_id: str, job_id: str, workdir: Path, result: FaultResult
) -> None:
    if not result.restarted:
        result.problems.append(f"{result.service} was not restarted")
    if result.outcome == "job.failed" and result.error_code not in CATALOG:
        result.problems.append(f"failed with an uncatalogued code {result.error_code!r}")
    elif result.outcome not in ("job.completed", "job.failed"):
        result.problems.append(f"unexpected outcome {result.outcome!r}")
    for name, seqs in (("SSE", result.sse_seqs), ("gRPC", result.grpc_seqs)):
        if not gapless(seqs) or seqs[0] != 1:
            result.problems.append(f"{name} subscriber saw a gap or a repeat: {seqs}")
    session = await _with_retries(lambda: client._json("GET", f"/v1/sessions/{session_id}"))
    kinds = sorted(asset.get("kind", "") for asset in session.get("assets", []))
    result.assets_kept = len(kinds) == 2
    if not result.assets_kept:
        result.problems.append(f"accepted uploads missing: {kinds}")
    if result.outcome == "job.completed":
        video = await _with_retries(
            lambda: client.download(job_id, "video", workdir / f"{result.service}-{result.signal}.mp4")
        )
        result.outputs_ok = video.stat().st_size > 0
        if not result.outputs_ok:
            result.problems.append("the finished video is empty")
