"""A small SSE reader over httpx (tests and bench): frames as dicts of their fields."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    def json(self) -> dict:
        return json.loads(self.data)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Every frame, comment-only and retry-only ones included, as the stream delivers them."""
    frame = Frame()
    async for line in response.aiter_lines():
        if line == "":
            if frame.data_lines or frame.event or frame.id or frame.retry is not None or frame.comments:
                yield frame
            frame = Frame()
            continue
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            frame.data_lines.append(value)
        elif name == "event":
            frame.event = value
        elif name == "id":
            frame.id = value
        elif name == "retry":
            frame.retry = int(value)


async def events(response: httpx.Response) -> AsyncIterator[Frame]:
    """Only frames that carry data (events and errors)."""
    async for frame in frames(response):
        if frame.data_lines:
            yield frame
