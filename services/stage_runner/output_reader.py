"""ReadJobOutput: a finished job's output file as a stream of chunks, from any offset, so a
gRPC client fetches its results without an HTTP client and resumes a dropped read.

Ownership is the job's (another user's job is JOB_NOT_FOUND, as over HTTP); the file is
opened without following links and read off the event loop, one chunk at a time, so a
slow reader holds one chunk in memory, never the file.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from libs.common.errors import FieldViolation, VidsynthError
from libs.common.outputs import OUTPUT_FILES, output_path
from vidsynth.v1 import common_pb2, stage_runner_pb2

# Within the 64 KiB - 1 MiB the API promises; well under the 8 MiB message cap.
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class ByteRange:
    offset: int
    limit: int  # 0: to the end


def check_read_request(request: stage_runner_pb2.ReadJobOutputRequest) -> ByteRange:
    """The requested range, or INVALID_ARGUMENT naming the field (before any lookup)."""
    if request.name not in OUTPUT_FILES:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            f"name must be one of: {', '.join(OUTPUT_FILES)}.",
            [FieldViolation("name", "must be one of: " + ", ".join(OUTPUT_FILES))],
            metadata={"name": request.name[:64], "allowed": ",".join(OUTPUT_FILES)},
        )
    for field, value in (("offset", request.offset), ("limit", request.limit)):
        if value < 0:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                f"{field} must not be negative.",
                [FieldViolation(field, "must be >= 0")],
                metadata={field: str(value)},
            )
    return ByteRange(request.offset, request.limit)


def _open_regular(path: Path) -> tuple[int, int] | None:
    """(fd, size) of a regular file at `path`, never through a symlink; None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info.st_size


def _end_of(span: ByteRange, size: int, job_id: str, name: str) -> int:
    """Where the read stops; INVALID_ARGUMENT when it would start past the end."""
    if span.offset > size:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            f"offset {span.offset} is past the end of the {size}-byte output.",
            [FieldViolation("offset", f"must be at most {size}")],
            metadata={"job_id": job_id, "name": name, "offset": str(span.offset), "total_size": str(size)},
        )
    return size if span.limit == 0 else min(size, span.offset + span.limit)


async def read_output(
    job: stage_runner_pb2.Job, name: str, span: ByteRange, sessions_dir: Path
) -> AsyncIterator[stage_runner_pb2.ReadJobOutputResponse]:
    """Chunks of `job`'s output `name` from span.offset. At the end of the file, one
    message without data, so the client still learns the size and type."""
    listed = next((o for o in job.outputs if o.name == name), None)
    path = output_path(sessions_dir, job.session_id, job.job_id, name)
    opened = None
    if job.state == common_pb2.JOB_STATE_COMPLETED and listed is not None and path is not None:
        opened = await asyncio.to_thread(_open_regular, path)
    if opened is None:
        raise VidsynthError("OUTPUT_NOT_FOUND", metadata={"job_id": job.job_id, "name": name})
    fd, size = opened
    try:
        end = _end_of(span, size, job.job_id, name)
        position = span.offset
        while True:
            want = min(CHUNK_BYTES, end - position)
            data = await asyncio.to_thread(os.pread, fd, want, position) if want > 0 else b""
            if len(data) < want:  # the file shrank under us: never send a silent short read
                raise VidsynthError("OUTPUT_NOT_FOUND", "The output changed while it was read.")
            yield stage_runner_pb2.ReadJobOutputResponse(
                data=data, offset=position, total_size=size, content_type=listed.content_type
            )
            position += len(data)
            if position >= end:
                return
    finally:
        os.close(fd)
