"""The attacks campaign (issue 15): the issue's cheap resource attacks, tried as an attacker
would against real `vidsynth up` process trees on loopback, bounded in count and time, each
with the figures docs/reliability.md reports. Nothing here builds an attack of its own: the
bombs, trickling uploads and upload helpers are those of tests/validator/bombs.py and
tests/reliability/test_attacks_uploads.py, the start+cancel cycles and the queue flood those of
tests/reliability/children_left.py and fair_share.py, the operators' tools those of tests/e2e. Shared by
scripts/reliability.py; the suites above assert the same outcomes case by case.

Every case records what it saw and, instead of stopping at the first failed expectation,
lists the expectations it missed (`problems`), so one run reports every figure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.e2e import test_admin_sessions as admin_sessions
from tests.e2e.test_keys_file import accepted_everywhere, add_key, keys_cli, outcomes, refused_everywhere
from tests.reliability import children_left, fair_share
from tests.reliability import test_attacks_uploads as uploads
from tests.reliability.faults import FAULT_MESH_ENV
from tests.support.identities import API_KEYS, bearer
from tests.support.mesh_process import MeshProcess
from tests.validator import bombs
from tests.validator.corpus import PORTRAIT
from vidsynth.http_client import GatewayClient

MB = 1024 * 1024
# The acceptance bounds.
REFUSED_WITHIN_SECONDS = 10.0
RSS_RETURN_MB = 250.0
OTHER_USER_SLOWDOWN = 3.0  # the other user's upload: at most 3x its time alone, plus 2 s
OTHER_USER_SLACK_SECONDS = 2.0
SECOND_IN_LINE = 2
KEY_REFUSED_WITHIN_SECONDS = 6.0
# Jobs of a few seconds per stage, so the operator finds them running or waiting.
JOBS_MESH_ENV = {**FAULT_MESH_ENV, "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "2"}
BUSY_SESSIONS = 6
CANCELLED_JOBS = 20


@dataclass
class AttackResult:
    attack: str
    tried: str
    outcome: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def held(self) -> bool:
        return not self.problems

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


# --- measuring a mesh ------------------------------------------------------------------------


def mesh_tree(mesh: MeshProcess) -> list[psutil.Process]:
    """`up` and every process under it (services, gateway, clamd, decode workers)."""
    root = psutil.Process(mesh.process.pid)
    return [p for p in [root, *root.children(recursive=True)] if _running(p)]


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (pid 1 here does not reap orphans: a zombie is gone)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def mesh_rss(mesh: MeshProcess) -> int:
    total = 0
    for process in mesh_tree(mesh):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class MeshRssPeak:
    """Samples the whole mesh's RSS every 100 ms on a thread; keeps the peak."""

    mesh: MeshProcess
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MeshRssPeak:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, mesh_rss(self.mesh))
            time.sleep(0.1)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def settle_mesh(mesh: MeshProcess, seconds: float = 30.0) -> int:
    """The mesh's RSS once it is quiet (no change of 5 MB over a second)."""
    deadline = time.monotonic() + seconds
    last = mesh_rss(mesh)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = mesh_rss(mesh)
        if abs(now - last) < 5 * MB:
            return now
        last = now
    return last


