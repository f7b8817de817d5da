"""Live progress for browsers: SSE and WebSocket over ProgressService.Subscribe (fanned out
per session by services.gateway.event_feeds), and the stream tokens that let EventSource
(which cannot send headers) authenticate.

Refusals (bad ids, unknown or foreign session, bad token) are checked before the response
starts, so they are proper problem+json statuses rather than broken streams. A client that
goes away leaves its feed at once; the last one out cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette

from libs.common.errors import FieldViolation, VidsynthError
from libs.common.identity import Identity, current_identity, current_request_id
from libs.common.ids import check_id
from libs.common.metrics import STREAM_SUBSCRIBERS
from libs.common.problems import problem_body
from libs.common.rpc_status import error_from_rpc_error
from services.gateway import api_models as m
from services.gateway.api_enums import EventType
from services.gateway.auth import CurrentUser
from services.gateway.contract import BEARER_SCHEME, STREAM_TOKEN_SCHEME, problems
from services.gateway.event_feeds import FeedRegistry, follow, follow_feed, joined
from services.gateway.json_body import ContractRoute
from services.gateway.problems import problem_response
from services.gateway.state import gateway_state
from vidsynth.v1 import progress_pb2, session_pb2

router = APIRouter(tags=["progress"], route_class=ContractRoute)

PING_SECONDS = 15
RETRY_MILLISECONDS = 3000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


SSE_DESCRIPTION = """The session's progress events, replayed after `Last-Event-ID` (or `?after=`) and
then live, each exactly once. Each frame is `id: <seq>`, `event: <type>` (job.queued, job.started,
stage.started, stage.progress, stage.completed, stage.failed, job.completed, job.failed,
job.cancelled, warning) and `data: <ProgressEvent JSON>`. If the stream fails, one `event: error`
frame carries a `StreamError` (reconnect with Last-Event-ID to resume). Comments (`: ping`) keep
the connection open. The stream ends after the job's final event with `until_terminal`, and
otherwise after the server's stream lifetime (reconnect with Last-Event-ID: nothing is lost).
A Last-Event-ID (or after) beyond the session's last event is refused with 409
`EVENT_SEQ_AHEAD`: resume from a seq the stream sent, or from 0."""
STREAM_SECURITY = [{BEARER_SCHEME: []}, {STREAM_TOKEN_SCHEME: []}]
STREAM_REFUSALS = ("SESSION_NOT_FOUND", "SESSION_EXPIRED", "STREAM_TOKEN_INVALID", "EVENT_SEQ_AHEAD")
# One SSE event as the stream frames it (OpenAPI 3.2's `itemSchema` reading; Open API 3.1 tools
# such as schemathesis take a text/event-stream `schema` as one event's).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": [*(t.value for t in EventType), "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/ProgressEvent"},
                    {"$ref": "#/components/schemas/StreamError"},
                ]
            },
            "description": "A ProgressEvent (JSON); a StreamError on `event: error`.",
        },
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq."},
        "retry": {"type": "integer", "description": "Milliseconds a browser waits before reconnecting."},
    },
}
SSE_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": "text/event-stream of ProgressEvent frames (see the operation's description).",
        "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
    }
}


def stream_identity(
    app: Starlette, authorization: str | None, token: str | None, session_id: str
) -> Identity:
    """The caller of a stream: by API key when the header is sent, else by stream token."""
    if authorization:
        identity = gateway_state(app).keyring.identity_from_bearer(authorization)
    elif token:
        grant = gateway_state(app).stream_tokens.verify(token, session_id)
        identity = Identity(grant.user_id)
    else:
        raise VidsynthError("UNAUTHENTICATED", "Send an API key or a stream token (?token=).")
    current_identity.set(identity)
    return identity


def resume_after(last_event_id: str | None, after: int | None) -> int:
    """Where to resume: the browser's Last-Event-ID wins over ?after= (it is newer)."""
    if last_event_id is not None and last_event_id.strip():
        try:
            value = int(last_event_id.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                "Last-Event-ID must be an event seq.",
                [FieldViolation("Last-Event-ID", "must be a non-negative integer")],
            )
        return value
    return after or 0


def feed_registry(app: Starlette) -> FeedRegistry:
    return gateway_state(app).event_feeds


async def check_stream_request(
    app: Starlette, session_id: str, job_id: str | None, after_seq: int = 0
) -> None:
    """Refusals before the stream starts, so they are proper HTTP statuses: ids, then ownership
    (SessionService answers SESSION_NOT_FOUND for another user's session), then a resume point
    beyond the session's last event (EVENT_SEQ_AHEAD: it would wait for events that may never come)."""
    check_id("session", session_id)
    if job_id:
        check_id("job", job_id, "job_id")
    if after_seq <= 0:
        await gateway_state(app).clients.session.GetSession(
            session_pb2.GetSessionRequest(session_id=session_id)
        )
        return
    # The progress service checks ownership too; its snapshot's last_seq is the session's newest
    # event (every event names its job, and the snapshot is of the job of the newest one).
    snapshot = await gateway_state(app).clients.progress.GetProgress(
        progress_pb2.GetProgressRequest(session_id=session_id)
    )
    if after_seq > snapshot.last_seq:
        raise VidsynthError(
            "EVENT_SEQ_AHEAD",
            f"Event {after_seq} is beyond the session's last event ({snapshot.last_seq}); "
            "resume from a seq the stream sent, or from 0.",
            [FieldViolation("Last-Event-ID", f"at most {snapshot.last_seq}")],
        )


def _error_json(error: VidsynthError, request_id: str) -> str:
    return json.dumps({"type": "error", "error": problem_body(error, request_id)})


