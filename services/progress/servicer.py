"""ProgressService RPC handlers. Methods not overridden answer NOT_IMPLEMENTED."""

from __future__ import annotations

from vidsynth.v1 import progress_pb2_grpc


class ProgressService(progress_pb2_grpc.ProgressServiceServicer):
    pass