def _seconds(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def _other_user(result: AttackResult, baseline: float, during: list[uploads.Outcome]) -> None:
    """The other user's upload(s) during the attack, against their time alone."""
    result.figures["other user's upload"] = (
        f"{baseline:.2f} s alone, {_seconds(o.seconds for o in during)} during"
    )
    for outcome in during:
        result.expect(
            outcome.status == 201, f"the other user's upload answered {outcome.status} {outcome.code}"
        )
        result.expect(
            outcome.seconds < OTHER_USER_SLOWDOWN * baseline + OTHER_USER_SLACK_SECONDS,
            f"the other user's upload took {outcome.seconds:.2f} s (alone {baseline:.2f} s)",
        )


# --- uploads (tests/reliability/test_attacks_uploads.py) -------------------------------------


async def jpeg_scan_bombs(mesh: MeshProcess) -> AttackResult:
    """Four progressive JPEGs whose refinement scan repeats ~400 times, from one user, while
    another uploads a portrait."""
    bomb = bombs.scan_bomb()
    result = AttackResult(
        "image bombs: JPEG scans",
        f"4 x {len(bomb) // 1024} KB progressive JPEGs with {bombs.scan_count(bomb)} scans from bob, "
        "alice uploading a portrait meanwhile",
    )
    photo = PORTRAIT.read_bytes()
    async with httpx.AsyncClient(base_url=mesh.url, timeout=60) as http:
        alice, bob = await uploads.new_session(http, "alice"), await uploads.new_session(http, "bob")
        baseline = await uploads.baseline_seconds(http, alice, photo)
        uploads.settle(mesh)
        cpu_before = uploads.tree_cpu_seconds(mesh)
        *bombed, during = await asyncio.gather(
            *(uploads.upload(http, bob, "bob", f"bomb{i}.jpg", bomb) for i in range(4)),
            uploads.alice_during(http, alice, photo),
        )
        cpu_per_bomb = (uploads.tree_cpu_seconds(mesh) - cpu_before) / len(bombed)
    codes = sorted({f"{o.status} {o.code}" for o in bombed})
    result.outcome = f"each refused with {', '.join(codes)}"
    result.figures["refused after"] = _seconds(o.seconds for o in bombed)
    result.figures["validator CPU per bomb"] = f"{cpu_per_bomb:.2f} s"
    result.expect(all(o.code == "IMAGE_TOO_COMPLEX" for o in bombed), f"bomb answers {codes}")
    result.expect(all(o.seconds < REFUSED_WITHIN_SECONDS for o in bombed), "a bomb took over 10 s")
    _other_user(result, baseline, [during])
    return result


async def decoding_bombs(mesh: MeshProcess, rounds: int = 2) -> AttackResult:
    """PNGs of zeros (~150 KB, 160 MB decoded) and 40 MP JPEGs padded past the expansion check
    (they do decode, in worker processes), two of each per round, another user uploading."""
    zeros, cpu = bombs.zeros_png(), bombs.cpu_bomb()
    result = AttackResult(
        "image bombs: decoded size",
        f"{rounds} rounds of 2 x {len(zeros) // 1024} KB PNGs of zeros (6300x6300 RGBA) and "
        f"2 x {len(cpu) // MB} MB 40 MP progressive JPEGs from bob, alice uploading meanwhile",
    )
    photo = PORTRAIT.read_bytes()
    async with httpx.AsyncClient(base_url=mesh.url, timeout=60) as http:
        alice, bob = await uploads.new_session(http, "alice"), await uploads.new_session(http, "bob")
        baseline = await uploads.baseline_seconds(http, alice, photo)
        before, validator_before = settle_mesh(mesh), uploads.settle(mesh)
        cpu_before = uploads.tree_cpu_seconds(mesh)
        answers = []
        with MeshRssPeak(mesh) as whole, uploads.RssMonitor(mesh) as validator:
            for _ in range(rounds):
                answers.append(
                    await asyncio.gather(
                        *(uploads.upload(http, bob, "bob", f"zeros{i}.png", zeros) for i in range(2)),
                        *(uploads.upload(http, bob, "bob", f"cpu{i}.jpg", cpu) for i in range(2)),
                        uploads.alice_during(http, alice, photo),
                    )
                )
        cpu_per_bomb = (uploads.tree_cpu_seconds(mesh) - cpu_before) / (4 * rounds)
    after, validator_after = settle_mesh(mesh), uploads.settle(mesh)
    pngs = [o for round_ in answers for o in round_[:2]]
    jpegs = [o for round_ in answers for o in round_[2:4]]
    result.outcome = (
        f"PNGs refused with {', '.join(sorted({o.code for o in pngs}))}; JPEGs (decoded in capped "
        f"workers) with {', '.join(sorted({o.code for o in jpegs}))}"
    )
    result.figures["refused after"] = (
        f"PNGs {_seconds(o.seconds for o in pngs)}; JPEGs {_seconds(o.seconds for o in jpegs)}"
    )
    result.figures["validator CPU per bomb"] = f"{cpu_per_bomb:.2f} s"
    result.figures["mesh RSS before / peak / after"] = (
        f"{before / MB:.0f} / {whole.peak / MB:.0f} / {after / MB:.0f} MB"
    )
    result.figures["validator tree RSS before / peak / after"] = (
        f"{validator_before / MB:.0f} / {validator.peak / MB:.0f} / {validator_after / MB:.0f} MB"
    )
    result.expect(all(o.code == "IMAGE_TOO_COMPLEX" for o in pngs), "a PNG bomb was not IMAGE_TOO_COMPLEX")
    result.expect(
        all((o.status, o.code) in uploads.JPEG_BOMB_REFUSALS for o in jpegs), "a JPEG bomb was not refused"
    )
    result.expect(all(o.seconds < REFUSED_WITHIN_SECONDS for o in pngs), "a PNG bomb took over 10 s")
    result.expect(
        (after - before) / MB < RSS_RETURN_MB, f"the mesh kept {(after - before) / MB:.0f} MB after the burst"
    )
    _other_user(result, baseline, [round_[4] for round_ in answers])
    return result


async def trickling_uploads(mesh: MeshProcess) -> AttackResult:
    """Eight uploads that send a byte every 8 s from one user, another user uploading."""
    result = AttackResult(
        "trickling uploads",
        "8 uploads from bob sending 1 byte every 8 s, alice uploading a portrait meanwhile",
    )
    photo = PORTRAIT.read_bytes()
    async with httpx.AsyncClient(base_url=mesh.url, timeout=60) as http:
        alice, bob = await uploads.new_session(http, "alice"), await uploads.new_session(http, "bob")
        baseline = await uploads.baseline_seconds(http, alice, photo)
        stop = threading.Event()
        started = time.monotonic()
        trickles = [
            asyncio.ensure_future(asyncio.to_thread(uploads.trickle, mesh.http_port, bob, "bob", stop, 8.0))
            for _ in range(8)
        ]
        try:
            await asyncio.sleep(1.0)
            during = await uploads.upload(http, alice, "alice", "portrait.jpg", photo)
            answers = await asyncio.wait_for(asyncio.gather(*trickles), uploads.RATE_GRACE_SECONDS + 20)
        finally:
            stop.set()
    ended = sorted(uploads.answer_code(a) for a in answers)
    counts: dict[str, int] = {}
    for status, code, _ in ended:
        counts[f"{status} {code}"] = counts.get(f"{status} {code}", 0) + 1
    result.outcome = ", ".join(f"{n} x {what}" for what, n in sorted(counts.items()))
    result.figures["all cut within"] = f"{time.monotonic() - started:.1f} s"
    result.expect(all(retry for _, _, retry in ended), "a refusal had no Retry-After")
    result.expect(
        {code for _, code, _ in ended} <= {"UPLOAD_TOO_SLOW", "TOO_MANY_UPLOADS"}, f"trickle answers {ended}"
    )
    _other_user(result, baseline, [during])
    return result


# --- jobs (tests/reliability/children_left.py, tests/reliability/fair_share.py) --------------


async def start_and_cancel(mesh: MeshProcess, jobs: int = CANCELLED_JOBS) -> AttackResult:
    """Jobs on the built-in backends (real ffmpeg, espeak-ng, Piper) cancelled at random moments;
    then every process still running under the services, bar each one's resident worker."""
    low, high = children_left.CANCEL_AFTER_SECONDS
    result = AttackResult(
        "start + cancel",
        f"{jobs} jobs on the built-in backends, each cancelled {low:g} to {high:g} s after it started",
    )
    cancels = await children_left.start_and_cancel(mesh, jobs)
    result.outcome = f"{cancels.cancelled}/{cancels.cycles} cancelled"
    result.figures["cancels that hit a running helper"] = (
        f"{cancels.helpers_at_cancel} ({', '.join(sorted(cancels.helper_names)) or 'none'})"
    )
    result.figures["helpers left after the cancels"] = str(len(cancels.left))
    result.expect(cancels.left == [], f"left running: {cancels.left}")
    result.expect(cancels.cancelled == cancels.cycles, f"not cancelled: {cancels.other_outcomes}")
    return result


async def queue_flood(mesh: MeshProcess) -> AttackResult:
    """One user starts more jobs than her share (default queue limits), then another one."""
    result = AttackResult(
        "queue flood",
        f"alice starts {fair_share.HEAVY_JOBS + 1} jobs (default queue limits), then bob one",
    )
    flood = await fair_share.heavy_user(mesh)
    refused = ", ".join(sorted(set(flood.heavy_refused))) or "nothing"
    result.outcome = f"{flood.heavy_accepted} of alice's accepted, the rest refused with {refused}"
    result.figures["bob's queue position"] = f"{flood.other_position} (ETA {flood.other_eta_seconds:.0f} s)"
    result.figures["alice's jobs started before bob's"] = str(flood.heavy_started_first)
    result.figures["Retry-After"] = ", ".join(f"{r} s" for r in flood.heavy_retry_after) or "none"
    result.expect(0 < flood.other_position <= SECOND_IN_LINE, f"bob's job at position {flood.other_position}")
    result.expect(flood.heavy_started_first == 0, f"{flood.heavy_started_first} of alice's jobs went first")
    return result


# --- operators (tests/e2e) -------------------------------------------------------------------


async def force_end_abuse(mesh: MeshProcess, sessions: int = BUSY_SESSIONS) -> AttackResult:
    """One user keeps sessions busy with jobs (running or waiting); an admin force-ends them
    all over HTTP: each job is cancelled, and the session's files and events are removed."""
    result = AttackResult(
        "operator force-ends a user's sessions",
        f"alice holds {sessions} sessions with a job each (running or queued); root force-ends them "
        "with `DELETE /v1/admin/sessions/{id}?force=true`",
    )
    busy = [await admin_sessions.busy_session_async(mesh, "alice") for _ in range(sessions)]
    took, cancelled = [], 0
    async with httpx.AsyncClient(base_url=mesh.url, headers=bearer("root"), timeout=60) as root:
        for one in busy:
            started = time.monotonic()
            ended = await root.delete(f"/v1/admin/sessions/{one.session_id}", params={"force": "true"})
            took.append(time.monotonic() - started)
            result.expect(ended.status_code == 200, f"force-end answered {ended.status_code} {ended.text}")
            cancelled += ended.status_code == 200 and ended.json()["cancelled_job_id"] == one.job_id
    async with GatewayClient(mesh.url, API_KEYS["alice"]) as alice:
        states = [(await alice.get_job(one.job_id))["state"] for one in busy]
    left_on_disk = sum((mesh.data_dir / "sessions" / one.session_id).exists() for one in busy)
    result.outcome = (
        f"{cancelled}/{sessions} jobs cancelled, {sessions - left_on_disk}/{sessions} sessions' files removed"
    )
    result.figures["force-end of a busy session"] = (
        f"max {max(took):.2f} s, median {sorted(took)[len(took) // 2]:.2f} s"
    )
    result.expect(cancelled == sessions, f"cancelled {cancelled} of {sessions}")
    result.expect(set(states) == {"cancelled"}, f"job states after the force-ends: {states}")
    result.expect(left_on_disk == 0, f"{left_on_disk} session directories left")
    return result


async def revoked_key(mesh: MeshProcess, keys_path: Path) -> AttackResult:
    """An abusive key revoked with `vidsynth keys revoke`: refused by the gateway and by every
    service, without a restart."""
    result = AttackResult(
        "revoked API key",
        "mallory's key (from the keys file) revoked with `vidsynth keys revoke` while in use",
    )
    key = await asyncio.to_thread(add_key, keys_path, "mallory")
    await asyncio.to_thread(_wait, mesh, key, accepted_everywhere)
    revoked = await asyncio.to_thread(keys_cli, keys_path, "revoke", key)
    result.expect(revoked.returncode == 0, revoked.stderr)
    took = await asyncio.to_thread(_wait, mesh, key, refused_everywhere)
    result.outcome = "401 UNAUTHENTICATED at the gateway, UNAUTHENTICATED from every service"
    result.figures["refused everywhere after"] = f"{took:.2f} s"
    result.expect(took < KEY_REFUSED_WITHIN_SECONDS, f"refused only after {took:.2f} s")
    return result


def _wait(mesh: MeshProcess, key: str, condition) -> float:
    started = time.monotonic()
    while not condition(outcomes(mesh, key)) and time.monotonic() - started < 2 * KEY_REFUSED_WITHIN_SECONDS:
        time.sleep(0.05)
    return time.monotonic() - started


# --- the campaign ----------------------------------------------------------------------------

Case = Callable[[MeshProcess], Awaitable[AttackResult]]


async def _timed(case: Case, mesh: MeshProcess) -> AttackResult:
    started = time.monotonic()
    try:
        result = await case(mesh)
    except Exception as error:  # one broken case must not hide the others' figures
        name = getattr(case, "__name__", "attack")
        result = AttackResult(name, case.__doc__ or "", problems=[f"crashed: {error!r}"])
    result.seconds = time.monotonic() - started
    return result


def run_on_mesh(work: Path, name: str, env: dict[str, str], cases: list[Case]) -> list[AttackResult]:
    """Starts one mesh, runs `cases` on it in turn, stops it."""
    mesh = MeshProcess(work / name / "var", extra_env=env)
    results = []
    try:
        mesh.wait_up(120)
        for case in cases:
            mesh.wait_ready(90)
            result = asyncio.run(_timed(case, mesh))
            print(f"[attacks] {result.attack}: {result.outcome} {result.figures} {result.problems or 'held'}")
            results.append(result)
    finally:
        mesh.stop()
    return results


def run_attacks(work: Path) -> list[AttackResult]:
    keys_path = work / "api-keys"
    add_key(keys_path, "seed")
    jobs_env = {**JOBS_MESH_ENV, "VIDSYNTH_API_KEYS_FILE": str(keys_path)}
    return [
        *run_on_mesh(
            work,
            "uploads",
            uploads.ATTACK_ENV,
            [jpeg_scan_bombs, decoding_bombs, trickling_uploads, queue_flood],
        ),
        *run_on_mesh(work, "children", children_left.BUILTIN_MESH_ENV, [start_and_cancel]),
        *run_on_mesh(work, "jobs", jobs_env, [force_end_abuse, lambda mesh: revoked_key(mesh, keys_path)]),
    ]
