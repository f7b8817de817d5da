"""The whole job flow as a gRPC client in another process would do it, against one address
(the edge): create a session, upload both files (client-streaming ValidateUpload), start a
job, follow its progress to the end, read the video with ReadJobOutput (a dropped read,
then the rest from where it stopped). Used by the TLS tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from vidsynth.v1 import (
    common_pb2,
    progress_pb2,
    progress_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    stage_runner_pb2,
    stage_runner_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)

CHUNK_BYTES = 64 * 1024
TERMINAL = {
    progress_pb2.EVENT_TYPE_JOB_COMPLETED,
    progress_pb2.EVENT_TYPE_JOB_FAILED,
    progress_pb2.EVENT_TYPE_JOB_CANCELLED,
}


@dataclass
class FlowResult:
    session_id: str = ""
    job_id: str = ""
    reports: list[validator_pb2.ValidateUploadResponse] = field(default_factory=list)
    events: list[progress_pb2.ProgressEvent] = field(default_factory=list)
    job: stage_runner_pb2.Job | None = None
    video: bytes = b""
    first_read: int = 0  # bytes the dropped read had received before the rest was read


def read_output(
    stub: stage_runner_pb2_grpc.StageRunnerServiceStub,
    metadata: tuple,
    job_id: str,
    name: str,
    offset: int = 0,
    limit: int = 0,
    stop_after_chunks: int = 0,
) -> bytes:
    """The output's bytes from `offset` (`limit` 0: to the end); with `stop_after_chunks`,
    the call is cancelled after that many chunks, as a dropped connection would end it."""
    call = stub.ReadJobOutput(
        stage_runner_pb2.ReadJobOutputRequest(job_id=job_id, name=name, offset=offset, limit=limit),
        metadata=metadata,
        timeout=120,
    )
    parts: list[bytes] = []
    for chunk in call:
        assert chunk.offset == offset + sum(map(len, parts)), "chunks arrive in order, without gaps"
        parts.append(chunk.data)
        if stop_after_chunks and len(parts) >= stop_after_chunks:
            call.cancel()
            break
    return b"".join(parts)


def upload_messages(session_id: str, kind: int, path: Path) -> Iterator[validator_pb2.ValidateUploadRequest]:
    header = validator_pb2.UploadHeader(
        session_id=session_id, kind=kind, original_filename=path.name, declared_size=path.stat().st_size
    )
    yield validator_pb2.ValidateUploadRequest(header=header)
    data = path.read_bytes()
    for start in range(0, len(data), CHUNK_BYTES):
        yield validator_pb2.ValidateUploadRequest(chunk=data[start : start + CHUNK_BYTES])


def run_job(channel: grpc.Channel, api_key: str, face: Path, voice: Path, script: str) -> FlowResult:
    metadata = (("authorization", f"Bearer {api_key}"),)
    result = FlowResult()
    session = session_pb2_grpc.SessionServiceStub(channel).CreateSession(
        session_pb2.CreateSessionRequest(display_name="grpc flow"), metadata=metadata, timeout=30
    )
    result.session_id = session.session_id
    validator = validator_pb2_grpc.ValidatorServiceStub(channel)
    for kind, path in ((common_pb2.ASSET_KIND_FACE_IMAGE, face), (common_pb2.ASSET_KIND_VOICE_AUDIO, voice)):
        result.reports.append(
            validator.ValidateUpload(
                upload_messages(session.session_id, kind, path), metadata=metadata, timeout=120
            )
        )
    job = stage_runner_pb2_grpc.StageRunnerServiceStub(channel).StartJob(
        stage_runner_pb2.StartJobRequest(
            session_id=session.session_id, spec=stage_runner_pb2.JobSpec(script_text=script)
        ),
        metadata=metadata,
        timeout=30,
    )
    result.job_id = job.job_id
    stream = progress_pb2_grpc.ProgressServiceStub(channel).Subscribe(
        progress_pb2.SubscribeRequest(session_id=session.session_id, job_id=job.job_id, until_terminal=True),
        metadata=metadata,
        timeout=300,
    )
    for event in stream:
        result.events.append(event)
        if event.type in TERMINAL:
            break
    runner = stage_runner_pb2_grpc.StageRunnerServiceStub(channel)
    result.job = runner.GetJob(
        stage_runner_pb2.GetJobRequest(job_id=job.job_id), metadata=metadata, timeout=30
    )
    size = next(o.size_bytes for o in result.job.outputs if o.name == "video")
    # Dropped after one chunk of at most a third of the file, then resumed from there.
    first = read_output(runner, metadata, job.job_id, "video", limit=size // 3, stop_after_chunks=1)
    result.first_read = len(first)
    result.video = first + read_output(runner, metadata, job.job_id, "video", offset=len(first))
    return result
