"""`vidsynth demo`: the main job end to end. Starts the mesh, uploads the bundled samples
through the HTTP gateway, follows progress over SSE and writes the MP4."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from libs.common.identity import parse_api_keys
from vidsynth.cli.edge import EdgeError
from vidsynth.cli.follow import new_progress
from vidsynth.cli.remote import EXIT_JOB_FAILED, console
from vidsynth.cli.up import READY_TIMEOUT_SECONDS, prepare_mesh
from vidsynth.http_client import GatewayClient, GatewayError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
DEMO_SCRIPT = (
    "Hello, and welcome to vidsynth. This video was made from one photo, a short voice sample and this script. "
    "Every step ran on this machine, with models that ship in its packages and no graphics card."
)


def _quiet(line: str) -> None:
    """The children's log lines stay out of the demo's terminal unless something fails."""
    if '"level": "error"' in line or "exited with" in line:
        console.print(f"[dim]{line}[/]")


async def render(client: GatewayClient, face: Path, voice: Path, script: str, out: Path) -> Path:
    """One job through the gateway, with a progress bar per stage."""
    session_id = (await client.create_session("demo"))["session_id"]
    console.print(f"session {session_id}")
    for kind, path in (("face", face), ("voice", voice)):
        report = (await client.upload(session_id, kind, path)).get("report", {})
        console.print(f"[green]accepted[/] {kind}: {path.name} ({report.get('detected_type', '?')})")
    job = await client.start_job(
        session_id, {"script_text": script, "emotion": "happy", "tone": "friendly"}, f"demo-{session_id}"
    )
    console.print(f"job {job['job_id']} queued")
    last: dict = {}
    with new_progress() as progress:
        overall = progress.add_task("overall", total=100)
        stages: dict[str, int] = {}
        async for event in client.events(session_id, job_id=job["job_id"]):
            last = event
            progress.update(overall, completed=event.get("overall_percent") or 0)
            if stage := event.get("stage"):
                if stage not in stages:
                    stages[stage] = progress.add_task(f"  {stage}", total=100)
                done = 100 if event["type"] == "stage.completed" else event.get("stage_percent") or 0
                progress.update(stages[stage], completed=done)
    if last.get("type") != "job.completed":
        raise GatewayError(0, (last.get("error") or {}).get("code", "STAGE_FAILED"), f"the job ended: {last}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The built-in voice's captions, next to the video (the job's other outputs stay downloadable).
    for name, suffix in (("captions", ".vtt"), ("captions_srt", ".srt")):
        if any(o["name"] == name for o in (await client.get_job(job["job_id"]))["outputs"]):
            await client.download(job["job_id"], name, out.with_suffix(suffix))
    return await client.download(job["job_id"], "video", out)


async def run_demo(data_dir: Path, http_port: int, grpc_port: int, face: Path, voice: Path, out: Path) -> int:
    try:
        plan = await prepare_mesh(data_dir, http_port, grpc_port)
    except (EdgeError, ValueError) as error:
        console.print(f"[red]cannot start: {error}[/]")
        return 1
    supervisor, settings = plan.supervisor, plan.settings
    supervisor.echo = _quiet
    api_key = plan.dev_key or next(iter(parse_api_keys(os.environ.get("VIDSYNTH_API_KEYS", ""))))
    main_task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    started = time.monotonic()
    console.print("starting the mesh ...")
    await supervisor.start()
    try:
        await supervisor.wait_until_serving(READY_TIMEOUT_SECONDS)
        url = plan.url
        console.print(f"mesh up in {time.monotonic() - started:.1f}s at {url}")
        async with GatewayClient(url, api_key) as client:
            video = await render(client, face, voice, DEMO_SCRIPT, out)
        console.print(f"[bold green]done in {time.monotonic() - started:.1f}s:[/] {video.resolve()}")
        return 0
    except GatewayError as error:
        console.print(f"[red]{error}[/]")
        return EXIT_JOB_FAILED
    except TimeoutError as error:
        console.print(f"[red]{error}[/]")
        return 1
    finally:
        await supervisor.stop(grace=settings.shutdown_grace_seconds + 2)


def demo(
    out: Annotated[Path, typer.Option(help="Where to write the MP4.")] = Path(
        "demo-output/vidsynth-demo.mp4"
    ),
    face: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = SAMPLES / "portrait.jpg",
    voice: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = SAMPLES / "voice.wav",
    data_dir: Annotated[Path, typer.Option(help="Where the mesh keeps its data.")] = Path("var/demo"),
    http_port: Annotated[
        int, typer.Option(envvar="VIDSYNTH_HTTP_PORT", help="The HTTP address (the edge).")
    ] = 8080,
    grpc_port: Annotated[
        int, typer.Option(envvar="VIDSYNTH_GRPC_PORT", help="The public gRPC address (the edge).")
    ] = 50051,
) -> None:
    """Start the mesh, render the bundled samples into a talking-head MP4, stop the mesh."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    raise typer.Exit(asyncio.run(run_demo(data_dir, http_port, grpc_port, face, voice, out)))
