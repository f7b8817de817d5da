"""HTTP routes for sessions: create, list, get, delete. Each is one SessionService call
made on the authenticated user's behalf; the answers are services/gateway/api_models.py
shapes built by services/gateway/views.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import api_models as m
from services.gateway.auth import CurrentUser
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.state import gateway_state
from services.gateway.views import session_view
from vidsynth.v1 import session_pb2

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=ContractRoute)


# Printable text only (the session service refuses control and format characters), stated
# conservatively so the schema and the gateway agree exactly: printable ASCII, letters and
# digits of any script.
DISPLAY_NAME_PATTERN = r"^[\w\x20-\x7e]*$"


class CreateSessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(
        "",
        max_length=100,
        pattern=DISPLAY_NAME_PATTERN,
        description="Optional label for the session: letters and digits of any script, printable ASCII.",
    )


# What a client does next with a new session (OpenAPI links; stateful testers follow them).
SESSION_LINKS = {
    operation: {"operationId": operation, "parameters": {"session_id": "$response.body#/session_id"}}
    for operation in (
        "get_session",
        "delete_session",
        "upload_asset",
        "create_job",
        "estimate_job",
        "list_jobs",
        "create_stream_token",
        "session_events",
    )
}


def _stub(request: Request):
    return gateway_state(request.app).clients.session


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a session (it holds the uploads and jobs)",
    responses={201: {"headers": {"Location": {"schema": {"type": "string"}}}, "links": SESSION_LINKS}},
    openapi_extra=problems("SESSION_LIMIT_REACHED", "INSUFFICIENT_STORAGE", "INSUFFICIENT_MEMORY"),
)
async def create_session(
    request: Request,
    response: Response,
    user: CurrentUser,
    body: Annotated[CreateSessionBody | None, Body()] = None,
) -> m.Session:
    display_name = body.display_name if body else ""
    session = await _stub(request).CreateSession(session_pb2.CreateSessionRequest(display_name=display_name))
    response.headers["Location"] = f"/v1/sessions/{session.session_id}"
    return session_view(session)


@router.get("", summary="The caller's sessions, newest first (paginated)")
async def list_sessions(
    request: Request,
    user: CurrentUser,
    page_size: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="0: the default (50); capped at 200.")
    ] = 0,
    page_token: m.PageToken = "",
) -> m.SessionList:
    listed = await _stub(request).ListSessions(
        session_pb2.ListSessionsRequest(page_size=page_size, page_token=page_token)
    )
    return m.SessionList(
        sessions=[session_view(s) for s in listed.sessions], next_page_token=listed.next_page_token
    )


@router.get("/{session_id}", summary="One session", openapi_extra=problems("SESSION_NOT_FOUND"))
async def get_session(request: Request, session_id: m.SessionIdPath, user: CurrentUser) -> m.Session:
    session = await _stub(request).GetSession(session_pb2.GetSessionRequest(session_id=session_id))
    return session_view(session)


@router.delete(
    "/{session_id}",
    summary="Delete a session, its files and events (`force` cancels its running job)",
    openapi_extra=problems("SESSION_NOT_FOUND", "INVALID_SESSION_STATE"),
)
async def delete_session(
    request: Request,
    session_id: m.SessionIdPath,
    user: CurrentUser,
    force: Annotated[bool, Query(description="Also cancel a job that is still running.")] = False,
) -> m.DeletedSession:
    deleted = await _stub(request).DeleteSession(
        session_pb2.DeleteSessionRequest(session_id=session_id, force=force)
    )
    return m.DeletedSession(session_id=deleted.session_id, bytes_freed=deleted.bytes_freed)
