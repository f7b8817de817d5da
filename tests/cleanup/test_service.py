"""CleanupService over gRPC: RunCleanup, ListCleanupTasks, EmergencyCleanup and their errors."""

from __future__ import annotations

import grpc

from services.cleanup.sessions import SessionStatus
from tests.cleanup.conftest import (
    DAY,
    StaticSessionStatus,
    expect_error,
    make_session,
    write_file,
)
from tests.support.identities import user_metadata
from vidsynth.v1 import cleanup_pb2

ROOT = user_metadata("root")
ALICE = user_metadata("alice")
TASK_NAMES = [
    "expired_sessions",
    "finished_job_work",
    "stale_spools",
    "orphan_dirs",
    "output_retention",
    "quarantine",
]


async def test_list_tasks_before_any_run(start_cleanup):
    stub = await start_cleanup()
    listing = await stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(), metadata=ALICE)
    assert [t.name for t in listing.tasks] == TASK_NAMES
    priorities = [t.priority for t in listing.tasks]
    assert priorities == sorted(priorities, reverse=True)
    assert listing.tasks[0].priority == cleanup_pb2.CLEANUP_PRIORITY_HIGH
    for task in listing.tasks:
        assert task.interval.seconds == 3600
        assert not task.HasField("last_run_time") and not task.HasField("last_result")
        assert task.next_run_time.seconds > 0
    assert listing.next_page_token == ""


async def test_list_tasks_pages(start_cleanup):
    stub = await start_cleanup()
    names, token = [], ""
    for _ in range(5):
        page = await stub.ListCleanupTasks(
            cleanup_pb2.ListCleanupTasksRequest(page_size=4, page_token=token), metadata=ALICE
        )
        names += [t.name for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert names == TASK_NAMES


async def test_list_tasks_tokens_are_opaque_and_checked(start_cleanup):
    """AIP-158 tokens (libs/common/pagination.py): each task once, no bare offsets."""
    stub = await start_cleanup()
    names, tokens, token = [], [], ""
    while True:
        page = await stub.ListCleanupTasks(
            cleanup_pb2.ListCleanupTasksRequest(page_size=1, page_token=token), metadata=ALICE
        )
        names += [t.name for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
        tokens.append(token)
    assert names == TASK_NAMES
    assert len(tokens) == len(TASK_NAMES) - 1
    assert not any(t.isdigit() for t in tokens)
    for bad in ("1", tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB")):
        error = await expect_error(
            stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(page_token=bad), metadata=ALICE),
            "INVALID_ARGUMENT",
        )
        assert error.field_violations[0].field == "page_token"


async def test_run_one_task_records_last_and_next_run(start_cleanup, mesh_settings):
    quarantined = write_file(mesh_settings.data_dir / "quarantine" / "qua_x", 5000, age_seconds=60 * DAY)
    stub = await start_cleanup()
    response = await stub.RunCleanup(cleanup_pb2.RunCleanupRequest(task_name="quarantine"), metadata=ROOT)
    assert [r.task_name for r in response.results] == ["quarantine"]
    assert response.bytes_freed == 5000 and response.results[0].items_removed == 1
    assert list(response.results[0].removed) == ["quarantine/qua_x"]
    assert not quarantined.exists()

    as_admin = await stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(), metadata=ROOT)
    task = next(t for t in as_admin.tasks if t.name == "quarantine")
    assert task.last_result.bytes_freed == 5000
    assert list(task.last_result.removed) == ["quarantine/qua_x"]
    assert task.next_run_time.seconds - task.last_run_time.seconds == 3600
    # Users see the figures, not the paths (they name other users' sessions).
    as_user = await stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(), metadata=ALICE)
    user_task = next(t for t in as_user.tasks if t.name == "quarantine")
    assert user_task.last_result.bytes_freed == 5000 and list(user_task.last_result.removed) == []


async def test_run_all_tasks(start_cleanup, sessions_dir):
    idle_id, _ = make_session(sessions_dir, age_seconds=10 * DAY)
    sessions = StaticSessionStatus({idle_id: SessionStatus.IDLE})
    stub = await start_cleanup(sessions=sessions)
    response = await stub.RunCleanup(cleanup_pb2.RunCleanupRequest(), metadata=ROOT)
    by_name = {r.task_name: r for r in response.results}
    assert list(by_name) == TASK_NAMES
    assert by_name["finished_job_work"].bytes_freed == 4096
    assert by_name["output_retention"].bytes_freed == 4096
    # No SessionService in this mesh: that task says so, the others still ran.
    assert by_name["expired_sessions"].error_code == "SERVICE_UNAVAILABLE"
    assert response.bytes_freed == sum(r.bytes_freed for r in response.results) == 8192


async def test_run_cleanup_is_admin_only(start_cleanup):
    stub = await start_cleanup()
    await expect_error(
        stub.RunCleanup(cleanup_pb2.RunCleanupRequest(), metadata=ALICE),
        "PERMISSION_DENIED",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        stub.RunCleanup(cleanup_pb2.RunCleanupRequest()), "UNAUTHENTICATED", grpc.StatusCode.UNAUTHENTICATED
    )


async def test_run_cleanup_unknown_task(start_cleanup):
    stub = await start_cleanup()
    error = await expect_error(
        stub.RunCleanup(cleanup_pb2.RunCleanupRequest(task_name="everything"), metadata=ROOT),
        "INVALID_ARGUMENT",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.field_violations[0].field == "task_name"
    assert "quarantine" in error.field_violations[0].description


async def test_list_tasks_bad_paging(start_cleanup):
    stub = await start_cleanup()
    error = await expect_error(
        stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(page_token="zzz"), metadata=ALICE),
        "INVALID_ARGUMENT",
    )
    assert error.field_violations[0].field == "page_token"
    error = await expect_error(
        stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest(page_size=-1), metadata=ALICE),
        "INVALID_ARGUMENT",
    )
    assert error.field_violations[0].field == "page_size"
    await expect_error(stub.ListCleanupTasks(cleanup_pb2.ListCleanupTasksRequest()), "UNAUTHENTICATED")


async def test_emergency_cleanup_errors(start_cleanup):
    stub = await start_cleanup()
    await expect_error(
        stub.EmergencyCleanup(cleanup_pb2.EmergencyCleanupRequest(), metadata=ALICE),
        "PERMISSION_DENIED",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    error = await expect_error(
        stub.EmergencyCleanup(cleanup_pb2.EmergencyCleanupRequest(target_free_bytes=-1), metadata=ROOT),
        "INVALID_ARGUMENT",
    )
    assert error.field_violations[0].field == "target_free_bytes"
