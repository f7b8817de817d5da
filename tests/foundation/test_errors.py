"""The catalog travels intact over gRPC (rich error model) and HTTP (problem+json)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.common.errors import CATALOG, FieldViolation, VidsynthError
from libs.common.rpc_status import error_from_status_proto, to_status_proto
from services.gateway.problems import problem_body, problem_response


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_every_code_round_trips_through_the_rich_status(code: str) -> None:
    error = VidsynthError(code, retry_after_seconds=2.5, field_violations=[FieldViolation("f", "bad")])
    status = to_status_proto(error)
    assert status.code == CATALOG[code].grpc_code.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == (code, "vidsynth")
    parsed = error_from_status_proto(status)
    assert parsed is not None
    assert (parsed.code, parsed.message, parsed.retry_after_seconds) == (code, error.message, 2.5)
    assert parsed.field_violations == [FieldViolation("f", "bad")]


def test_catalog_entries_are_complete() -> None:
    for code, spec in CATALOG.items():
        assert code == code.upper() and spec.code == code
        assert 400 <= spec.http_status < 600
        assert spec.grpc_code is not grpc.StatusCode.OK
        assert spec.title and spec.message.endswith((".", "?"))


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        VidsynthError("NO_SUCH_CODE")


def test_problem_json_has_the_rfc9457_members_and_retry_after() -> None:
    error = VidsynthError("SESSION_LIMIT_REACHED", retry_after_seconds=1.2)
    body = problem_body(error, "req_1")
    assert body["code"] == "SESSION_LIMIT_REACHED"
    assert body["status"] == 429
    assert body["title"] == "Session limit reached"
    assert body["detail"] == CATALOG["SESSION_LIMIT_REACHED"].message
    assert body["request_id"] == "req_1"
    response = problem_response(error, "req_1")
    assert response.media_type == "application/problem+json"
    assert response.headers["Retry-After"] == "2"
    assert response.headers["X-Request-ID"] == "req_1"


def test_a_failed_call_reads_back_through_grpcio_status() -> None:
    """The trailer is the serialized google.rpc.Status, byte for byte (what the Node and
    TS clients decode); one that contradicts the call's own status is not trusted."""
    from grpc.aio import AioRpcError, Metadata

    from libs.common.rpc_status import DETAILS_KEY, error_from_rpc_error, to_grpc_status

    error = VidsynthError("FILE_TOO_LARGE", field_violations=[FieldViolation("file", "too big")])
    status = to_grpc_status(error)
    assert (status.code, status.details) == (grpc.StatusCode.INVALID_ARGUMENT, error.message)
    assert tuple(status.trailing_metadata) == ((DETAILS_KEY, to_status_proto(error).SerializeToString()),)
    call = AioRpcError(status.code, Metadata(), Metadata(*status.trailing_metadata), status.details)
    parsed = error_from_rpc_error(call)
    assert (parsed.code, parsed.field_violations) == ("FILE_TOO_LARGE", [FieldViolation("file", "too big")])
    contradicted = AioRpcError(
        grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(*status.trailing_metadata), status.details
    )
    assert error_from_rpc_error(contradicted).code == "SERVICE_UNAVAILABLE"
