"""Operators end abuse without a restart (issue 15, item 7), on a real `vidsynth up` mesh:
an admin lists every user's active sessions (owner, state, age, disk used) and force-ends
one, which cancels its running job and removes its files and its events. The same over
gRPC, over HTTP and with the CLI; users get PERMISSION_DENIED / 403 and unknown ids
NOT_FOUND / 404 on every surface."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass

import grpc
import httpx
import pytest

from libs.common import ids
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.cli.test_cli import vidsynth
from tests.gateway.problems import assert_problem
from tests.reliability.faults import FACE, VOICE
from tests.support.identities import API_KEYS, bearer, user_metadata
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient
from vidsynth.v1 import common_pb2, session_pb2, session_pb2_grpc, stage_runner_pb2, stage_runner_pb2_grpc

pytestmark = pytest.mark.slow
# Six simulated stages of 8 s: a job is still queued or running when the operator acts.
SLOW_JOBS_ENV = {
    "VIDSYNTH_PROCESSING_MODE": "simulation",
    "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "8",
}
EVENTS_GONE_WITHIN_SECONDS = 15.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("admin-sessions") / "var", extra_env=SLOW_JOBS_ENV)
    mesh.wait_up(90)
    yield mesh
    mesh.stop()


@dataclass(frozen=True)
class Busy:
    session_id: str
    job_id: str


async def busy_session_async(mesh: MeshProcess, user: str) -> Busy:
    async with GatewayClient(mesh.url, API_KEYS[user]) as client:
        session_id = (await client.create_session("busy"))["session_id"]
        await client.upload(session_id, "face", FACE)
        await client.upload(session_id, "voice", VOICE)
        job = await client.start_job(session_id, {"script_text": "An operator will end this."})
        return Busy(session_id, job["job_id"])


def busy_session(mesh: MeshProcess, user: str = "bob") -> Busy:
    """A session of `user` with both uploads and a job queued or running."""
    mesh.wait_ready(90)
    return asyncio.run(busy_session_async(mesh, user))


def stored_events(mesh: MeshProcess, session_id: str) -> int:
    with sqlite3.connect(f"file:{mesh.data_dir / 'progress.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM events WHERE session_id = ?", (session_id,)).fetchone()[0]


def assert_fully_ended(mesh: MeshProcess, busy: Busy) -> None:
    """Its files are gone, its job was cancelled, and its events are gone and stay gone
    (the cancelled job's own last event included)."""
    assert not (mesh.data_dir / "sessions" / busy.session_id).exists()
    job = httpx.get(f"{mesh.url}/v1/jobs/{busy.job_id}", headers=bearer("bob"), timeout=10).json()
    assert job["state"] == "cancelled", job
    deadline = time.monotonic() + EVENTS_GONE_WITHIN_SECONDS
    while stored_events(mesh, busy.session_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored_events(mesh, busy.session_id) == 0
    owner_view = httpx.get(f"{mesh.url}/v1/sessions/{busy.session_id}", headers=bearer("bob"), timeout=10)
    assert_problem(owner_view, 404, "SESSION_NOT_FOUND")


# --- gRPC ------------------------------------------------------------------------------------


def service_address(mesh: MeshProcess, service: str) -> str:
    return f"127.0.0.1:{mesh.grpc_port + SERVICE_PORT_OFFSETS[service]}"


def grpc_code(call) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return error_from_rpc_error(info.value).code


def test_grpc_admin_lists_every_users_sessions_and_force_ends_one(mesh) -> None:
    busy = busy_session(mesh)
    alice_session = httpx.post(f"{mesh.url}/v1/sessions", json={}, headers=bearer("alice"), timeout=10).json()
    with grpc.insecure_channel(service_address(mesh, "session")) as channel:
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        listed = sessions.ListActiveSessions(
            session_pb2.ListActiveSessionsRequest(page_size=200), metadata=user_metadata("root"), timeout=10
        )
        by_id = {a.session.session_id: a for a in listed.sessions}
        assert by_id[busy.session_id].session.user_id == "bob"
        assert by_id[busy.session_id].session.state == session_pb2.SESSION_STATE_PROCESSING
        assert by_id[busy.session_id].session.active_job_id == busy.job_id
        # Both uploads' safe copies are on disk.
        assert by_id[busy.session_id].disk_used_bytes > FACE.stat().st_size // 4
        assert by_id[alice_session["session_id"]].session.user_id == "alice"
        assert 0 < by_id[busy.session_id].age.ToMicroseconds() < 300e6

        assert (
            grpc_code(
                lambda: sessions.ListActiveSessions(
                    session_pb2.ListActiveSessionsRequest(), metadata=user_metadata("alice"), timeout=10
                )
            )
            == "PERMISSION_DENIED"
        )
        for user in ("alice", "bob"):  # not even the owner may end it this way
            assert (
                grpc_code(
                    lambda user=user: sessions.EndSession(
                        session_pb2.EndSessionRequest(session_id=busy.session_id, force=True),
                        metadata=user_metadata(user),
                        timeout=10,
                    )
                )
                == "PERMISSION_DENIED"
            )
        assert (
            grpc_code(
                lambda: sessions.EndSession(
                    session_pb2.EndSessionRequest(session_id=ids.new_id("session"), force=True),
                    metadata=user_metadata("root"),
                    timeout=10,
                )
            )
            == "SESSION_NOT_FOUND"
        )
        assert (
            grpc_code(
                lambda: sessions.EndSession(
                    session_pb2.EndSessionRequest(session_id=busy.session_id),
                    metadata=user_metadata("root"),
                    timeout=10,
                )
            )
            == "INVALID_SESSION_STATE"
        )

        ended = sessions.EndSession(
            session_pb2.EndSessionRequest(session_id=busy.session_id, force=True),
            metadata=user_metadata("root"),
            timeout=30,
        )
        assert (ended.session_id, ended.user_id, ended.cancelled_job_id) == (
            busy.session_id,
            "bob",
            busy.job_id,
        )
        assert ended.bytes_freed > 0
        assert ended.events_deleted >= 1  # job.queued at least
        runner = stage_runner_pb2_grpc.StageRunnerServiceStub(
            grpc.insecure_channel(service_address(mesh, "stage_runner"))
        )
        job = runner.GetJob(stage_runner_pb2.GetJobRequest(job_id=busy.job_id), metadata=user_metadata("bob"))
        assert job.state == common_pb2.JOB_STATE_CANCELLED
    assert_fully_ended(mesh, busy)


# --- HTTP ------------------------------------------------------------------------------------


def test_http_admin_routes_list_and_force_end_and_refuse_users(mesh) -> None:
    busy = busy_session(mesh)
    with httpx.Client(base_url=mesh.url, timeout=30) as client:
        listed = client.get("/v1/admin/sessions", params={"user_id": "bob"}, headers=bearer("root"))
        assert listed.status_code == 200, listed.text
        rows = {row["session"]["session_id"]: row for row in listed.json()["sessions"]}
        row = rows[busy.session_id]
        assert row["session"]["user_id"] == "bob"
        assert row["session"]["state"] == "processing"
        assert row["disk_used_bytes"] > 0 and row["age_seconds"] >= 0
        assert {r["session"]["user_id"] for r in rows.values()} == {"bob"}

        assert_problem(client.get("/v1/admin/sessions", headers=bearer("alice")), 403, "PERMISSION_DENIED")
        assert_problem(client.get("/v1/admin/sessions"), 401, "UNAUTHENTICATED")
        path = f"/v1/admin/sessions/{busy.session_id}"
        assert_problem(
            client.delete(path, params={"force": "true"}, headers=bearer("bob")), 403, "PERMISSION_DENIED"
        )
        assert_problem(
            client.delete(f"/v1/admin/sessions/{ids.new_id('session')}", headers=bearer("root")),
            404,
            "SESSION_NOT_FOUND",
        )
        assert_problem(client.delete(path, headers=bearer("root")), 409, "INVALID_SESSION_STATE")
        ended = client.delete(path, params={"force": "true"}, headers=bearer("root"))
        assert ended.status_code == 200, ended.text
        body = ended.json()
        assert (body["session_id"], body["user_id"], body["cancelled_job_id"]) == (
            busy.session_id,
            "bob",
            busy.job_id,
        )
        assert body["bytes_freed"] > 0 and body["events_deleted"] >= 1
        assert_problem(
            client.delete(path, params={"force": "true"}, headers=bearer("root")), 404, "SESSION_NOT_FOUND"
        )
    assert_fully_ended(mesh, busy)


def test_openapi_documents_the_admin_routes_with_their_problems(mesh) -> None:
    spec = httpx.get(f"{mesh.url}/openapi.json", timeout=10).json()
    listing = spec["paths"]["/v1/admin/sessions"]["get"]
    ending = spec["paths"]["/v1/admin/sessions/{session_id}"]["delete"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ActiveSessionList"
    )
    assert ending["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EndedSession"
    )
    for operation, statuses in ((listing, {"401", "403"}), (ending, {"401", "403", "404", "409"})):
        for status in statuses:
            assert "application/problem+json" in operation["responses"][status]["content"], (
                operation,
                status,
            )
    codes = {
        status: ending["responses"][status]["content"]["application/problem+json"]["schema"]
        for status in ("403", "404", "409")
    }
    assert "PERMISSION_DENIED" in str(codes["403"]) and "SESSION_NOT_FOUND" in str(codes["404"])
    assert "INVALID_SESSION_STATE" in str(codes["409"])
    view = spec["components"]["schemas"]["ActiveSession"]["properties"]
    assert {"session", "age_seconds", "disk_used_bytes"} <= set(view)


# --- CLI -------------------------------------------------------------------------------------


def test_cli_sessions_list_all_and_end_force(mesh) -> None:
    busy = busy_session(mesh)
    listed = vidsynth(mesh, "sessions", "list", "--all", "--json", user="root")
    assert listed.returncode == 0, listed.stderr
    rows = {row["session"]["session_id"]: row for row in json.loads(listed.stdout)["sessions"]}
    assert rows[busy.session_id]["session"]["user_id"] == "bob"
    assert rows[busy.session_id]["session"]["state"] == "processing"
    table = vidsynth(mesh, "sessions", "list", "--all", user="root")
    assert table.returncode == 0 and busy.session_id in table.stderr and "bob" in table.stderr

    denied = vidsynth(mesh, "sessions", "list", "--all", user="alice")
    assert denied.returncode == 3 and "PERMISSION_DENIED" in denied.stderr
    own = vidsynth(mesh, "sessions", "list", "--json", user="bob")
    assert own.returncode == 0 and busy.session_id in {
        s["session_id"] for s in json.loads(own.stdout)["sessions"]
    }
    missing = vidsynth(mesh, "sessions", "end", ids.new_id("session"), "--force", user="root")
    assert missing.returncode == 4 and "SESSION_NOT_FOUND" in missing.stderr
    refused = vidsynth(mesh, "sessions", "end", busy.session_id, user="root")
    assert refused.returncode == 5 and "INVALID_SESSION_STATE" in refused.stderr
    not_admin = vidsynth(mesh, "sessions", "end", busy.session_id, "--force", user="bob")
    assert not_admin.returncode == 3 and "PERMISSION_DENIED" in not_admin.stderr

    ended = vidsynth(mesh, "sessions", "end", busy.session_id, "--force", "--json", user="root")
    assert ended.returncode == 0, ended.stderr
    body = json.loads(ended.stdout)
    assert (body["user_id"], body["cancelled_job_id"]) == ("bob", busy.job_id)
    assert_fully_ended(mesh, busy)
