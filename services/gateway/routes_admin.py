"""Operators' HTTP routes: every user's active sessions, and ending one of them.

Each is one admin RPC of SessionService made on the caller's behalf; the session service
decides who is an admin (ACCESS_ADMIN in session.proto), so a user without the role gets
403 PERMISSION_DENIED here exactly as over gRPC.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from libs.common import ids
from services.gateway.auth import CurrentUser
from services.gateway.problems import PROBLEM_CONTENT_TYPE
from services.gateway.routes_sessions import SessionView
from services.gateway.views import session_json
from vidsynth.v1 import session_pb2

router = APIRouter(prefix="/v1/admin", tags=["operators"])


class ProblemView(BaseModel):
    """application/problem+json (RFC 9457) with the catalogued code."""

    type: str
    code: str = Field(description="The stable error code from the catalog.")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a person.")
    request_id: str
    errors: list[dict] | None = None
    retry_after: float | None = None


def _problem(description: str) -> dict:
    return {"description": description, "model": ProblemView, "content": {PROBLEM_CONTENT_TYPE: {}}}


COMMON_PROBLEMS = {
    400: _problem("INVALID_ARGUMENT or INVALID_ID: a malformed parameter."),
    401: _problem("UNAUTHENTICATED: no valid API key."),
    403: _problem("PERMISSION_DENIED: the caller does not have the admin role."),
    429: _problem("RATE_LIMITED: too many requests; see Retry-After."),
    503: _problem("SERVICE_UNAVAILABLE: the session service is unreachable; retry."),
}


class ActiveSessionView(BaseModel):
    """A session as operators see it."""

    session: SessionView
    age_seconds: float = Field(description="Seconds since the session was created.")
    disk_used_bytes: int = Field(description="Bytes of the files in its directory.")


class ActiveSessionListView(BaseModel):
    sessions: list[ActiveSessionView]
    next_page_token: str


class EndedSessionView(BaseModel):
    session_id: str
    user_id: str = Field(description="Whose session it was.")
    cancelled_job_id: str | None = Field(description="The job cancelled by `force`, if one was processing.")
    bytes_freed: int
    events_deleted: int


def _stub(request: Request):
    return request.app.state.clients.session


def active_session_json(active: session_pb2.ActiveSession) -> dict:
    return {
        "session": session_json(active.session),
        "age_seconds": round(active.age.ToMicroseconds() / 1e6, 3),
        "disk_used_bytes": active.disk_used_bytes,
    }


def ended_session_json(ended: session_pb2.EndSessionResponse) -> dict:
    return {
        "session_id": ended.session_id,
        "user_id": ended.user_id,
        "cancelled_job_id": ended.cancelled_job_id or None,
        "bytes_freed": ended.bytes_freed,
        "events_deleted": ended.events_deleted,
    }


@router.get(
    "/sessions",
    response_model=ActiveSessionListView,
    summary="Every user's active sessions (admin)",
    responses=COMMON_PROBLEMS,
)
async def list_active_sessions(
    request: Request,
    user: CurrentUser,
    page_size: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="0: the default (50); capped at 200.")
    ] = 0,
    page_token: Annotated[str, Query(max_length=512)] = "",
    user_id: Annotated[str, Query(max_length=128, description="Only this owner's sessions.")] = "",
) -> JSONResponse:
    listed = await _stub(request).ListActiveSessions(
        session_pb2.ListActiveSessionsRequest(page_size=page_size, page_token=page_token, user_id=user_id)
    )
    return JSONResponse(
        {
            "sessions": [active_session_json(s) for s in listed.sessions],
            "next_page_token": listed.next_page_token,
        }
    )


@router.delete(
    "/sessions/{session_id}",
    response_model=EndedSessionView,
    summary="End any user's session: cancel its job (force), remove its files and events (admin)",
    responses={
        **COMMON_PROBLEMS,
        404: _problem("SESSION_NOT_FOUND: no session has this id."),
        409: _problem("INVALID_SESSION_STATE: a job is processing and `force` was not given."),
    },
)
async def end_session(
    request: Request,
    session_id: str,
    user: CurrentUser,
    force: Annotated[bool, Query(description="Cancel its queued or running job first.")] = False,
) -> JSONResponse:
    ids.check_id("session", session_id)
    ended = await _stub(request).EndSession(session_pb2.EndSessionRequest(session_id=session_id, force=force))
    return JSONResponse(ended_session_json(ended))
