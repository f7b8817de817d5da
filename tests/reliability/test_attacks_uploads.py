"""Issue 15, items 1 and 3 (uploads), tried as an attacker would against a real `vidsynth
up` mesh, through the gateway: image bombs from one user while another uploads a
portrait, a hang-up in the middle of a decode, and one user's trickling uploads.

Each case measures the other user's upload against a baseline taken in the same test,
and the bombs case measures the validator's process tree (RSS before, at its peak, after;
CPU per bomb). The figures are printed (`-s`) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

import grpc
import httpx
import psutil
import pytest

from libs.common.settings import SERVICE_PORT_OFFSETS
from services.validator.config import ValidatorSettings
from tests.reliability.faults import FAULT_MESH_ENV
from tests.support.identities import bearer, user_metadata
from tests.support.mesh_process import MeshProcess
from tests.validator import bombs
from tests.validator.corpus import FACE, PORTRAIT
from tests.validator.uploading import grpc_requests
from vidsynth.v1 import validator_pb2_grpc

pytestmark = pytest.mark.slow

RATE_GRACE_SECONDS = 4.0
ATTACK_ENV = {
    **FAULT_MESH_ENV,
    # Everything else at its default (8 upload slots, 4 per user, 4 s of CPU per photo).
    "VIDSYNTH_VALIDATOR_UPLOAD_RATE_GRACE_SECONDS": str(RATE_GRACE_SECONDS),
}
# The acceptance bounds of the issue.
REFUSED_WITHIN_SECONDS = 10.0
DECODE_WALL_SECONDS = ValidatorSettings().validator_decode_wall_seconds
JPEG_BOMB_REFUSALS = {(422, "NO_FACE_DETECTED"), (422, "IMAGE_TOO_COMPLEX")}
RSS_RETURN_BYTES = 250 * 1024 * 1024
MB = 1024 * 1024
WORKER_MODULE = "services.validator.decode_worker"
SPOOL_MARK = ".upload-"
VALIDATOR_OFFSET = SERVICE_PORT_OFFSETS["validator"]


@pytest.fixture(scope="module")
def attack_mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("attacks") / "var", extra_env=ATTACK_ENV)
    mesh.wait_up(120)
    yield mesh
    mesh.stop()


def _live(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def validator_tree(mesh: MeshProcess) -> list[psutil.Process]:
    root = psutil.Process(mesh.pids()["validator"])
    return [p for p in [root, *root.children(recursive=True)] if _live(p)]


def tree_rss(mesh: MeshProcess) -> int:
    total = 0
    for process in validator_tree(mesh):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_seconds(mesh: MeshProcess) -> float:
    """CPU of the validator, its reaped children and its live ones (the decode worker and
    the photo processes it forked and reaped: counted in its own children's times)."""
    total = 0.0
    for process in validator_tree(mesh):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def decode_workers(mesh: MeshProcess) -> list[psutil.Process]:
    found = []
    for process in validator_tree(mesh)[1:]:
        try:
            if WORKER_MODULE in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def settle(mesh: MeshProcess, seconds: float = 30.0) -> int:
    """The tree's RSS once it is quiet (no change over 1 s)."""
    deadline = time.monotonic() + seconds
    last = tree_rss(mesh)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_rss(mesh)
        if abs(now - last) < 5 * MB:
            return now
        last = now
    return last


@dataclass
class RssMonitor:
    """Samples the validator tree's RSS every 50 ms on a thread; keeps the peak."""

    mesh: MeshProcess
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.mesh))
            time.sleep(0.05)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str
    seconds: float
    retry_after: str | None = None


async def upload(http: httpx.AsyncClient, session_id: str, user: str, name: str, data: bytes) -> Outcome:
    started = time.monotonic()
    response = await http.post(
        f"/v1/sessions/{session_id}/assets/face", files={"file": (name, data)}, headers=bearer(user)
    )
    body = response.json()
    return Outcome(
        response.status_code,
        body.get("code", "OK"),
        time.monotonic() - started,
        response.headers.get("retry-after"),
    )


async def new_session(http: httpx.AsyncClient, user: str) -> str:
    response = await http.post("/v1/sessions", json={}, headers=bearer(user))
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