async def sse_frames(
    app: Starlette,
    identity: Identity,
    session_id: str,
    after_seq: int,
    job_id: str,
    until_terminal: bool,
    request_id: str,
) -> AsyncIterator[bytes | ServerSentEvent]:
    current_identity.set(identity)
    registry = feed_registry(app)
    deadline = stream_deadline(app)
    STREAM_SUBSCRIBERS.labels("sse").inc()
    try:
        # Joined before the first frame: once a client sees "connected", it misses nothing.
        async with joined(registry, session_id, after_seq) as feed:
            yield ServerSentEvent(comment="connected", retry=RETRY_MILLISECONDS)
            events = follow_feed(
                registry, feed, after_seq, job_id=job_id, until_terminal=until_terminal, deadline=deadline
            )
            # aclosing: a client that goes away leaves the feed now, not when the GC gets to it.
            async with contextlib.aclosing(events):
                async for item in events:
                    yield item.sse
    except VidsynthError as error:
        # The client reconnects with Last-Event-ID and resumes exactly where it stopped.
        yield ServerSentEvent(data=_error_json(error, request_id), event="error")
    finally:
        STREAM_SUBSCRIBERS.labels("sse").dec()


def stream_deadline(app: Starlette) -> float:
    """When a stream opened now ends (the client reconnects and resumes by seq): no stream
    outlives its token or key by more than this."""
    return asyncio.get_running_loop().time() + gateway_state(app).gateway_settings.gateway_stream_max_seconds


@router.post(
    "/v1/sessions/{session_id}/stream-token",
    summary="A short-lived token that opens this session's event stream (for EventSource)",
    openapi_extra=problems("SESSION_NOT_FOUND", "SESSION_EXPIRED"),
)
async def create_stream_token(
    session_id: m.SessionIdPath, request: Request, user: CurrentUser
) -> m.StreamToken:
    await check_stream_request(request.app, session_id, None)
    signer = gateway_state(request.app).stream_tokens
    token, grant = signer.issue(session_id, user.user_id)
    return m.StreamToken(
        token=token, session_id=session_id, expires_at=grant.expires_at, expires_in=signer.ttl_seconds
    )


AfterQuery = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Resume after this seq.")]
TokenQuery = Annotated[
    str | None, Query(max_length=1024, description="A stream token instead of the API key.")
]
JobFilter = Annotated[str | None, Query(pattern=m.ID_PATTERNS["job"], description="Only this job's events.")]
UntilTerminal = Annotated[bool, Query(description="End after the job's final event.")]


@router.get(
    "/v1/sessions/{session_id}/events",
    summary="Server-sent events: the session's progress, replayed then live",
    description=SSE_DESCRIPTION,
    response_class=EventSourceResponse,
    responses=SSE_RESPONSES,
    openapi_extra={"security": STREAM_SECURITY, **problems(*STREAM_REFUSALS)},
)
async def session_events(
    session_id: m.SessionIdPath,
    request: Request,
    after: AfterQuery = None,
    token: TokenQuery = None,
    job_id: JobFilter = None,
    until_terminal: UntilTerminal = False,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=18,  # within a 64-bit seq
            pattern="^[0-9]*$",
            description="The last seq received (browsers send it on reconnect); wins over `after`.",
        ),
    ] = None,
) -> EventSourceResponse:
    identity = stream_identity(request.app, request.headers.get("authorization"), token, session_id)
    after_seq = resume_after(last_event_id, after)
    await check_stream_request(request.app, session_id, job_id, after_seq)
    frames = sse_frames(
        request.app, identity, session_id, after_seq, job_id or "", until_terminal, current_request_id.get()
    )
    return EventSourceResponse(
        frames,
        headers=SSE_HEADERS,
        ping=PING_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
    )


async def _pump_to_websocket(websocket: WebSocket, events: AsyncIterator, request_id: str) -> None:
    try:
        async for item in events:
            await websocket.send_text(item.json)
    except VidsynthError as error:
        await websocket.send_text(_error_json(error, request_id))
        await websocket.close(code=4000 + error.spec.http_status)
        return
    await websocket.close(code=1000)


async def _wait_for_disconnect(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


@router.websocket("/v1/sessions/{session_id}/ws")
async def session_events_ws(
    websocket: WebSocket,
    session_id: str,
    after: Annotated[int, Query(ge=0)] = 0,
    token: str | None = None,
    job_id: str | None = None,
    until_terminal: bool = False,
) -> None:
    """WebSocket: the same JSON events as SSE, one per text message; resume with ?after=."""
    request_id = current_request_id.get()
    try:
        stream_identity(websocket.app, websocket.headers.get("authorization"), token, session_id)
        await check_stream_request(websocket.app, session_id, job_id, after)
    except grpc.aio.AioRpcError as error:
        await websocket.send_denial_response(problem_response(error_from_rpc_error(error), request_id))
        return
    except VidsynthError as error:
        await websocket.send_denial_response(problem_response(error, request_id))
        return
    await websocket.accept()
    events = follow(
        feed_registry(websocket.app),
        session_id,
        after,
        job_id=job_id or "",
        until_terminal=until_terminal,
        deadline=stream_deadline(websocket.app),
    )
    pump = asyncio.create_task(_pump_to_websocket(websocket, events, request_id))
    watcher = asyncio.create_task(_wait_for_disconnect(websocket))
    STREAM_SUBSCRIBERS.labels("websocket").inc()
    try:
        await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watcher):
            task.cancel()
        for task in (pump, watcher):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        # Leaves the feed (cancelling the upstream call if this was its last client).
        await events.aclose()
        STREAM_SUBSCRIBERS.labels("websocket").dec()
