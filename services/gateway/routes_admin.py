"""Operators' HTTP routes: every user's active sessions, and ending one of them.

Each is one admin RPC of SessionService made on the caller's behalf; the session service
decides who is an admin (ACCESS_ADMIN in session.proto), so a user without the role gets
403 PERMISSION_DENIED here exactly as over gRPC.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.gateway import api_models as m
from services.gateway.auth import CurrentUser
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.state import gateway_state
from services.gateway.views import active_session_view, ended_session_view
from vidsynth.v1 import session_pb2

router = APIRouter(prefix="/v1/admin", tags=["operators"], route_class=ContractRoute)


def _stub(request: Request):
    return gateway_state(request.app).clients.session


@router.get(
    "/sessions",
    summary="Every user's active sessions, newest first, with owner, state, age and disk used (admin)",
    openapi_extra=problems("PERMISSION_DENIED"),
)
async def list_active_sessions(
    request: Request,
    user: CurrentUser,
    page_size: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="0: the default (50); capped at 200.")
    ] = 0,
    page_token: m.PageToken = "",
    user_id: Annotated[str, Query(max_length=128, description="Only this owner's sessions.")] = "",
) -> m.ActiveSessionList:
    listed = await _stub(request).ListActiveSessions(
        session_pb2.ListActiveSessionsRequest(page_size=page_size, page_token=page_token, user_id=user_id)
    )
    return m.ActiveSessionList(
        sessions=[active_session_view(s) for s in listed.sessions], next_page_token=listed.next_page_token
    )


@router.delete(
    "/sessions/{session_id}",
    summary="End any user's session: cancel its job (`force`), remove its files and events (admin)",
    openapi_extra=problems("PERMISSION_DENIED", "SESSION_NOT_FOUND", "INVALID_SESSION_STATE"),
)
async def end_session(
    request: Request,
    session_id: m.SessionIdPath,
    user: CurrentUser,
    force: Annotated[bool, Query(description="Cancel its queued or running job first.")] = False,
) -> m.EndedSession:
    ended = await _stub(request).EndSession(session_pb2.EndSessionRequest(session_id=session_id, force=force))
    return ended_session_view(ended)
