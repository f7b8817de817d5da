"""ProgressService and ProgressInternalService RPC handlers: argument checks, ownership,
then the event log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import structlog

from libs.common.errors import FieldViolation, VidsynthError
from libs.common.ids import check_id
from libs.common.log import bind_context
from libs.common.progress_events import EVENT_TYPE_NAMES, STAGE_NAMES
from services.progress.config import ProgressSettings
from services.progress.event_log import EventLog
from services.progress.snapshot import compute_snapshot
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc

log = structlog.get_logger("vidsynth.progress")

# Checks that the calling user owns the session (SESSION_NOT_FOUND otherwise).
OwnershipCheck = Callable[[str], Awaitable[None]]


def check_ids(session_id: str, job_id: str) -> None:
    check_id("session", session_id)
    if job_id:
        check_id("job", job_id)


def check_publish_request(request: progress_internal_pb2.PublishEventsRequest, max_events: int) -> None:
    check_id("session", request.session_id)
    if not request.events:
        raise VidsynthError(
            "INVALID_ARGUMENT", "No events to publish.", [FieldViolation("events", "must not be empty")]
        )
    if len(request.events) > max_events:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            f"At most {max_events} events per call.",
            [FieldViolation("events", f"at most {max_events} per call")],
        )
    for index, event in enumerate(request.events):
        if event.type not in EVENT_TYPE_NAMES:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                "Every event needs a known type.",
                [FieldViolation(f"events[{index}].type", "must be a known event type")],
            )
        if event.stage and event.stage not in STAGE_NAMES:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                "Unknown stage.",
                [FieldViolation(f"events[{index}].stage", "must be a known stage")],
            )
        if event.job_id:
            check_id("job", event.job_id, f"events[{index}].job_id")
        if event.session_id and event.session_id != request.session_id:
            raise VidsynthError(
                "INVALID_ARGUMENT",
                "An event names another session.",
                [FieldViolation(f"events[{index}].session_id", "must be empty or the request's session_id")],
            )


class ProgressService(progress_pb2_grpc.ProgressServiceServicer):
    def __init__(self, log: EventLog, settings: ProgressSettings, check_owner: OwnershipCheck) -> None:
        self._log = log
        self._settings = settings
        self._check_owner = check_owner

    async def Subscribe(self, request, context: grpc.aio.ServicerContext) -> AsyncIterator:
        check_ids(request.session_id, request.job_id)
        if request.after_seq < 0:
            raise VidsynthError(
                "INVALID_ARGUMENT", "after_seq must not be negative.", [FieldViolation("after_seq", ">= 0")]
            )
        bind_context(session_id=request.session_id)
        await self._check_owner(request.session_id)
        # Headers go out now so a client knows the stream was accepted before the first event.
        await context.send_initial_metadata(())
        log.debug("subscribe.started", after_seq=request.after_seq, job_id=request.job_id)
        last_seq = request.after_seq
        try:
            async for event in self._log.stream(
                request.session_id,
                request.after_seq,
                job_id=request.job_id,
                until_terminal=request.until_terminal,
            ):
                yield event
                last_seq = event.seq
        except VidsynthError as error:
            log.info("subscribe.ended", code=error.code, last_seq=last_seq)
            raise
        finally:
            log.debug("subscribe.closed", last_seq=last_seq)

    async def GetProgress(self, request, context):
        check_ids(request.session_id, request.job_id)
        bind_context(session_id=request.session_id)
        await self._check_owner(request.session_id)
        job_id = request.job_id or await self._log.store.latest_job_id(request.session_id)
        if not job_id:
            return progress_pb2.ProgressSnapshot(session_id=request.session_id)
        events = await self._log.store.read_after(
            request.session_id, 0, self._settings.progress_max_events_per_session, job_id=job_id
        )
        if not events:
            raise VidsynthError("JOB_NOT_FOUND", metadata={"job_id": job_id})
        return compute_snapshot(request.session_id, job_id, events)


class ProgressInternalService(progress_internal_pb2_grpc.ProgressInternalServiceServicer):
    """The mesh's own calls (mesh credential only, declared in progress_internal.proto)."""

    def __init__(self, log: EventLog, settings: ProgressSettings) -> None:
        self._log = log
        self._settings = settings

    async def PublishEvents(self, request, context):
        check_publish_request(request, self._settings.progress_max_events_per_publish)
        bind_context(session_id=request.session_id)
        stored = await self._log.publish(request.session_id, request.events)
        log.debug("events.published", count=len(stored), last_seq=stored[-1].seq)
        return progress_internal_pb2.PublishEventsResponse(seqs=[event.seq for event in stored])

    async def DeleteSessionEvents(self, request, context):
        check_id("session", request.session_id)
        bind_context(session_id=request.session_id)
        deleted = await self._log.delete_session(request.session_id)
        log.info("session_events.deleted", count=deleted)
        return progress_internal_pb2.DeleteSessionEventsResponse(events_deleted=deleted)
