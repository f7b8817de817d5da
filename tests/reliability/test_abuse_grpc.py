"""Issue 11, item 4 over gRPC, straight to the services with API keys: hostile ids, other
users' ids on every public RPC, internal and admin RPCs with a user key (the list read from
the .proto files themselves, issue 15.5), slow-drip uploads, private webhook targets and
the per-key rate limit of a service process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import grpc
import httpx
import pytest

from libs.common.errors import CATALOG
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.reliability.conftest import (
    MAX_CONCURRENT_UPLOADS,
    MAX_CONCURRENT_UPLOADS_PER_USER,
    UPLOAD_IDLE_SECONDS,
)
from tests.reliability.owned import HOSTILE_IDS, make_owned
from tests.reliability.test_abuse_http import PRIVATE_WEBHOOKS
from tests.support.declared_access import DeclaredRpc, declared_rpcs
from tests.support.identities import bearer, mesh_env, mesh_metadata, user_metadata
from tests.support.ports import free_port_block
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

pytestmark = pytest.mark.slow
NOT_FOUND = {"SESSION_NOT_FOUND", "JOB_NOT_FOUND", "NOT_FOUND"}
ID_REFUSALS = {"INVALID_ID", "INVALID_ARGUMENT", *NOT_FOUND}
DECLARED = declared_rpcs()
INTERNAL_RPCS = [rpc for rpc in DECLARED if rpc.access == "ACCESS_INTERNAL"]
ADMIN_RPCS = [rpc for rpc in DECLARED if rpc.access == "ACCESS_ADMIN"]
# The mesh-only RPCs that used to sit in the public services (issue 16.2).
MOVED_FROM_PUBLIC = [
    "/vidsynth.v1.SessionService/RegisterAsset",
    "/vidsynth.v1.SessionService/UpdateSessionState",
    "/vidsynth.v1.SessionService/SweepExpiredSessions",
    "/vidsynth.v1.SessionService/BatchGetSessions",
    "/vidsynth.v1.ProgressService/PublishEvents",
    "/vidsynth.v1.ProgressService/DeleteSessionEvents",
]


@pytest.fixture(scope="module")
def owned(mesh):
    return make_owned(mesh, "alice")


def public_calls(channels, session_id: str, job_id: str) -> list[tuple[str, object]]:
    """Every public RPC that names a session or job, as (name, awaitable factory)."""
    session = session_pb2_grpc.SessionServiceStub(channels["session"])
    runner = stage_runner_pb2_grpc.StageRunnerServiceStub(channels["stage_runner"])
    progress = progress_pb2_grpc.ProgressServiceStub(channels["progress"])
    spec = stage_runner_pb2.JobSpec(script_text="hi")

    async def subscribe(md):
        request = progress_pb2.SubscribeRequest(session_id=session_id, until_terminal=True)
        return [event async for event in progress.Subscribe(request, metadata=md, timeout=10)]

    async def upload(md):
        header = validator_pb2.UploadHeader(session_id=session_id, kind=common_pb2.ASSET_KIND_FACE_IMAGE)
        messages = [validator_pb2.ValidateUploadRequest(header=header)]
        validator = validator_pb2_grpc.ValidatorServiceStub(channels["validator"])
        return await validator.ValidateUpload(iter(messages), metadata=md, timeout=10)

    return [
        ("GetSession", lambda md: session.GetSession(session_pb2.GetSessionRequest(session_id=session_id), metadata=md)),
        ("TouchSession", lambda md: session.TouchSession(session_pb2.TouchSessionRequest(session_id=session_id), metadata=md)),
        ("DeleteSession", lambda md: session.DeleteSession(session_pb2.DeleteSessionRequest(session_id=session_id), metadata=md)),
        ("StartJob", lambda md: runner.StartJob(stage_runner_pb2.StartJobRequest(session_id=session_id, spec=spec), metadata=md)),
        ("EstimateJob", lambda md: runner.EstimateJob(stage_runner_pb2.EstimateJobRequest(session_id=session_id, spec=spec), metadata=md)),
        ("GetJob", lambda md: runner.GetJob(stage_runner_pb2.GetJobRequest(job_id=job_id), metadata=md)),
        ("CancelJob", lambda md: runner.CancelJob(stage_runner_pb2.CancelJobRequest(job_id=job_id), metadata=md)),
        ("GetProgress", lambda md: progress.GetProgress(progress_pb2.GetProgressRequest(session_id=session_id), metadata=md)),
        ("Subscribe", subscribe),
        ("ValidateUpload", upload),
    ]  # fmt: skip


async def refusal(call, metadata) -> str:
    try:
        await call(metadata)
    except grpc.RpcError as error:
        code = error_from_rpc_error(error).code
        assert code in CATALOG and code != "INTERNAL", (code, error.details())
        return code
    return "OK"


async def test_hostile_ids_are_refused_on_every_rpc(channels, owned):
    for hostile in HOSTILE_IDS:
        for name, call in public_calls(channels, hostile, hostile):
            code = await refusal(call, user_metadata("alice"))
            assert code in ID_REFUSALS, (name, hostile, code)


async def test_other_users_ids_answer_not_found_on_every_rpc(channels, owned):
    for name, call in public_calls(channels, owned.session_id, owned.job_id):
        assert await refusal(call, user_metadata("bob")) in NOT_FOUND, name
    session = session_pb2_grpc.SessionServiceStub(channels["session"])
    mine = await session.GetSession(
        session_pb2.GetSessionRequest(session_id=owned.session_id), metadata=user_metadata("alice")
    )
    assert mine.user_id == "alice" and len(mine.assets) == 2


def channel_for(channels, method: str) -> grpc.aio.Channel:
    """The channel of the process serving `/package.FooService/Rpc` (internal services share
    their public service's process: SessionInternalService -> session)."""
    service = method.split("/")[1].rsplit(".", 1)[-1].lower()
    return next(channels[name] for name in SERVICE_PORT_OFFSETS if service.startswith(name.replace("_", "")))


async def call_raw(channels, rpc: DeclaredRpc, metadata) -> None:
    """Calls `rpc` with an empty request, whatever its shape."""
    channel = channel_for(channels, rpc.path)
    if rpc.client_streaming:
        make = channel.stream_stream if rpc.server_streaming else channel.stream_unary
        call = make(rpc.path)(iter([b""]), metadata=metadata, timeout=10)
    else:
        make = channel.unary_stream if rpc.server_streaming else channel.unary_unary
        call = make(rpc.path)(b"", metadata=metadata, timeout=10)
    if rpc.server_streaming:
        async for _ in call:
            pass
    else:
        await call


def test_every_rpc_in_the_protos_declares_its_access():
    undeclared = [rpc.path for rpc in DECLARED if rpc.access == "ACCESS_UNSPECIFIED"]
    assert not undeclared
    assert len(INTERNAL_RPCS) >= 6 and len(ADMIN_RPCS) >= 4  # the protos were really read


async def test_internal_rpcs_refuse_user_and_admin_keys(channels):
    for rpc in INTERNAL_RPCS:
        for user in ("alice", "root"):
            with pytest.raises(grpc.RpcError) as caught:
                await call_raw(channels, rpc, user_metadata(user))
            assert error_from_rpc_error(caught.value).code == "PERMISSION_DENIED", (rpc.path, user)


async def test_admin_rpcs_refuse_a_non_admin_key(channels):
    for rpc in ADMIN_RPCS:
        for metadata in (user_metadata("alice"), mesh_metadata("bob")):
            with pytest.raises(grpc.RpcError) as caught:
                await call_raw(channels, rpc, metadata)
            assert error_from_rpc_error(caught.value).code == "PERMISSION_DENIED", (rpc.path, metadata)


async def test_mesh_only_rpcs_are_gone_from_the_public_services(channels):
    for method in MOVED_FROM_PUBLIC:
        call = channel_for(channels, method).unary_unary(method)
        with pytest.raises(grpc.RpcError) as caught:
            await call(b"", metadata=mesh_metadata("alice"), timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED, method


async def test_slow_drip_upload_is_cut_with_deadline_exceeded(channels, ready_mesh):
    session = session_pb2_grpc.SessionServiceStub(channels["session"])
    created = await session.CreateSession(session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"))
    stalled = asyncio.Event()

    async def drip():
        header = validator_pb2.UploadHeader(
            session_id=created.session_id, kind=common_pb2.ASSET_KIND_VOICE_AUDIO, original_filename="v.wav"
        )
        yield validator_pb2.ValidateUploadRequest(header=header)
        yield validator_pb2.ValidateUploadRequest(chunk=b"RIFF" + b"\0" * 1000)
        await asyncio.sleep(120)  # a client that stops sending but keeps the stream open
        stalled.set()

    validator = validator_pb2_grpc.ValidatorServiceStub(channels["validator"])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        await validator.ValidateUpload(drip(), metadata=user_metadata("alice"), timeout=90)
    assert error_from_rpc_error(caught.value).code == "DEADLINE_EXCEEDED"
    assert UPLOAD_IDLE_SECONDS <= time.monotonic() - started < 60 and not stalled.is_set()
    spools = list((ready_mesh.data_dir / "sessions" / created.session_id).rglob(".upload-*"))
    assert not spools


async def test_private_webhook_urls_are_refused_over_grpc(channels, owned):
    runner = stage_runner_pb2_grpc.StageRunnerServiceStub(channels["stage_runner"])
    for url in PRIVATE_WEBHOOKS:
        spec = stage_runner_pb2.JobSpec(script_text="hi", webhook_url=url)
        with pytest.raises(grpc.RpcError) as caught:
            await runner.StartJob(
                stage_runner_pb2.StartJobRequest(session_id=owned.session_id, spec=spec),
                metadata=user_metadata("alice"),
            )
        assert error_from_rpc_error(caught.value).code == "WEBHOOK_URL_NOT_ALLOWED", url


async def test_a_service_process_rate_limits_each_key_not_the_mesh(tmp_path):
    port = free_port_block()
    env = {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_DATA_DIR": str(tmp_path / "var"),
        "VIDSYNTH_GRPC_PORT": str(port),
        "VIDSYNTH_METRICS_PORT": "0",
        "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1",
        "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.session"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port + SERVICE_PORT_OFFSETS['session']}"
        ) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = session_pb2_grpc.SessionServiceStub(channel)

            async def codes(metadata) -> list[str]:
                calls = [
                    refusal(
                        lambda md: stub.ListSessions(session_pb2.ListSessionsRequest(), metadata=md), metadata
                    )
                    for _ in range(15)
                ]
                return await asyncio.gather(*calls)

            alice = await codes(user_metadata("alice"))
            assert "RATE_LIMITED" in alice and alice.count("OK") <= 7, alice
            assert (await codes(user_metadata("bob"))).count("OK") >= 5
            assert set(await codes(mesh_metadata("alice"))) == {"OK"}
    finally:
        process.terminate()
        process.wait(15)


async def test_uploads_past_the_concurrency_cap_are_shed_with_rate_limited(channels, ready_mesh):
    """Stalled uploads fill a user's share, then every slot; the next is refused at once
    (429 semantics, with RetryInfo) rather than queued: TOO_MANY_UPLOADS past the user's
    share, RATE_LIMITED past the total. Once the stalls are cut, uploads are admitted again."""
    session = session_pb2_grpc.SessionServiceStub(channels["session"])
    validator = validator_pb2_grpc.ValidatorServiceStub(channels["validator"])
    headers = {}
    for user in ("alice", "bob"):
        created = await session.CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata(user)
        )
        headers[user] = validator_pb2.UploadHeader(
            session_id=created.session_id, kind=common_pb2.ASSET_KIND_VOICE_AUDIO, original_filename="v.wav"
        )
    header = headers["bob"]

    async def stalled(header: validator_pb2.UploadHeader):
        # A few bytes a second apart keep the slot past the idle bound while the test
        # fills the others; then nothing, so the idle bound cuts it (no write races that).
        yield validator_pb2.ValidateUploadRequest(header=header)
        yield validator_pb2.ValidateUploadRequest(chunk=b"RIFF")
        for _ in range(3):
            await asyncio.sleep(UPLOAD_IDLE_SECONDS / 2)
            yield validator_pb2.ValidateUploadRequest(chunk=b"\0")
        await asyncio.sleep(60)

    def hold(user: str):
        return asyncio.ensure_future(
            validator.ValidateUpload(stalled(headers[user]), metadata=user_metadata(user), timeout=60)
        )

    holders = [hold("bob") for _ in range(MAX_CONCURRENT_UPLOADS_PER_USER)]
    await asyncio.sleep(0.5)
    one_more = [validator_pb2.ValidateUploadRequest(header=header)]
    with pytest.raises(grpc.RpcError) as caught:
        await validator.ValidateUpload(iter(one_more), metadata=user_metadata("bob"), timeout=30)
    refused = error_from_rpc_error(caught.value)
    assert refused.code == "TOO_MANY_UPLOADS" and refused.retry_after_seconds
    # Alice takes the slots bob's share left; then the validator is full for everyone.
    holders += [hold("alice") for _ in range(MAX_CONCURRENT_UPLOADS - MAX_CONCURRENT_UPLOADS_PER_USER)]
    await asyncio.sleep(0.5)
    with pytest.raises(grpc.RpcError) as caught:
        await validator.ValidateUpload(iter(one_more), metadata=user_metadata("root"), timeout=30)
    refused = error_from_rpc_error(caught.value)
    assert refused.code == "RATE_LIMITED" and refused.retry_after_seconds
    async with httpx.AsyncClient(base_url=ready_mesh.url, timeout=30) as http:
        answer = await http.post(
            f"/v1/sessions/{header.session_id}/assets/voice",
            files={"file": ("v.wav", b"RIFF")},
            headers=bearer("root"),
        )
    assert answer.status_code == 429 and answer.json()["code"] == "RATE_LIMITED", answer.text
    assert float(answer.headers["retry-after"]) > 0
    outcomes = await asyncio.gather(*holders, return_exceptions=True)
    assert all(error_from_rpc_error(o).code == "DEADLINE_EXCEEDED" for o in outcomes), outcomes
    with pytest.raises(grpc.RpcError) as caught:
        await validator.ValidateUpload(iter(one_more), metadata=user_metadata("bob"), timeout=30)
    assert error_from_rpc_error(caught.value).code == "FILE_EMPTY"
