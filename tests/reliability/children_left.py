"""Helper processes (ffmpeg, ffprobe, espeak-ng, external commands) that outlive their job:
start and cancel jobs at random moments on a real mesh running the built-in backends, then
look for any process still running under the mesh's services (issue 15, item 2). Shared by
tests/reliability and scripts/reliability.py."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import psutil

from tests.reliability.faults import FACE, VOICE, child_pid
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient, GatewayError

SERVICES = ("session", "validator", "stage_runner", "progress", "cleanup", "gateway")
# Built-in backends, and limits that let two sessions of one user start jobs back to back.
BUILTIN_MESH_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "auto",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
    "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "5000",
    "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS": "2",
    "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS_PER_USER": "2",
}
# Long enough (a minute of speech) that every cancel lands mid-job.
SCRIPT = "This sentence keeps the built-in voice, animation and assembly busy for a while. " * 12
# From the 50 ms up to a few seconds: voice synthesis, audio decoding, first frames.
CANCEL_AFTER_SECONDS = (0.05, 4.0)
HELPER_WAIT_SECONDS = 30.0
SETTLE_SECONDS = 10.0
# Kept between requests by design, one per service (started through libs.common.children,
# ended at shutdown), so not helpers that outlived a job; their own children are.
RESIDENT_WORKERS = ("services.validator.decode_worker", "services.stage_runner.media.speech_worker")


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (pid 1 here does not reap orphans: a zombie is gone)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    except psutil.NoSuchProcess:
        return f"{process.pid} (gone)"


def _resident_module(process: psutil.Process) -> str:
    try:
        argv = process.cmdline()
    except psutil.NoSuchProcess:
        return ""
    return next((m for m in RESIDENT_WORKERS if "-m" in argv and m in argv), "")


def helpers_of(pid: int) -> list[psutil.Process]:
    """Every running descendant of process `pid` but its one resident worker per kind."""
    try:
        descendants = [p for p in psutil.Process(pid).children(recursive=True) if _running(p)]
    except psutil.NoSuchProcess:
        return []
    helpers, residents = [], set()
    for process in descendants:
        module = _resident_module(process)
        if module and module not in residents and process.ppid() == pid:
            residents.add(module)
            continue
        helpers.append(process)
    return helpers


def all_descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if _running(p)]
    except psutil.NoSuchProcess:
        return []


def mesh_helpers(mesh: MeshProcess) -> list[psutil.Process]:
    """Every running descendant of every service process of the mesh, resident workers aside."""
    found = []
    for service in SERVICES:
        found += helpers_of(child_pid(mesh, service))
    return found


def still_running(processes: list[psutil.Process], timeout: float = SETTLE_SECONDS) -> list[psutil.Process]:
    """Those of `processes` still running after `timeout` (a killed process may take a moment)."""
    deadline = time.monotonic() + timeout
    left = [p for p in processes if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _running(p)]
    return left


@dataclass
class CancelResult:
    cycles: int = 0
    cancelled: int = 0
    # Cycles whose cancel landed while the job had a helper process running.
    helpers_at_cancel: int = 0
    helper_names: set[str] = field(default_factory=set)
    other_outcomes: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


async def ready_session(client: GatewayClient) -> str:
    session_id = (await client.create_session("children"))["session_id"]
    await client.upload(session_id, "face", FACE)
    await client.upload(session_id, "voice", VOICE)
    return session_id


async def _helper_seen(mesh: MeshProcess, patience: float) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and not helpers_of(child_pid(mesh, "stage_runner")):
        await asyncio.sleep(0.01)


async def _cycles(
    mesh: MeshProcess,
    client: GatewayClient,
    session_id: str,
    count: int,
    rng: random.Random,
    result: CancelResult,
) -> None:
    for cycle in range(count):
        job = await client.start_job(session_id, {"script_text": SCRIPT})
        if cycle % 2:
            # Half the cancels land while a helper (ffmpeg, ffprobe, ...) runs, however
            # loaded or fast the machine: a random moment after the first one is seen, in
            # its run or, when that short one has ended by then, in the next one's.
            await _helper_seen(mesh, HELPER_WAIT_SECONDS)
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            await _helper_seen(mesh, HELPER_WAIT_SECONDS)
        else:
            await asyncio.sleep(rng.uniform(*CANCEL_AFTER_SECONDS))
        helpers = helpers_of(child_pid(mesh, "stage_runner"))
        if helpers:
            result.helpers_at_cancel += 1
            result.helper_names |= {p.name() for p in helpers if _running(p)}
        result.cycles += 1
        try:
            ended = await client.cancel_job(job["job_id"])
        except GatewayError as error:
            result.other_outcomes.append(error.code)
            continue
        if ended["state"] == "cancelled":
            result.cancelled += 1
        else:
            result.other_outcomes.append(ended["state"])


async def start_and_cancel(
    mesh: MeshProcess, jobs: int = 20, sessions: int = 2, seed: int = 15
) -> CancelResult:
    """`jobs` start+cancel cycles over `sessions` sessions side by side, each cancel a random
    moment after its start; then the helpers still running under any service."""
    result = CancelResult()
    rng = random.Random(seed)
    async with GatewayClient(mesh.url, API_KEYS["alice"], timeout=120) as client:
        session_ids = [await ready_session(client) for _ in range(sessions)]
        await asyncio.gather(*(_cycles(mesh, client, s, jobs // sessions, rng, result) for s in session_ids))
    result.left = [describe(p) for p in await asyncio.to_thread(still_running, mesh_helpers(mesh))]
    return result
