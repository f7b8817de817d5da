"""Issue 15, item 1 at the validator: every face photo is decoded in a worker process
with bounds. Scan bombs and zero-filled PNGs are refused before a pixel is decoded,
what slips past those is stopped by the worker's CPU cap, wall-clock deadline or
memory cap, an abandoned upload kills its worker at once, and an ordinary progressive
JPEG is still accepted."""

from __future__ import annotations

import asyncio
import signal
import time

import psutil
import pytest

from libs.common import children
from libs.common.errors import VidsynthError
from services.validator import images
from services.validator.decode_limits import DecodeLimits
from services.validator.decode_workers import DecodeWorkers
from services.validator.spool import SPOOL_PREFIX
from tests.support.identities import user_metadata
from tests.validator import bombs
from tests.validator.conftest import Mesh, validator_settings_for
from tests.validator.corpus import FACE, PORTRAIT
from tests.validator.test_corpus import assert_nothing_left
from tests.validator.uploading import eventually, files_under, grpc_requests, grpc_upload, http_upload

WORKER_MODULE = "services.validator.decode_worker"
# Far more than the refusals below need, far less than the bombs cost undefended.
PROMPT_SECONDS = 5.0


def decode_workers() -> list[psutil.Process]:
    """This process's live decode workers (the in-process validator starts them)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if WORKER_MODULE in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def busy_worker(timeout: float = 30.0) -> psutil.Process:
    """The worker that is decoding an upload: it has the spooled file open (a waiting
    spare has nothing open, and a spare still starting up also burns CPU)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in decode_workers():
            try:
                if any(SPOOL_PREFIX in f.path for f in process.open_files()):
                    return process
            except psutil.NoSuchProcess:
                continue
        await asyncio.sleep(0.05)
    raise AssertionError("no decode worker got busy")


async def refusal_detail(mesh: Mesh, data: bytes, filename: str = "photo.jpg") -> str:
    """The user-facing detail of a face upload's refusal, over HTTP."""
    status, body = await http_upload(mesh, await mesh.new_session(), FACE, filename, data)
    assert status == 422, body
    return body["detail"]


async def bounded_mesh(in_process_mesh, clamd_address, **overrides) -> Mesh:
    return await Mesh(in_process_mesh).start(validator_settings_for(clamd_address, **overrides))


def test_scans_are_counted_and_capped():
    honest = bombs.progressive_portrait()
    limits = DecodeLimits(128, 8192, 40_000_000, 64, 100.0, 64 << 20, 0.08, 4.0, 1 << 30)
    end, scans = images.jpeg_layout(honest, limits.max_scans)
    assert (end, scans) == (len(honest), bombs.scan_count(honest))
    assert 2 <= scans <= 20
    bomb = bombs.scan_bomb(repeats=400)
    assert images.jpeg_layout(bomb, None)[1] == scans + 400
    with pytest.raises(VidsynthError) as refused:
        images.jpeg_layout(bomb, 64)
    assert refused.value.code == "IMAGE_TOO_COMPLEX"


def test_expansion_is_judged_per_byte_of_file():
    limits = DecodeLimits(128, 8192, 40_000_000, 64, 100.0, 64 << 20, 0.08, 4.0, 1 << 30)
    # 6300x6300 RGBA is 159 MB decoded: refused from a 154 KB file, fine from a 5 MB one.
    with pytest.raises(VidsynthError) as refused:
        images.check_expansion(6300, 6300, "RGBA", 154_386, limits)
    assert refused.value.code == "IMAGE_TOO_COMPLEX"
    images.check_expansion(6300, 6300, "RGBA", 5_000_000, limits)
    # Small images are exempt whatever their ratio (a flat 2000x2000 PNG is a few KB).
    images.check_expansion(2000, 2000, "RGB", 3_000, limits)


