"""CleanupService RPC handlers. Methods not overridden answer NOT_IMPLEMENTED."""

from __future__ import annotations

from vidsynth.v1 import cleanup_pb2_grpc


class CleanupService(cleanup_pb2_grpc.CleanupServiceServicer):
    pass
