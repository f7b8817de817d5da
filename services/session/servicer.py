"""SessionService and SessionInternalService RPC handlers: thin translations between
messages and the manager."""

from __future__ import annotations

from libs.common.identity import require_identity
from libs.common.log import bind_context
from services.session.sessions import SessionManager
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import session_pb2, session_pb2_grpc


class SessionService(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    async def CreateSession(self, request, context) -> session_pb2.Session:
        record = await self._manager.create(require_identity().user_id, request.display_name)
        return self._manager.to_proto(record)

    async def GetSession(self, request, context) -> session_pb2.Session:
        bind_context(session_id=request.session_id)
        record = await self._manager.get(require_identity().user_id, request.session_id)
        return self._manager.to_proto(record)

    async def ListSessions(self, request, context) -> session_pb2.ListSessionsResponse:
        records, next_token = await self._manager.list(
            require_identity().user_id, request.page_size, request.page_token
        )
        return session_pb2.ListSessionsResponse(
            sessions=[self._manager.to_proto(r) for r in records], next_page_token=next_token
        )

    async def TouchSession(self, request, context) -> session_pb2.Session:
        bind_context(session_id=request.session_id)
        record = await self._manager.touch(require_identity().user_id, request.session_id)
        return self._manager.to_proto(record)

    async def DeleteSession(self, request, context) -> session_pb2.DeleteSessionResponse:
        bind_context(session_id=request.session_id)
        freed = await self._manager.delete(require_identity().user_id, request.session_id, request.force)
        return session_pb2.DeleteSessionResponse(session_id=request.session_id, bytes_freed=freed)

    # Admin only (declared ACCESS_ADMIN in session.proto; the interceptor refuses anyone else).

    async def ListActiveSessions(self, request, context) -> session_pb2.ListActiveSessionsResponse:
        views, next_token = await self._manager.list_active(
            request.page_size, request.page_token, request.user_id
        )
        return session_pb2.ListActiveSessionsResponse(
            sessions=[self._manager.to_active_proto(view) for view in views], next_page_token=next_token
        )

    async def EndSession(self, request, context) -> session_pb2.EndSessionResponse:
        bind_context(session_id=request.session_id)
        ended = await self._manager.end(request.session_id, request.force)
        return session_pb2.EndSessionResponse(
            session_id=ended.session_id,
            user_id=ended.user_id,
            cancelled_job_id=ended.cancelled_job_id,
            bytes_freed=ended.bytes_freed,
            events_deleted=ended.events_deleted,
        )


class SessionInternalService(session_internal_pb2_grpc.SessionInternalServiceServicer):
    """The mesh's own calls (mesh credential only, declared in session_internal.proto)."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    async def RegisterAsset(self, request, context) -> session_pb2.Session:
        bind_context(session_id=request.session_id)
        record = await self._manager.register_asset(
            require_identity().user_id, request.session_id, request.asset
        )
        return self._manager.to_proto(record)

    async def UpdateSessionState(self, request, context) -> session_pb2.Session:
        bind_context(session_id=request.session_id, job_id=request.job_id)
        record = await self._manager.update_state(
            require_identity().user_id, request.session_id, request.state, request.job_id
        )
        return self._manager.to_proto(record)

    async def SweepExpiredSessions(
        self, request, context
    ) -> session_internal_pb2.SweepExpiredSessionsResponse:
        result = await self._manager.sweep(request.limit)
        return session_internal_pb2.SweepExpiredSessionsResponse(
            session_ids=result.session_ids, bytes_freed=result.bytes_freed
        )

    async def BatchGetSessions(self, request, context) -> session_internal_pb2.BatchGetSessionsResponse:
        records = await self._manager.batch_get(list(request.session_ids))
        return session_internal_pb2.BatchGetSessionsResponse(
            sessions=[self._manager.to_proto(r) for r in records]
        )