async def test_progressive_portrait_is_accepted_over_grpc_and_http(mesh):
    photo = bombs.progressive_portrait()
    session_id = await mesh.new_session()
    response, code = await grpc_upload(mesh, session_id, FACE, "portrait.jpg", photo)
    assert code is None and response.report.accepted, code
    assert (response.report.width, response.report.height) == (512, 512)
    status, body = await http_upload(mesh, session_id, FACE, "portrait.jpg", photo)
    assert status == 201 and body["report"]["accepted"], body


@pytest.mark.parametrize(
    ("filename", "build"),
    [("scans.jpg", bombs.scan_bomb), ("zeros.png", bombs.zeros_png)],
    ids=["jpeg", "png"],
)
async def test_bombs_are_refused_before_decoding(mesh, filename, build):
    data = build()
    session_id = await mesh.new_session()
    started = time.monotonic()
    response, code = await grpc_upload(mesh, session_id, FACE, filename, data)
    assert (response, code) == (None, "IMAGE_TOO_COMPLEX")
    assert time.monotonic() - started < PROMPT_SECONDS
    assert_nothing_left(mesh, session_id, code)


async def test_cpu_bomb_is_killed_at_its_cpu_cap(in_process_mesh, clamd_address):
    """Under the scan cap and padded past the expansion check, only the CPU cap stops it."""
    mesh = await bounded_mesh(in_process_mesh, clamd_address, validator_decode_cpu_seconds=0.5)
    try:
        session_id = await mesh.new_session()
        data = bombs.cpu_bomb()
        started = time.monotonic()
        response, code = await grpc_upload(mesh, session_id, FACE, "cpu.jpg", data)
        assert (response, code) == (None, "IMAGE_TOO_COMPLEX")
        # ~2.5 s of CPU uncapped; 0.5 s of it (plus the transfer and the scan) here.
        assert time.monotonic() - started < PROMPT_SECONDS
        assert_nothing_left(mesh, session_id, code)
        assert "0.5 s of CPU" in await refusal_detail(mesh, data)
    finally:
        await mesh.close()


async def test_wall_deadline_kills_a_decode_the_cpu_cap_allows(in_process_mesh, clamd_address):
    mesh = await bounded_mesh(
        in_process_mesh,
        clamd_address,
        validator_image_max_scans=1000,
        validator_decode_cpu_seconds=60.0,
        validator_decode_wall_seconds=1.0,
    )
    try:
        session_id = await mesh.new_session()
        data = bombs.scan_bomb()
        started = time.monotonic()
        upload = asyncio.ensure_future(grpc_upload(mesh, session_id, FACE, "scans.jpg", data))
        worker = await busy_worker()
        response, code = await upload
        assert (response, code) == (None, "IMAGE_TOO_COMPLEX")
        assert "longer than 1 s" in (await refusal_detail(mesh, data)), "the deadline, not the CPU cap"
        assert time.monotonic() - started < PROMPT_SECONDS * 2
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        assert_nothing_left(mesh, session_id, code)
    finally:
        await mesh.close()


async def test_memory_cap_stops_what_the_expansion_check_lets_through(in_process_mesh, clamd_address):
    mesh = await bounded_mesh(
        in_process_mesh,
        clamd_address,
        validator_image_max_expansion=1e9,
        validator_decode_memory_bytes=64 * 1024 * 1024,
    )
    try:
        session_id = await mesh.new_session()
        response, code = await grpc_upload(mesh, session_id, FACE, "zeros.png", bombs.zeros_png())
        assert (response, code) == (None, "IMAGE_TOO_COMPLEX")
        assert_nothing_left(mesh, session_id, code)
        assert "memory" in await refusal_detail(mesh, bombs.zeros_png(), "zeros.png")
    finally:
        await mesh.close()


