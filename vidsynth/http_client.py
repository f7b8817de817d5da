"""A small async client of the gateway's HTTP API (sessions, uploads, jobs, SSE,
downloads), used by the demo, the benchmarks and the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL_EVENTS = frozenset({"job.completed", "job.failed", "job.cancelled"})
# Stream errors after which reconnecting with Last-Event-ID picks up where it stopped.
RESUMABLE_CODES = frozenset({"SERVICE_UNAVAILABLE", "SUBSCRIBER_TOO_SLOW", "DEADLINE_EXCEEDED"})


class GatewayError(Exception):
    """A problem+json answer: `code` is the catalogued error code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code} ({status}): {detail}")
        self.status, self.code, self.detail = status, code, detail


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise GatewayError(
        response.status_code, body.get("code", "INTERNAL"), body.get("detail", response.text[:200])
    )


class GatewayClient:
    def __init__(
        self, base_url: str, api_key: str, timeout: float = 60.0, verify: ssl.SSLContext | bool = True
    ) -> None:
        """`verify`: what an https base URL's certificate is checked against (an SSLContext
        trusting the mesh's CA, or True for the system's CAs)."""
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout, verify=verify
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict:
        response = await self.http.request(method, url, **kwargs)
        _raise_for_problem(response)
        return response.json() if response.content else {}

    async def create_session(self, display_name: str = "") -> dict:
        return await self._json("POST", "/v1/sessions", json={"display_name": display_name})

    async def upload(self, session_id: str, kind: str, path: Path) -> dict:
        """kind: "face" or "voice"; streams the file as multipart field `file`."""
        with path.open("rb") as handle:
            return await self._json(
                "POST", f"/v1/sessions/{session_id}/assets/{kind}", files={"file": (path.name, handle)}
            )

    async def start_job(self, session_id: str, body: dict, idempotency_key: str = "") -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._json("POST", f"/v1/sessions/{session_id}/jobs", json=body, headers=headers)

    async def get_job(self, job_id: str) -> dict:
        return await self._json("GET", f"/v1/jobs/{job_id}")

    async def cancel_job(self, job_id: str) -> dict:
        return await self._json("POST", f"/v1/jobs/{job_id}/cancel")

    async def stream_token(self, session_id: str) -> str:
        return (await self._json("POST", f"/v1/sessions/{session_id}/stream-token"))["token"]

    async def events(
        self, session_id: str, after: int = 0, job_id: str = "", max_resumes: int = 20
    ) -> AsyncIterator[dict]:
        """The session's progress events over SSE (only `job_id`'s, if given) until a job
        ends, resuming with Last-Event-ID when the connection drops."""
        params = {"job_id": job_id} if job_id else {}
        last_id, resumes = str(after), 0
        while True:
            try:
                async with self.http.stream(
                    "GET",
                    f"/v1/sessions/{session_id}/events",
                    headers={"Last-Event-ID": last_id, "Accept": "text/event-stream"},
                    params=params,
                    timeout=httpx.Timeout(60.0, read=None),
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        _raise_for_problem(response)
                    async for event in _parse_sse(response.aiter_lines()):
                        if event.get("seq"):
                            last_id = str(event["seq"])
                        yield event
                        if event.get("type") in TERMINAL_EVENTS:
                            return
            except (httpx.TransportError, GatewayError) as error:
                if isinstance(error, GatewayError) and error.code not in RESUMABLE_CODES:
                    raise
                resumes += 1
                if resumes > max_resumes:
                    raise
                await asyncio.sleep(min(0.2 * resumes, 2.0))

    async def wait_for_job(self, session_id: str, job_id: str) -> dict:
        """The job's terminal event."""
        async for event in self.events(session_id, job_id=job_id):
            if event.get("type") in TERMINAL_EVENTS:
                return event
        raise GatewayError(0, "INTERNAL", "the event stream ended before the job did")

    async def download(self, job_id: str, name: str, out: Path) -> Path:
        partial = out.with_name(out.name + ".part")
        async with self.http.stream("GET", f"/v1/jobs/{job_id}/outputs/{name}") as response:
            if response.status_code != 200:
                await response.aread()
                _raise_for_problem(response)
            with partial.open("wb") as handle:
                async for chunk in response.aiter_bytes():
                    handle.write(chunk)
        partial.replace(out)
        return out


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[dict]:
    data: list[str] = []
    event_name = ""
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("event:"):
            event_name = line[6:].strip()
        elif not line:
            if data:
                payload = json.loads("\n".join(data))
                if event_name == "error":
                    problem = payload.get("error", {})
                    raise GatewayError(
                        problem.get("status", 0), problem.get("code", "INTERNAL"), problem.get("detail", "")
                    )
                yield payload
            data, event_name = [], ""
