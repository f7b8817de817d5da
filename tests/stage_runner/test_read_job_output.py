"""StageRunnerService.ReadJobOutput over real gRPC (issue 16.3): a finished job's outputs as
chunks of 64 KiB to 1 MiB, resumable from any offset, for their owner only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from tests.support.identities import user_metadata
from vidsynth.v1 import common_pb2, stage_runner_pb2

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
async def finished(start_mesh):
    """A mesh with one completed job of alice's, and the directory of its outputs."""
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    job = await mesh.wait_done((await mesh.start(session_id)).job_id)
    assert job.state == common_pb2.JOB_STATE_COMPLETED, job.error
    output_dir = session_paths(mesh.settings.sessions_dir, session_id).output / job.job_id
    return mesh, job, output_dir


def read(mesh, job_id: str, name: str = "video", offset: int = 0, limit: int = 0, user: str = "alice"):
    request = stage_runner_pb2.ReadJobOutputRequest(job_id=job_id, name=name, offset=offset, limit=limit)
    return mesh.runner.ReadJobOutput(request, metadata=user_metadata(user), timeout=30)


async def chunks(call) -> list[stage_runner_pb2.ReadJobOutputResponse]:
    return [chunk async for chunk in call]


async def refusal(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chunks(call)
    error = error_from_rpc_error(caught.value)
    return caught.value.code(), error.code, error.metadata


async def until_closed(path, seconds: float = 10.0) -> None:
    """Waits until no descriptor of this process (the service runs in it) is open on `path`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        fd_dir = Path("/proc/self/fd")
        holders = [fd for fd in fd_dir.iterdir() if _target(fd) == str(path)]
        if not holders:
            return
        assert loop.time() < deadline, f"{path} still open: {holders}"
        await asyncio.sleep(0.05)


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def assert_contiguous(received, start: int, total: int) -> None:
    position = start
    for chunk in received:
        assert chunk.offset == position and chunk.total_size == total
        position += len(chunk.data)


async def test_every_output_reads_back_byte_for_byte(finished):
    mesh, job, output_dir = finished
    files = {"video": "video.mp4", "thumbnail": "thumbnail.jpg", "audio": "audio.wav", "script": "script.txt"}
    types = {"video": "video/mp4", "thumbnail": "image/jpeg", "audio": "audio/wav"}
    for name, file_name in files.items():
        on_disk = (output_dir / file_name).read_bytes()
        received = await chunks(read(mesh, job.job_id, name))
        assert b"".join(c.data for c in received) == on_disk, name
        assert_contiguous(received, 0, len(on_disk))
        assert received[0].content_type.startswith(types.get(name, "text/plain")), name


async def test_large_outputs_stream_in_bounded_chunks_and_resume_exactly(finished):
    mesh, job, output_dir = finished
    # The stand-in video is small; a 2.5 MiB file in its place makes the stream span chunks.
    video = output_dir / "video.mp4"
    content = os.urandom(2 * MIB + MIB // 2 + 7)
    video.write_bytes(content)

    received = await chunks(read(mesh, job.job_id))
    assert b"".join(c.data for c in received) == content
    assert_contiguous(received, 0, len(content))
    assert all(64 * KIB <= len(c.data) <= MIB for c in received[:-1])
    assert 0 < len(received[-1].data) <= MIB

    # A read dropped after its first chunk resumes from the bytes it already has.
    call = read(mesh, job.job_id)
    first = await call.read()
    call.cancel()
    resumed = await chunks(read(mesh, job.job_id, offset=len(first.data)))
    assert resumed[0].offset == len(first.data)
    assert first.data + b"".join(c.data for c in resumed) == content
    await until_closed(video)  # the abandoned read let go of the file

    # An odd offset and a limit give exactly that slice.
    window = await chunks(read(mesh, job.job_id, offset=MIB - 3, limit=300 * KIB + 1))
    assert b"".join(c.data for c in window) == content[MIB - 3 : MIB - 3 + 300 * KIB + 1]
    past_end = await chunks(read(mesh, job.job_id, offset=len(content) - 10, limit=MIB))
    assert b"".join(c.data for c in past_end) == content[-10:]

    # At the very end: one message without data, still telling the size and type.
    (at_end,) = await chunks(read(mesh, job.job_id, offset=len(content)))
    assert at_end.data == b"" and at_end.total_size == len(content) and at_end.content_type == "video/mp4"


async def test_another_users_job_is_not_found(finished):
    mesh, job, _ = finished
    status, code, metadata = await refusal(read(mesh, job.job_id, user="bob"))
    assert (status, code) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert metadata == {"job_id": job.job_id}


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"offset": -1}, "INVALID_ARGUMENT", "offset"),
        ({"limit": -5}, "INVALID_ARGUMENT", "limit"),
        ({"offset": 1 << 40}, "INVALID_ARGUMENT", "offset"),
        ({"name": "../../../etc/passwd"}, "INVALID_ARGUMENT", "name"),
        ({"name": ""}, "INVALID_ARGUMENT", "name"),
    ],
    ids=["negative-offset", "negative-limit", "offset-past-end", "path-as-name", "no-name"],
)
async def test_bad_ranges_and_names_are_invalid_arguments(finished, fields, code, field):
    mesh, job, _ = finished
    request = {"name": "video", **fields}
    status, found, metadata = await refusal(read(mesh, job.job_id, **request))
    assert (status, found) == (grpc.StatusCode.INVALID_ARGUMENT, code)
    assert field in metadata  # ErrorInfo.metadata names the offending value


async def test_offset_past_the_end_names_the_size(finished):
    mesh, job, output_dir = finished
    size = (output_dir / "video.mp4").stat().st_size
    _, code, metadata = await refusal(read(mesh, job.job_id, offset=size + 1))
    assert code == "INVALID_ARGUMENT"
    assert metadata["total_size"] == str(size) and metadata["offset"] == str(size + 1)


async def test_malformed_job_ids_are_invalid(finished):
    mesh, _, _ = finished
    _, code, _ = await refusal(read(mesh, "job_../../etc"))
    assert code == "INVALID_ID"


async def test_an_unfinished_job_has_no_output_yet(start_mesh):
    mesh = await start_mesh(stage_runner_simulation_seconds=30.0)
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id)
    status, code, metadata = await refusal(read(mesh, job.job_id))
    assert (status, code) == (grpc.StatusCode.NOT_FOUND, "OUTPUT_NOT_FOUND")
    assert metadata == {"job_id": job.job_id, "name": "video"}
    await mesh.runner.CancelJob(
        stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata("alice"), timeout=30
    )


async def test_a_removed_output_is_not_found(finished):
    mesh, job, output_dir = finished
    (output_dir / "thumbnail.jpg").unlink()
    _, code, _ = await refusal(read(mesh, job.job_id, "thumbnail"))
    assert code == "OUTPUT_NOT_FOUND"


async def test_a_symlinked_output_is_not_followed(finished, tmp_path):
    mesh, job, output_dir = finished
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (output_dir / "script.txt").unlink()
    (output_dir / "script.txt").symlink_to(secret)
    _, code, _ = await refusal(read(mesh, job.job_id, "script"))
    assert code == "OUTPUT_NOT_FOUND"