async def baseline_seconds(http: httpx.AsyncClient, session_id: str, photo: bytes, runs: int = 3) -> float:
    """Median time of alice's upload with nothing else going on."""
    times = []
    for _ in range(runs):
        outcome = await upload(http, session_id, "alice", "portrait.jpg", photo)
        assert outcome.status == 201, outcome
        times.append(outcome.seconds)
    return statistics.median(times)


async def alice_during(http: httpx.AsyncClient, session_id: str, photo: bytes, delay: float = 0.3) -> Outcome:
    await asyncio.sleep(delay)  # the bombs are in flight
    return await upload(http, session_id, "alice", "portrait.jpg", photo)


async def test_four_jpeg_scan_bombs_do_not_slow_another_users_upload(attack_mesh):
    """The acceptance case: four progressive JPEGs whose refinement scan repeats 400 times
    (~7 s of CPU each to decode) in flight from bob; alice's portrait goes through as
    usual, and each bomb is refused with IMAGE_TOO_COMPLEX well within 10 s."""
    photo = PORTRAIT.read_bytes()
    bomb = bombs.scan_bomb()
    async with httpx.AsyncClient(base_url=attack_mesh.url, timeout=60) as http:
        alice, bob = await new_session(http, "alice"), await new_session(http, "bob")
        baseline = await baseline_seconds(http, alice, photo)
        settle(attack_mesh)
        cpu_before = tree_cpu_seconds(attack_mesh)
        outcomes = await asyncio.gather(
            *(upload(http, bob, "bob", f"bomb{i}.jpg", bomb) for i in range(4)),
            alice_during(http, alice, photo),
        )
        cpu_per_bomb = (tree_cpu_seconds(attack_mesh) - cpu_before) / 4
    *bomb_outcomes, alices = outcomes
    print(
        f"\n[attacks] scan bombs: {len(bomb) // 1024} KB, {bombs.scan_count(bomb)} scans; refused in "
        f"{[round(o.seconds, 2) for o in bomb_outcomes]} s; validator-tree CPU per bomb {cpu_per_bomb:.2f} s "
        f"(incl. alice's upload); alice {baseline:.2f} s alone, "
        f"{alices.seconds:.2f} s during the bombs"
    )
    assert all((o.status, o.code) == (422, "IMAGE_TOO_COMPLEX") for o in bomb_outcomes), bomb_outcomes
    assert all(o.seconds < REFUSED_WITHIN_SECONDS for o in bomb_outcomes), bomb_outcomes
    assert alices.status == 201, alices
    assert alices.seconds < 3 * baseline + 2.0, (baseline, alices)


