"""`vidsynth demo`: the main job end to end. Starts the mesh, uploads the bundled samples
through the HTTP gateway, follows progress over SSE and writes the MP4."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import typer

from libs.common.identity import parse_api_keys
from libs.common.settings import MeshSettings
from vidsynth.cli.follow import new_progress
from vidsynth.cli.remote import EXIT_JOB_FAILED, console
from vidsynth.cli.supervisor import Supervisor, child_environment, child_specs
from vidsynth.cli.up import READY_TIMEOUT_SECONDS, mesh_overrides

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
DEMO_SCRIPT = (
    "Hello, and welcome to vidsynth. This video was made from one photo, a short voice sample and this script. "
    "Every step ran on this machine, with no models and no graphics card."
)
TERMINAL = {"job.completed", "job.failed", "job.cancelled"}


class DemoError(Exception):
    pass


def _check(response: httpx.Response, what: str) -> dict:
    if response.status_code >= 400:
        try:
            body = response.json()
            reason = f"{body.get('code')}: {body.get('detail')}"
        except ValueError:
            reason = response.text[:200]
        raise DemoError(f"{what} failed ({response.status_code}) {reason}")
    return response.json() if response.content else {}


async def sse_events(client: httpx.AsyncClient, session_id: str, token: str) -> AsyncIterator[dict]:
    """The session's events, resuming with Last-Event-ID if the connection drops."""
    last_id = "0"
    while True:
        headers = {"Last-Event-ID": last_id, "Accept": "text/event-stream"}
        params = {"token": token} if token else {}
        try:
            async with client.stream(
                "GET", f"/v1/sessions/{session_id}/events", headers=headers, params=params, timeout=None
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    _check(response, "following progress")
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        last_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        event = json.loads("\n".join(data))
                        data = []
                        yield event
                        if event.get("type") in TERMINAL:
                            return
        except httpx.TransportError:
            console.print(f"[yellow]progress stream dropped; resuming after event {last_id}[/]")
            await asyncio.sleep(0.5)


async def run_job(client: httpx.AsyncClient, face: Path, voice: Path, script: str, out: Path) -> Path:
    session = _check(await client.post("/v1/sessions", json={"display_name": "demo"}), "creating a session")
    session_id = session["session_id"]
    console.print(f"session {session_id}")
    for kind, path in (("face", face), ("voice", voice)):
        with path.open("rb") as handle:
            report = _check(
                await client.post(
                    f"/v1/sessions/{session_id}/assets/{kind}", files={"file": (path.name, handle)}
                ),
                f"uploading the {kind}",
            )
        console.print(
            f"[green]accepted[/] {kind}: {path.name} {json.dumps(report.get('report', {}).get('detected_type'))}"
        )
    job = _check(
        await client.post(
            f"/v1/sessions/{session_id}/jobs",
            json={"script_text": script, "emotion": "happy", "tone": "friendly"},
            headers={"Idempotency-Key": f"demo-{session_id}"},
        ),
        "starting the job",
    )
    job_id = job["job_id"]
    console.print(f"job {job_id} queued")
    token = _check(await client.post(f"/v1/sessions/{session_id}/stream-token"), "getting a stream token")[
        "token"
    ]
    last: dict = {}
    with new_progress() as progress:
        overall = progress.add_task("overall", total=100)
        stages: dict[str, int] = {}
        async for event in sse_events(client, session_id, token):
            last = event
            progress.update(overall, completed=event.get("overall_percent") or 0)
            stage = event.get("stage")
            if stage:
                if stage not in stages:
                    stages[stage] = progress.add_task(f"  {stage}", total=100)
                done = 100 if event["type"] == "stage.completed" else event.get("stage_percent") or 0
                progress.update(stages[stage], completed=done)
    if last.get("type") != "job.completed":
        raise DemoError(f"the job ended with {last.get('type')}: {last.get('error')}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    async with client.stream("GET", f"/v1/jobs/{job_id}/outputs/video") as response:
        if response.status_code != 200:
            await response.aread()
            _check(response, "downloading the video")
        with partial.open("wb") as handle:
            async for chunk in response.aiter_bytes():
                handle.write(chunk)
    partial.replace(out)
    return out


async def run_demo(data_dir: Path, http_port: int, grpc_port: int, face: Path, voice: Path, out: Path) -> int:
    overrides, dev_key = mesh_overrides(data_dir, http_port, grpc_port)
    api_key = dev_key or next(iter(_configured_keys()))
    settings = MeshSettings(data_dir=data_dir, http_port=http_port, grpc_port=grpc_port)
    supervisor = Supervisor(child_specs(child_environment(settings, overrides)), settings, lambda _line: None)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    started = time.monotonic()
    console.print("starting the mesh ...")
    await supervisor.start()
    try:
        await supervisor.wait_until_serving(READY_TIMEOUT_SECONDS)
        console.print(
            f"mesh up in {time.monotonic() - started:.1f}s at http://{settings.http_host}:{http_port}"
        )
        base_url = f"http://{settings.http_host}:{http_port}"
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        ) as client:
            video = await run_job(client, face, voice, DEMO_SCRIPT, out)
        console.print(f"[bold green]done in {time.monotonic() - started:.1f}s:[/] {video.resolve()}")
        return 0
    except DemoError as error:
        console.print(f"[red]{error}[/]")
        return EXIT_JOB_FAILED
    except TimeoutError as error:
        console.print(f"[red]{error}[/]")
        return 1
    finally:
        await supervisor.stop(grace=settings.shutdown_grace_seconds + 2)


def _configured_keys() -> dict[str, str]:
    return parse_api_keys(os.environ.get("VIDSYNTH_API_KEYS", ""))


def demo(
    out: Annotated[Path, typer.Option(help="Where to write the MP4.")] = Path(
        "demo-output/vidsynth-demo.mp4"
    ),
    face: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = SAMPLES / "portrait.jpg",
    voice: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = SAMPLES / "voice.wav",
    data_dir: Annotated[Path, typer.Option(help="Where the mesh keeps its data.")] = Path("var/demo"),
    http_port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="First of the five consecutive service ports.")] = 50051,
) -> None:
    """Start the mesh, render the bundled samples into a talking-head MP4, stop the mesh."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    raise typer.Exit(asyncio.run(run_demo(data_dir, http_port, grpc_port, face, voice, out)))
