"""ListJobs pages: a user's jobs (of one session, or all), oldest first, with opaque page
tokens (libs/common/pagination.py) around the store's sequence numbers."""

from __future__ import annotations

from collections.abc import Callable

from libs.common.pagination import int_cursor, open_page
from services.stage_runner.store import JobStore, StoredJob
from vidsynth.v1 import stage_runner_pb2


async def list_jobs(
    store: JobStore,
    user_id: str,
    request: stage_runner_pb2.ListJobsRequest,
    view: Callable[[StoredJob], stage_runner_pb2.Job],
) -> stage_runner_pb2.ListJobsResponse:
    """`view` turns a stored job into what the caller sees (live state for running jobs)."""
    page = open_page("ListJobs", request.page_size, request.page_token, int_cursor, [request.session_id])
    rows = await store.list_for_user(user_id, request.session_id, page.cursor or 0, page.limit)
    listed, token = page.finish(rows, lambda stored: [stored.seq])
    return stage_runner_pb2.ListJobsResponse(jobs=[view(r) for r in listed], next_page_token=token)
