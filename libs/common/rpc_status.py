"""VidsynthError <-> gRPC rich error model (google.rpc.Status + ErrorInfo, BadRequest,
RetryInfo). This module only maps the catalog to and from the `google.rpc.Status`
message; grpcio-status (`grpc_status.rpc_status`) carries that message in the
`grpc-status-details-bin` trailer and reads it back, checking it against the call's
own status."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.common.errors import FieldViolation, VidsynthError, code_for_grpc_status
from libs.common.rpc_tracing import record_failed_call

ERROR_DOMAIN = "vidsynth"
DETAILS_KEY = "grpc-status-details-bin"


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status_proto(error: VidsynthError) -> status_pb2.Status:
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN, metadata=error.metadata))
    ]
    if error.field_violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.field_violations
                    ]
                )
            )
        )
    if error.retry_after_seconds is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(_pack(retry))
    return status_pb2.Status(code=error.spec.grpc_code.value[0], message=error.message, details=details)


def to_grpc_status(error: VidsynthError) -> grpc.Status:
    """The status a call ends with: code, message and the rich details trailer."""
    return rpc_status.to_status(to_status_proto(error))


def trailing_metadata_for(error: VidsynthError) -> tuple[tuple[str, bytes], ...]:
    return tuple(to_grpc_status(error).trailing_metadata)


async def abort_with_error(context: grpc.aio.ServicerContext, error: VidsynthError) -> None:
    """Ends the call with the catalogued status; raises grpc.aio.AbortError."""
    await context.abort_with_status(to_grpc_status(error))


def error_from_status_proto(status: status_pb2.Status) -> VidsynthError | None:
    code: str | None = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                code, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    if code is None:
        return None
    try:
        return VidsynthError(
            code, status.message or None, violations, retry_after_seconds=retry_after, metadata=metadata
        )
    except ValueError:
        return None


def error_from_rpc_error(error: grpc.RpcError) -> VidsynthError:
    """The catalogued error a failed call carried, or the closest code for a bare status
    (recorded on the caller's trace span)."""
    translated = _translate(error)
    record_failed_call(error.code(), translated.code)
    return translated


def _translate(error: grpc.RpcError) -> VidsynthError:
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]  # a failed call is a grpc.Call
    except ValueError:  # details that contradict the call's own code or message: not trusted
        status = None
    parsed = error_from_status_proto(status) if status is not None else None
    return parsed or VidsynthError(code_for_grpc_status(error.code()))
