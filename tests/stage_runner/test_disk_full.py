"""Issue 15, item 4: a disk that fills up in the job path is INSUFFICIENT_STORAGE (507 with
Retry-After), its partial files are removed, and the session takes the next job once there
is room. The disk is a real 2 MB tmpfs, so the ENOSPC is the kernel's own (skipped where
this process may not mount one)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from libs.common.errors import CATALOG, VidsynthError
from libs.common.rpc_status import error_from_rpc_error, error_from_status_proto
from libs.common.session_paths import session_paths
from services.stage_runner.storage import ran_out_of_space
from vidsynth.v1 import common_pb2, session_pb2

TINY_DISK = "2m"
# A minute of speech: the stand-in voice alone is a ~2.6 MB WAV, more than the whole disk.
LONG_SCRIPT = " ".join(["word"] * 150)


def mount_tiny_disk(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TINY_DISK},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def fill(directory: Path, leave_bytes: int) -> Path:
    """A file that takes all the room on `directory`'s file system but `leave_bytes`."""
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with filler.open("wb", buffering=0) as handle:
        try:
            handle.write(b"\0" * max(0, free - leave_bytes))
            while leave_bytes == 0:  # the last partial page too
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.fixture
def tiny_sessions_disk(mesh_settings):
    """The sessions dir (every stage output, checkpoint and published file) on a 2 MB tmpfs."""
    path = mesh_settings.sessions_dir
    mount_tiny_disk(path)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def job_error(job):
    error = error_from_status_proto(job.error)
    assert error is not None, job
    return error


def assert_out_of_disk(job, session_dir_paths) -> None:
    assert job.state == common_pb2.JOB_STATE_FAILED
    error = job_error(job)
    assert error.code == "INSUFFICIENT_STORAGE" and CATALOG[error.code].http_status == 507
    assert error.retry_after_seconds and error.retry_after_seconds > 0
    failed = [s for s in job.stages if s.status == common_pb2.STAGE_STATUS_FAILED]
    assert [s.error.code for s in failed] == ["INSUFFICIENT_STORAGE"]
    # Partial files are gone: nothing of the job under work/ or output/.
    assert not (session_dir_paths.work / job.job_id).exists()
    assert sorted(p.name for p in session_dir_paths.output.iterdir()) == []


async def test_a_full_disk_fails_the_job_with_insufficient_storage_then_recovers(
    tiny_sessions_disk, start_mesh
):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    paths = session_paths(mesh.settings.sessions_dir, session_id)

    # No room at all: the first stage's own write (the script file) hits ENOSPC.
    filler = fill(tiny_sessions_disk, leave_bytes=0)
    job = await mesh.start(session_id)
    failed = await mesh.wait_done(job.job_id)
    assert_out_of_disk(failed, paths)
    assert failed.stages[0].stage == common_pb2.STAGE_SCRIPT
    events = await mesh.events(session_id, job.job_id)
    assert events[-1].error.code == "INSUFFICIENT_STORAGE"

    # Some room, not enough: ffmpeg runs out of space writing the voice track.
    filler.unlink()
    filler = fill(tiny_sessions_disk, leave_bytes=200 * 1024)
    free_before = shutil.disk_usage(tiny_sessions_disk).free
    job = await mesh.start(session_id, LONG_SCRIPT)
    failed = await mesh.wait_done(job.job_id)
    assert_out_of_disk(failed, paths)
    stages = {s.stage: s.status for s in failed.stages}
    assert stages[common_pb2.STAGE_SCRIPT] == common_pb2.STAGE_STATUS_COMPLETED
    assert stages[common_pb2.STAGE_VOICE] == common_pb2.STAGE_STATUS_FAILED
    assert shutil.disk_usage(tiny_sessions_disk).free >= free_before

    # With room again the same session makes its video.
    filler.unlink()
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_FAILED
    job = await mesh.start(session_id)
    done = await mesh.wait_done(job.job_id)
    assert done.state == common_pb2.JOB_STATE_COMPLETED, done.error


async def test_a_full_job_store_refuses_the_job_and_frees_the_session(tmp_path, start_mesh):
    disk = tmp_path / "store-disk"
    mount_tiny_disk(disk)
    try:
        mesh = await start_mesh(stage_runner_db_file=str(disk / "stage_runner.sqlite3"))
        session_id = await mesh.ready_session()
        fill(disk, leave_bytes=0)
        with pytest.raises(grpc.RpcError) as caught:
            await mesh.start(session_id, "x " * 5000)
        error = error_from_rpc_error(caught.value)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.code == "INSUFFICIENT_STORAGE" and error.retry_after_seconds > 0
        assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_READY
        (disk / "filler").unlink()
        job = await mesh.start(session_id)
        assert (await mesh.wait_done(job.job_id)).state == common_pb2.JOB_STATE_COMPLETED
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def test_the_mount_is_really_tiny(tmp_path):
    disk = tmp_path / "probe"
    mount_tiny_disk(disk)
    try:
        assert shutil.disk_usage(disk).total <= 2 * 1024 * 1024
        with pytest.raises(OSError) as caught, (disk / "big").open("wb", buffering=0) as handle:
            for _ in range(48):  # 3 MB in 64 KB writes
                handle.write(os.urandom(64 * 1024))
        assert caught.value.errno == errno.ENOSPC
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def test_only_a_full_disk_turns_a_child_failure_into_insufficient_storage(tmp_path):
    child_failed = VidsynthError("STAGE_FAILED")
    assert not ran_out_of_space(child_failed, tmp_path / "work" / "job")
    assert not ran_out_of_space(VidsynthError("STAGE_TIMEOUT"), tmp_path)
    disk = tmp_path / "full"
    mount_tiny_disk(disk)
    try:
        fill(disk, leave_bytes=0)
        assert ran_out_of_space(child_failed, disk / "work" / "job")
        assert not ran_out_of_space(VidsynthError("STAGE_TIMEOUT"), disk)
        # Python's own writes say so, wherever the disk is.
        try:
            (disk / "more").write_bytes(b"x" * 8192)
        except OSError as error:
            wrapped = RuntimeError("while writing the manifest")
            wrapped.__cause__ = error
            assert ran_out_of_space(wrapped, tmp_path)
        else:
            raise AssertionError("a full tmpfs took more data")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)