async def test_a_burst_of_decoding_bombs_gives_its_memory_back(attack_mesh):
    """Two 150 KB PNGs of zeros (160 MB each decoded) and two 40 MP JPEGs padded past the
    expansion check (they decode, 160 MB each, in their own processes) from bob, with
    alice's upload among them; twice. Every bomb is refused (the PNGs within 10 s, the
    JPEGs within their deadline), alice's upload is accepted, and the validator's tree
    comes back to within 250 MB of where it was."""
    photo = PORTRAIT.read_bytes()
    zeros, cpu = bombs.zeros_png(), bombs.cpu_bomb()
    async with httpx.AsyncClient(base_url=attack_mesh.url, timeout=60) as http:
        alice, bob = await new_session(http, "alice"), await new_session(http, "bob")
        baseline = await baseline_seconds(http, alice, photo)
        before = settle(attack_mesh)
        cpu_before = tree_cpu_seconds(attack_mesh)
        clamd = psutil.Process(attack_mesh.pids()["clamd"])
        clamd_before = clamd.memory_info().rss, clamd.cpu_times()
        rounds = []
        with RssMonitor(attack_mesh) as monitor:
            for _ in range(2):
                rounds.append(
                    await asyncio.gather(
                        upload(http, bob, "bob", "zeros1.png", zeros),
                        upload(http, bob, "bob", "zeros2.png", zeros),
                        upload(http, bob, "bob", "cpu1.jpg", cpu),
                        upload(http, bob, "bob", "cpu2.jpg", cpu),
                        alice_during(http, alice, photo),
                    )
                )
        cpu_per_bomb = (tree_cpu_seconds(attack_mesh) - cpu_before) / 8
    after = settle(attack_mesh)
    clamd_times = clamd.cpu_times()
    clamd_cpu = clamd_times.user + clamd_times.system - clamd_before[1].user - clamd_before[1].system
    print(
        f"\n[attacks] decoding bombs: validator tree RSS before {before / MB:.0f} MB, peak "
        f"{monitor.peak / MB:.0f} MB, after {after / MB:.0f} MB; CPU per bomb {cpu_per_bomb:.2f} s; clamd RSS "
        f"{clamd_before[0] / MB:.0f} -> {clamd.memory_info().rss / MB:.0f} MB, CPU {clamd_cpu / 10:.2f} s per upload; "
        f"bob {[[(o.code, round(o.seconds, 2)) for o in r[:4]] for r in rounds]}; alice {baseline:.2f} s alone, "
        f"{[round(r[4].seconds, 2) for r in rounds]} s during"
    )
    for *bomb_outcomes, alices in rounds:
        pngs, jpegs = bomb_outcomes[:2], bomb_outcomes[2:]
        # The PNGs never decode. The JPEGs decode (bounded) and show no face, unless the
        # machine is so busy that their 10 s wall-clock deadline passes first.
        assert all((o.status, o.code) == (422, "IMAGE_TOO_COMPLEX") for o in pngs), pngs
        assert all(o.seconds < REFUSED_WITHIN_SECONDS for o in pngs), pngs
        assert all((o.status, o.code) in JPEG_BOMB_REFUSALS for o in jpegs), jpegs
        assert all(o.seconds < DECODE_WALL_SECONDS + 5 for o in jpegs), jpegs
        assert alices.status == 201 and alices.seconds < 3 * baseline + 2.0, (baseline, alices)
    assert monitor.peak > before + 100 * MB, "the JPEG bombs should have been decoded (in workers)"
    assert after - before < RSS_RETURN_BYTES, (before, monitor.peak, after)


