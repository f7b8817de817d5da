"""The web page at `/` and its static files (plain HTML/CSS/JS modules, no build step).

Files are read once at start from a fixed set (no path from the URL reaches the file
system), served with exact content types, a strict Content-Security-Policy (no inline
script or style, same-origin connections only) and ETag revalidation, so an edited file
is picked up by the next page load without stale caches.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from libs.common.errors import VidsynthError

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# blob: for previews of the files a user picks and for outputs fetched with the API key.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)
# Revalidate every time (cheap 304s): the files carry no content hash in their names.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def _load(path: Path) -> StaticFile:
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body, CONTENT_TYPES[path.suffix], etag)


@functools.cache
def static_files() -> dict[str, StaticFile]:
    """Every servable file by its name under static/, read once."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): _load(path)
        for path in sorted(STATIC_DIR.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


def _etag_matches(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in wanted.split(",") if tag.strip())


def _serve(request: Request, file: StaticFile) -> Response:
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": file.etag,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if _etag_matches(request, file.etag):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else file.body
    response = Response(body, media_type=file.content_type, headers=headers)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(file.body))
    return response


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request) -> Response:
    return _serve(request, static_files()["index.html"])


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
async def static(request: Request, name: str) -> Response:
    file = static_files().get(name)
    if file is None:
        raise VidsynthError("NOT_FOUND", "No such file.")
    return _serve(request, file)
