"""HTTP routes for sessions: create, list, get, delete. Each is one SessionService call
made on the authenticated user's behalf.

The views are built from protobufs by services/gateway/views.py and sent as they are;
the response models document them (validating our own output again on every request
would be work with no effect).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from libs.common import ids
from libs.common.errors import VidsynthError
from services.gateway.auth import CurrentUser
from services.gateway.views import session_json
from vidsynth.v1 import session_pb2

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class CreateSessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str = Field("", max_length=100, description="Optional label for the session.")


class SessionView(BaseModel):
    """A session as the API shows it (see services/gateway/views.py)."""

    session_id: str
    user_id: str
    state: str = Field(description="created, ready, processing, completed, failed or expired")
    display_name: str
    assets: list[dict]
    active_job_id: str | None
    create_time: str | None
    update_time: str | None
    last_active_time: str | None
    expire_time: str | None


class SessionListView(BaseModel):
    sessions: list[SessionView]
    next_page_token: str


class DeletedSessionView(BaseModel):
    session_id: str
    bytes_freed: int


async def require_json_body(request: Request) -> None:
    """A body, when there is one, must be JSON (415 UNSUPPORTED_MEDIA_TYPE otherwise)."""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json" and not media_type.endswith("+json"):
        raise VidsynthError("UNSUPPORTED_MEDIA_TYPE")


def _stub(request: Request):
    return request.app.state.clients.session


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionView,
    dependencies=[Depends(require_json_body)],
)
async def create_session(
    request: Request,
    user: CurrentUser,
    body: Annotated[CreateSessionBody | None, Body()] = None,
) -> JSONResponse:
    display_name = body.display_name if body else ""
    session = await _stub(request).CreateSession(session_pb2.CreateSessionRequest(display_name=display_name))
    return JSONResponse(
        session_json(session),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/v1/sessions/{session.session_id}"},
    )


@router.get("", response_model=SessionListView)
async def list_sessions(
    request: Request,
    user: CurrentUser,
    page_size: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="0: the default (50); capped at 200.")
    ] = 0,
    page_token: Annotated[str, Query(max_length=512)] = "",
) -> JSONResponse:
    listed = await _stub(request).ListSessions(
        session_pb2.ListSessionsRequest(page_size=page_size, page_token=page_token)
    )
    return JSONResponse(
        {"sessions": [session_json(s) for s in listed.sessions], "next_page_token": listed.next_page_token}
    )


@router.get("/{session_id}", response_model=SessionView)
async def get_session(request: Request, session_id: str, user: CurrentUser) -> JSONResponse:
    ids.check_id("session", session_id)
    session = await _stub(request).GetSession(session_pb2.GetSessionRequest(session_id=session_id))
    return JSONResponse(session_json(session))


@router.delete("/{session_id}", response_model=DeletedSessionView)
async def delete_session(
    request: Request, session_id: str, user: CurrentUser, force: Annotated[bool, Query()] = False
) -> JSONResponse:
    ids.check_id("session", session_id)
    deleted = await _stub(request).DeleteSession(
        session_pb2.DeleteSessionRequest(session_id=session_id, force=force)
    )
    return JSONResponse({"session_id": deleted.session_id, "bytes_freed": deleted.bytes_freed})