def raw_upload_head(port: int, session_id: str, user: str, length: int, content_type: str) -> bytes:
    return (
        f"POST /v1/sessions/{session_id}/assets/face?filename=bomb.jpg HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: {bearer(user)['Authorization']}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def photo_process(mesh: MeshProcess, timeout: float = 30.0) -> psutil.Process:
    """The process decoding an upload: it has the spooled file open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for candidate in decode_workers(mesh):
            try:
                if any(SPOOL_MARK in f.path for f in candidate.open_files()):
                    return candidate
            except psutil.NoSuchProcess:
                continue
        await asyncio.sleep(0.05)
    raise AssertionError("no process decoded the upload")


async def assert_killed_mid_decode(mesh: MeshProcess, process: psutil.Process, abandon, what: str) -> None:
    """`abandon()` the upload ~0.3 s into a decode that needs ~2.5 s of CPU: its process
    must be gone within a second, long before it could have finished."""
    await asyncio.sleep(0.3)
    times = process.cpu_times()
    spent = times.user + times.system
    abandon()
    abandoned = time.monotonic()
    while _live(process) and time.monotonic() - abandoned < 10:
        await asyncio.sleep(0.05)
    gone_after = time.monotonic() - abandoned
    print(
        f"\n[attacks] {what} mid-decode: its process had {spent:.2f} s of CPU; gone {gone_after:.2f} s after"
    )
    assert not _live(process)
    assert gone_after < 1.0, gone_after
    assert spent < 2.0, "the process must have been killed mid-decode, not have finished"


async def test_hanging_up_mid_decode_kills_its_process(attack_mesh):
    data = bombs.cpu_bomb()
    async with httpx.AsyncClient(base_url=attack_mesh.url, timeout=60) as http:
        bob = await new_session(http, "bob")
    settle(attack_mesh)
    with socket.create_connection(("127.0.0.1", attack_mesh.http_port), timeout=30) as sock:
        sock.sendall(raw_upload_head(attack_mesh.http_port, bob, "bob", len(data), "image/jpeg") + data)
        process = await photo_process(attack_mesh)
        await assert_killed_mid_decode(attack_mesh, process, sock.close, "HTTP hang-up")
    assert await_nothing_left(attack_mesh, bob)


async def test_cancelling_the_grpc_call_mid_decode_kills_its_process(attack_mesh):
    data = bombs.cpu_bomb()
    async with httpx.AsyncClient(base_url=attack_mesh.url, timeout=60) as http:
        bob = await new_session(http, "bob")
    settle(attack_mesh)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{attack_mesh.grpc_port + VALIDATOR_OFFSET}") as channel:
        call = validator_pb2_grpc.ValidatorServiceStub(channel).ValidateUpload(
            grpc_requests(bob, FACE, "bomb.jpg", data), metadata=user_metadata("bob")
        )
        process = await photo_process(attack_mesh)
        await assert_killed_mid_decode(attack_mesh, process, call.cancel, "gRPC cancel")
    assert await_nothing_left(attack_mesh, bob)


def await_nothing_left(mesh: MeshProcess, session_id: str, seconds: float = 5.0) -> bool:
    """No spool or partial safe copy of the abandoned upload stays in the session."""
    root = mesh.data_dir / "sessions" / session_id
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [p for p in root.rglob("*") if p.is_file()]:
            return True
        time.sleep(0.1)
    return False


def trickle(port: int, session_id: str, user: str, stop: threading.Event, every: float) -> bytes:
    """An HTTP upload of a 200 KB voice that sends its first bytes, then one byte every
    `every` seconds; returns whatever the gateway answered."""
    head = (
        f"POST /v1/sessions/{session_id}/assets/voice?filename=v.wav HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: {bearer(user)['Authorization']}\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + b"RIFF")
        sock.settimeout(every)
        answer = b""
        while not stop.is_set():
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b"\0")
                except OSError:
                    break
                continue
            if not piece:
                break
            answer += piece
            if b"}" in answer.partition(b"\r\n\r\n")[2]:
                break
        return answer


def answer_code(answer: bytes) -> tuple[int, str, bool]:
    """(status, problem code, has Retry-After) of a raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    code = body.split(b'"code":"', 1)[1].split(b'"', 1)[0].decode() if b'"code":"' in body else ""
    return status, code, b"\r\nretry-after:" in head.lower()


async def test_trickling_uploads_cannot_fail_another_users_upload(attack_mesh):
    """Bob opens eight uploads that send a byte every 8 s. Four (his share of the eight
    slots) are admitted and cut once the grace period is over (408 UPLOAD_TOO_SLOW); the
    other four are refused at once (429 TOO_MANY_UPLOADS with Retry-After). Meanwhile
    alice's upload is accepted as fast as usual."""
    photo = PORTRAIT.read_bytes()
    async with httpx.AsyncClient(base_url=attack_mesh.url, timeout=60) as http:
        alice, bob = await new_session(http, "alice"), await new_session(http, "bob")
        baseline = await baseline_seconds(http, alice, photo)
        stop = threading.Event()
        started = time.monotonic()
        trickles = [
            asyncio.ensure_future(asyncio.to_thread(trickle, attack_mesh.http_port, bob, "bob", stop, 8.0))
            for _ in range(8)
        ]
        try:
            await asyncio.sleep(1.0)
            alices = await upload(http, alice, "alice", "portrait.jpg", photo)
            answers = await asyncio.wait_for(asyncio.gather(*trickles), RATE_GRACE_SECONDS + 20)
        finally:
            stop.set()
        elapsed = time.monotonic() - started
    outcomes = sorted(answer_code(a) for a in answers)
    print(
        f"\n[attacks] trickling uploads: bob {outcomes} within {elapsed:.1f} s; alice {baseline:.2f} s alone, "
        f"{alices.seconds:.2f} s during"
    )
    assert outcomes == [(408, "UPLOAD_TOO_SLOW", True)] * 4 + [(429, "TOO_MANY_UPLOADS", True)] * 4, outcomes
    assert alices.status == 201, alices
    assert alices.seconds < 3 * baseline + 2.0, (baseline, alices)
