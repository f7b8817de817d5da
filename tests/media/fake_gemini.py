"""A local stand-in for the Gemini REST API (generateContent), reached through the SDK's base_url."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.ports import free_port


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


def answer(text: str, model: str = "") -> Reply:
    return Reply(
        200,
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "modelVersion": model,
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 100, "totalTokenCount": 110},
        },
    )


def failure(status: int, reason: str, retry_after: int | None = None) -> Reply:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return Reply(status, {"error": {"code": status, "message": f"fake {reason}", "status": reason}}, headers)


@dataclass
class FakeGemini:
    base_url: str = ""
    # Replies per model, used in order; the last one repeats. "*" is for any other model.
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)

    def reply_for(self, model: str) -> Reply:
        queue = self.replies.get(model) or self.replies.get("*") or [failure(404, "NOT_FOUND")]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def _generate(self, request: Request) -> JSONResponse:
        model, _, action = request.path_params["rest"].partition(":")
        body = await request.json()
        self.requests.append(
            {"model": model, "action": action, "body": body, "api_key": request.headers.get("x-goog-api-key")}
        )
        reply = self.reply_for(model)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{version}/models/{rest:path}", self._generate, methods=["POST"])])


@contextlib.asynccontextmanager
async def running_fake_gemini() -> AsyncIterator[FakeGemini]:
    fake = FakeGemini()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    fake.base_url = f"http://127.0.0.1:{port}/"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task
