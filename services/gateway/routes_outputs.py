"""Downloads of a finished job's outputs, with Range requests (206) for players and resumes.

An unsatisfiable range is refused like every other error, as problem+json: 416
RANGE_NOT_SATISFIABLE (with `Content-Range: bytes */<size>`). A malformed Range header is
ignored and the whole file sent (RFC 9110 section 14.2 lets a server do either; ignoring
keeps players working). Both are decided by the parser FileResponse itself uses.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from libs.common.errors import VidsynthError
from libs.common.outputs import output_path
from services.gateway import api_models as m
from services.gateway.api_enums import OUTPUT_MEDIA_TYPES, OutputName
from services.gateway.auth import CurrentUser
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.problems import problem_response
from services.gateway.state import gateway_state
from vidsynth.v1 import stage_runner_pb2

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=ContractRoute)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FILE_HEADERS: dict[str, Any] = {
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
    "ETag": {"description": "The output's SHA-256, quoted.", "schema": {"type": "string"}},
}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole file, as its media type.",
        "content": {media_type: _BINARY for media_type in sorted(set(OUTPUT_MEDIA_TYPES.values()))},
        "headers": _FILE_HEADERS,
    },
    206: {
        "description": "The requested byte range (one range; several come as multipart/byteranges).",
        "content": {
            **{media_type: _BINARY for media_type in sorted(set(OUTPUT_MEDIA_TYPES.values()))},
            "multipart/byteranges": _BINARY,
        },
        "headers": {
            **_FILE_HEADERS,
            "Content-Range": {"schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"}},
        },
    },
}
RangeHeader = Annotated[
    str | None,
    Header(
        alias="Range",
        max_length=1024,
        description="`bytes=<first>-<last>` (or `bytes=-<suffix>`, or several ranges). Past the end: "
        "416 RANGE_NOT_SATISFIABLE; a malformed one is ignored (the whole file, 200).",
    ),
]


def _regular_file_stat(path: Path) -> os.stat_result | None:
    """Blocking: the file's stat when it is a regular file (handed to FileResponse, which
    would otherwise stat it again), else None."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return found if stat.S_ISREG(found.st_mode) else None


def range_refusal(
    response: FileResponse, range_header: str | None, if_range: str | None, size: int
) -> VidsynthError | bool:
    """What `response` would make of this Range: RANGE_NOT_SATISFIABLE, True when the header is
    malformed (to be ignored), False when it serves it or the whole file by itself (no Range,
    or a stale If-Range)."""
    if range_header is None or (if_range is not None and not response._should_use_range(if_range)):
        return False
    try:
        FileResponse._parse_range_header(range_header, size)
    except RangeNotSatisfiable:
        return VidsynthError("RANGE_NOT_SATISFIABLE", f"The file has {size} bytes.")
    except MalformedRangeHeader:
        return True
    return False


@router.get(
    "/jobs/{job_id}/outputs/{name}",
    summary="Download an output (video, thumbnail, audio, script, captions)",
    response_class=FileResponse,
    responses=DOWNLOAD_RESPONSES,
    openapi_extra=problems("JOB_NOT_FOUND", "OUTPUT_NOT_FOUND", "RANGE_NOT_SATISFIABLE"),
)
async def download_output(
    job_id: m.JobIdPath,
    name: OutputName,
    request: Request,
    user: CurrentUser,
    range_header: RangeHeader = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=256)] = None,
):
    job = await gateway_state(request.app).clients.stage_runner.GetJob(
        stage_runner_pb2.GetJobRequest(job_id=job_id)
    )
    output = next((o for o in job.outputs if o.name == name.value), None)
    path = output_path(
        gateway_state(request.app).settings.sessions_dir, job.session_id, job.job_id, name.value
    )
    found = await asyncio.to_thread(_regular_file_stat, path) if path is not None else None
    if output is None or path is None or found is None:
        raise VidsynthError("OUTPUT_NOT_FOUND")
    response = FileResponse(
        path,
        stat_result=found,
        media_type=output.content_type,
        filename=f"{job.job_id}-{path.name}",
        content_disposition_type="inline",
        headers={"Cache-Control": "private, no-cache", "ETag": f'"{output.sha256}"'},
    )
    refusal = range_refusal(response, range_header, if_range, found.st_size)
    if isinstance(refusal, VidsynthError):
        return problem_response(refusal, headers={"Content-Range": f"bytes */{found.st_size}"})
    if refusal:  # malformed: FileResponse reads the header from the scope, so it leaves there
        request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"range"]
    return response
