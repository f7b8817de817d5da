"""What the session service asks of the rest of the mesh when a session ends: the stage
runner cancels its job (acting as the job's owner, whoever asked), progress drops its
events. Both are best effort with short deadlines: the session goes either way."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import grpc
import structlog

from libs.common.clients import MeshClients
from libs.common.identity import USER_ID_KEY
from vidsynth.internal.v1 import progress_internal_pb2
from vidsynth.v1 import stage_runner_pb2

log = structlog.get_logger("vidsynth.session.peers")

CANCEL_TIMEOUT_SECONDS = 3.0
DELETE_EVENTS_TIMEOUT_SECONDS = 3.0
# A cancelled job's last event (job.cancelled) leaves the runner's publisher a moment after
# CancelJob answers; a second deletion this much later removes it too. Longer than the
# publisher's longest retry pause (services/stage_runner/publisher.py, 5 s).
LATE_EVENTS_SECONDS = 6.0


class SessionPeers(Protocol):
    async def cancel_job(self, job_id: str, owner: str) -> bool:
        """Cancels `owner`'s job; False when the runner could not be told."""
        ...

    async def delete_events(self, session_id: str, expect_late: bool) -> int:
        """Drops the session's progress events now (how many), and again a little later when
        `expect_late` (a job was processing in it), or when this deletion failed."""
        ...


class MeshPeers:
    def __init__(self, clients: MeshClients, late_events_seconds: float = LATE_EVENTS_SECONDS) -> None:
        self._clients = clients
        self._late_seconds = late_events_seconds
        self._late: set[asyncio.Task] = set()

    async def cancel_job(self, job_id: str, owner: str) -> bool:
        try:
            await self._clients.stage_runner.CancelJob(
                stage_runner_pb2.CancelJobRequest(job_id=job_id),
                timeout=CANCEL_TIMEOUT_SECONDS,
                # The job is the owner's: the runner scopes CancelJob to the user it acts for.
                metadata=((USER_ID_KEY, owner),),
            )
        except grpc.RpcError as error:
            # JOB_NOT_CANCELLABLE: it ended meanwhile, which is as good.
            log.warning("session.cancel_failed", job_id=job_id, code=str(error.code()))
            return False
        return True

    async def delete_events(self, session_id: str, expect_late: bool) -> int:
        deleted = await self._delete_events_once(session_id)
        if expect_late or deleted is None:
            task = asyncio.create_task(self._delete_late_events(session_id))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        return deleted or 0

    async def _delete_events_once(self, session_id: str) -> int | None:
        try:
            reply = await self._clients.progress_internal.DeleteSessionEvents(
                progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
                timeout=DELETE_EVENTS_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as error:
            log.warning("session.events_not_deleted", session_id=session_id, code=str(error.code()))
            return None
        return reply.events_deleted

    async def _delete_late_events(self, session_id: str) -> None:
        await asyncio.sleep(self._late_seconds)
        late = await self._delete_events_once(session_id)
        if late:
            log.info("session.late_events_deleted", session_id=session_id, count=late)

    async def close(self) -> None:
        for task in list(self._late):
            task.cancel()
        for task in list(self._late):
            with contextlib.suppress(asyncio.CancelledError):
                await task