async def test_cancelled_upload_kills_its_worker_at_once(in_process_mesh, clamd_address):
    """A 7 s decode, uncapped: cancelling the call ends its worker within a second."""
    mesh = await bounded_mesh(
        in_process_mesh,
        clamd_address,
        validator_image_max_scans=1000,
        validator_decode_cpu_seconds=60.0,
        validator_decode_wall_seconds=60.0,
    )
    try:
        session_id = await mesh.new_session()
        data = bombs.scan_bomb()
        call = mesh.validator.ValidateUpload(
            grpc_requests(session_id, FACE, "scans.jpg", data), metadata=user_metadata("alice")
        )
        worker = await busy_worker()
        await asyncio.sleep(0.5)  # well into the decode
        spent = cpu_seconds(worker)
        call.cancel()
        cancelled_at = time.monotonic()
        assert await eventually(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 5)
        assert time.monotonic() - cancelled_at < 1.5
        assert spent < 6.0, "the worker was killed by the cancel, not by finishing"
        assert await eventually(lambda: not files_under(mesh.settings.sessions_dir / session_id), 5)
    finally:
        await mesh.close()


async def test_shutdown_ends_the_worker_and_the_photo_processes_it_forked(tmp_path):
    limits = DecodeLimits(128, 8192, 40_000_000, 1000, 100.0, 64 << 20, 0.08, 60.0, 1 << 30)
    workers = DecodeWorkers(limits, wall_seconds=60.0)
    await workers.start()
    spool = tmp_path / f"{SPOOL_PREFIX}bomb"
    spool.write_bytes(bombs.scan_bomb())  # ~7 s of CPU
    decoding = asyncio.ensure_future(workers.decode_face(spool, "image/jpeg", tmp_path / "copy.jpg"))
    photo_process = await busy_worker()
    worker = psutil.Process(workers.pid)
    await workers.close()
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert await eventually(
        lambda: not photo_process.is_running() or photo_process.status() == psutil.STATUS_ZOMBIE, 2
    )
    assert not children.live_children()
    with pytest.raises(VidsynthError):
        await decoding


async def test_a_crashed_photo_process_is_file_corrupt_and_the_worker_carries_on(tmp_path):
    """A decoder crash (SIGSEGV here, sent by the test) refuses that file only."""
    limits = DecodeLimits(128, 8192, 40_000_000, 1000, 100.0, 64 << 20, 0.08, 60.0, 1 << 30)
    workers = DecodeWorkers(limits, wall_seconds=60.0)
    await workers.start()
    try:
        spool = tmp_path / f"{SPOOL_PREFIX}bomb"
        spool.write_bytes(bombs.scan_bomb())
        decoding = asyncio.ensure_future(workers.decode_face(spool, "image/jpeg", tmp_path / "copy.jpg"))
        (await busy_worker()).send_signal(signal.SIGSEGV)
        with pytest.raises(VidsynthError) as refused:
            await decoding
        assert refused.value.code == "FILE_CORRUPT"
        portrait_path = tmp_path / f"{SPOOL_PREFIX}portrait"
        portrait_path.write_bytes(PORTRAIT.read_bytes())
        photo = await workers.decode_face(portrait_path, "image/jpeg", tmp_path / "portrait-copy.jpg")
        assert (photo.width, photo.height) == (512, 512)
    finally:
        await workers.close()


async def test_the_worker_forks_from_a_single_thread():
    """fork() copies only the calling thread: a lock held by any other thread (a BLAS or
    OpenCV pool) would stay locked forever in every photo process."""
    limits = DecodeLimits(128, 8192, 40_000_000, 64, 100.0, 64 << 20, 0.08, 4.0, 1 << 30)
    workers = DecodeWorkers(limits, wall_seconds=10.0)
    await workers.start()
    try:
        worker = psutil.Process(workers.pid)
        # Once it is waiting for work (its libraries loaded, the cascade read).
        assert await eventually(
            lambda: worker.status() == psutil.STATUS_SLEEPING and worker.cpu_times().user > 0.1, 30
        )
        await asyncio.sleep(0.5)
        assert worker.num_threads() == 1
    finally:
        await workers.close()
