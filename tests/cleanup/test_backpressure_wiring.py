"""Back-pressure end to end: at critical levels the real validator refuses uploads and the
real stage runner refuses new jobs, with the catalogued codes and a retry hint."""

from __future__ import annotations

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from services.session.server import build as build_session
from services.stage_runner.server import build as build_runner
from services.validator.server import build as build_validator
from tests.cleanup.conftest import cleanup_settings
from tests.support.identities import user_metadata
from vidsynth.v1 import (
    common_pb2,
    session_pb2,
    session_pb2_grpc,
    stage_runner_pb2,
    stage_runner_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)


async def _mesh(in_process_mesh, start_cleanup, **levels) -> tuple[str, grpc.aio.Channel, grpc.aio.Channel]:
    session = await in_process_mesh.start("session", build_session)
    await start_cleanup(cleanup_settings(**levels))
    validator = await in_process_mesh.start("validator", build_validator)
    runner = await in_process_mesh.start("stage_runner", build_runner)
    async with session.channel() as channel:
        created = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata("alice")
        )
    return created.session_id, validator.channel(), runner.channel()


async def _refusal(call) -> tuple[str, float | None]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = error_from_rpc_error(caught.value)
    return error.code, error.retry_after_seconds


def _upload(session_id: str):
    header = validator_pb2.UploadHeader(
        session_id=session_id, kind=common_pb2.ASSET_KIND_FACE_IMAGE, original_filename="face.jpg"
    )
    yield validator_pb2.ValidateUploadRequest(header=header)
    yield validator_pb2.ValidateUploadRequest(chunk=b"\xff\xd8\xff" + b"\0" * 1024)


def _start(session_id: str) -> stage_runner_pb2.StartJobRequest:
    return stage_runner_pb2.StartJobRequest(
        session_id=session_id, spec=stage_runner_pb2.JobSpec(script_text="Hello.")
    )


async def test_critical_disk_refuses_uploads_and_new_jobs(in_process_mesh, start_cleanup):
    session_id, validator, runner = await _mesh(in_process_mesh, start_cleanup, disk="critical")
    async with validator, runner:
        upload = validator_pb2_grpc.ValidatorServiceStub(validator).ValidateUpload(
            _upload(session_id), metadata=user_metadata("alice")
        )
        code, retry = await _refusal(upload)
        assert code == "INSUFFICIENT_STORAGE" and retry
        start = stage_runner_pb2_grpc.StageRunnerServiceStub(runner).StartJob(
            _start(session_id), metadata=user_metadata("alice")
        )
        code, retry = await _refusal(start)
        assert code == "INSUFFICIENT_STORAGE" and retry


async def test_critical_memory_refuses_new_jobs(in_process_mesh, start_cleanup):
    session_id, validator, runner = await _mesh(in_process_mesh, start_cleanup, memory="critical")
    async with validator, runner:
        start = stage_runner_pb2_grpc.StageRunnerServiceStub(runner).StartJob(
            _start(session_id), metadata=user_metadata("alice")
        )
        code, retry = await _refusal(start)
        assert code == "INSUFFICIENT_MEMORY" and retry
