"""Sending one upload over gRPC (header, then chunks) or HTTP (multipart or raw)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from libs.common.asset_kinds import KIND_NAMES
from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import bearer, user_metadata
from vidsynth.v1 import validator_pb2

CHUNK = 64 * 1024


def grpc_requests(session_id: str, kind: int, filename: str, data: bytes, content_type: str = ""):
    yield validator_pb2.ValidateUploadRequest(
        header=validator_pb2.UploadHeader(
            session_id=session_id,
            kind=kind,
            original_filename=filename,
            declared_size=len(data),
            content_type=content_type,
        )
    )
    for start in range(0, len(data), CHUNK):
        yield validator_pb2.ValidateUploadRequest(chunk=data[start : start + CHUNK])


async def grpc_upload(mesh, session_id, kind, filename, data, content_type="", user="alice"):
    """(response, None) or (None, catalogued code)."""
    try:
        response = await mesh.validator.ValidateUpload(
            grpc_requests(session_id, kind, filename, data, content_type), metadata=user_metadata(user)
        )
    except grpc.aio.AioRpcError as exc:
        return None, error_from_rpc_error(exc).code
    return response, None


async def http_upload(mesh, session_id, kind, filename, data, content_type="", user="alice", raw=False):
    """(status, json body) of POST /v1/sessions/{id}/assets/{kind}."""
    url = f"/v1/sessions/{session_id}/assets/{KIND_NAMES[kind]}"
    if raw:
        headers = {**bearer(user), "Content-Type": content_type or "application/octet-stream"}
        response = await mesh.http.post(
            url, content=data, headers=headers, params={"filename": filename} if filename else None
        )
    else:
        body, boundary = multipart_body(filename, data, content_type or "application/octet-stream")
        headers = {**bearer(user), "Content-Type": f"multipart/form-data; boundary={boundary}"}
        response = await mesh.http.post(url, content=body, headers=headers)
    return response.status_code, response.json()


def multipart_body(filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """A multipart body with the file name byte-exact (UTF-8, no escaping), as a hostile
    client would send it; an extra field comes first to show it is skipped."""
    boundary = "vidsynth-test-boundary-7d1f"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def eventually(predicate, limit_seconds: float = 15.0) -> bool:
    """Polls `predicate` (generously: the machine may be loaded) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
