"""uvicorn's httptools protocol with a bound on the size of a request's head.

httptools (llhttp, in C) parses a request for a fraction of what h11 costs in Python,
but buffers the request line and headers without any limit (an 8 MB header was
accepted). Two counts keep that bounded:

- the URL and header bytes the parser hands over, exact: past the bound the request
  is refused before any route sees it;
- the raw bytes received while a head is still incomplete, so one endless header
  cannot make the parser buffer more than the bound plus one socket read.

The refusal is 431 REQUEST_HEADERS_TOO_LARGE as problem+json, then the connection
closes. Input that keeps coming after the answer is read and dropped for a moment
first: closing with unread input would reset the connection and the client would
never see the 431.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from libs.common import ids
from libs.common.errors import VidsynthError
from libs.common.problems import PROBLEM_CONTENT_TYPE, problem_body

MAX_REQUEST_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
HEADER_LINE_OVERHEAD = 4  # ": " and CRLF


class _HeadTooLarge(Exception):
    pass


def head_too_large_response() -> bytes:
    error = VidsynthError(
        "REQUEST_HEADERS_TOO_LARGE",
        f"The request line and headers are limited to {MAX_REQUEST_HEAD_BYTES} bytes.",
    )
    request_id = ids.new_id("request")
    body = json.dumps(problem_body(error, request_id)).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        f"content-type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_complete = False
        self._raw_head_bytes = 0
        self._parsed_head_bytes = 0
        self._head_too_large = False

    def _count(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools stops parsing; uvicorn calls send_400_response

    def on_message_begin(self) -> None:
        self._parsed_head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + HEADER_LINE_OVERHEAD)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_complete = True
        self._raw_head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_complete = False

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return  # refused: drop whatever still arrives until the connection closes
        if not self._head_complete:
            self._raw_head_bytes += len(data)
        super().data_received(data)
        if self._head_too_large or self._head_complete or self._raw_head_bytes <= MAX_REQUEST_HEAD_BYTES:
            return
        self._head_too_large = True
        self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        self.logger.warning("Request head over %d bytes refused.", MAX_REQUEST_HEAD_BYTES)
        self.transport.write(head_too_large_response())
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
