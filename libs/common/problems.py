"""The HTTP error body: application/problem+json (RFC 9457) built from the error catalog.

The gateway answers every HTTP error with it, and the nginx edge that `vidsynth up` writes
answers its own refusals (body too large, rate limited...) with the very same shape, so a
client parses one kind of error whichever door refused it.
"""

from __future__ import annotations

from libs.common.errors import VidsynthError

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(error: VidsynthError, request_id: str) -> dict:
    body: dict = {
        "type": f"urn:vidsynth:error:{error.code}",
        "code": error.code,
        "title": error.spec.title,
        "status": error.spec.http_status,
        "detail": error.message,
        "request_id": request_id,
    }
    if error.field_violations:
        body["errors"] = [{"field": v.field, "description": v.description} for v in error.field_violations]
    if error.retry_after_seconds is not None:
        body["retry_after"] = error.retry_after_seconds
    return body
