"""StageRunnerService RPC handlers. Methods not overridden answer NOT_IMPLEMENTED."""

from __future__ import annotations

from vidsynth.v1 import stage_runner_pb2_grpc


class StageRunnerService(stage_runner_pb2_grpc.StageRunnerServiceServicer):
    pass
