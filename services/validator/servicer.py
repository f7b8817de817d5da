"""ValidatorService RPC handlers. Methods not overridden answer NOT_IMPLEMENTED."""

from __future__ import annotations

from vidsynth.v1 import validator_pb2_grpc


class ValidatorService(validator_pb2_grpc.ValidatorServiceServicer):
    pass
