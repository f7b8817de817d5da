"""SessionService RPC handlers. Methods not overridden answer NOT_IMPLEMENTED."""

from __future__ import annotations

from vidsynth.v1 import session_pb2_grpc


class SessionService(session_pb2_grpc.SessionServiceServicer):
    pass
