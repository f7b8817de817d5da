"""`vidsynth submit`, `status`, `watch` and `download`: the user's side of a job."""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from libs.common.enums import enum_label
from libs.common.errors import CATALOG, VidsynthError
from vidsynth.cli.follow import follow
from vidsynth.cli.remote import (
    DEFAULT_GRPC,
    DEFAULT_URL,
    EXIT_JOB_FAILED,
    ApiKeyOption,
    GrpcOption,
    JsonOption,
    Remote,
    UrlOption,
    as_dict,
    catalogued_errors,
    console,
    fail,
    print_json,
)
from vidsynth.http_client import GatewayClient, GatewayError
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2, stage_runner_pb2, validator_pb2

UPLOAD_CHUNK_BYTES = 256 * 1024


def upload_requests(session_id: str, kind: int, path: Path) -> Iterator[validator_pb2.ValidateUploadRequest]:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    header = validator_pb2.UploadHeader(
        session_id=session_id,
        kind=kind,
        original_filename=path.name,
        declared_size=path.stat().st_size,
        content_type=content_type,
    )
    yield validator_pb2.ValidateUploadRequest(header=header)
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            yield validator_pb2.ValidateUploadRequest(chunk=chunk)


def upload(remote: Remote, session_id: str, kind: int, path: Path) -> validator_pb2.ValidateUploadResponse:
    reply = remote.validator.ValidateUpload(
        upload_requests(session_id, kind, path), metadata=remote.metadata, timeout=300
    )
    console.print(
        f"[green]accepted[/] {path.name}: {reply.report.detected_type}, {reply.report.size_bytes} bytes"
    )
    return reply


def job_spec(
    script: str | None, script_file: Path | None, topic: str | None, minutes: float, emotion: str, tone: str
) -> stage_runner_pb2.JobSpec:
    given = [x for x in (script, script_file, topic) if x]
    if len(given) != 1:
        fail(VidsynthError("INVALID_ARGUMENT", "Give exactly one of --script, --script-file or --topic."))
    spec = stage_runner_pb2.JobSpec(emotion=emotion, tone=tone)
    if script:
        spec.script_text = script
    elif script_file:
        spec.script_text = script_file.read_text(encoding="utf-8")
    else:
        spec.script_prompt.CopyFrom(
            stage_runner_pb2.ScriptPrompt(topic=topic, duration_minutes=minutes, tone=tone, emotion=emotion)
        )
    return spec


def download_output(remote: Remote, job_id: str, name: str, out: Path) -> Path:
    async def fetch() -> Path:
        async with GatewayClient(remote.url.rstrip("/"), remote.api_key, verify=remote.http_verify) as client:
            return await client.download(job_id, name, out)

    try:
        return asyncio.run(fetch())
    except GatewayError as error:
        fail(VidsynthError(error.code if error.code in CATALOG else "INTERNAL", error.detail or None))


def submit(
    face: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Face photo (JPEG, PNG, WebP).")],
    voice: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Voice sample (WAV, MP3, ...).")],
    script: Annotated[str | None, typer.Option(help="The words to speak.")] = None,
    script_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Read them from a file.")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Let Gemini write the script about this.")] = None,
    minutes: Annotated[float, typer.Option(help="Target length with --topic.")] = 0.5,
    emotion: Annotated[str, typer.Option(help="neutral, happy, sad, excited, calm, ...")] = "neutral",
    tone: Annotated[str, typer.Option(help="e.g. friendly, formal.")] = "friendly",
    follow_progress: Annotated[
        bool, typer.Option("--follow", help="Show live progress until the job ends.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write the MP4 here when done (implies --follow).")] = None,
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Create a session, upload the face and voice, start a job (and follow it)."""
    spec = job_spec(script, script_file, topic, minutes, emotion, tone)
    remote = Remote(grpc_target, api_key, url)
    with catalogued_errors(as_json):
        session = remote.session.CreateSession(session_pb2.CreateSessionRequest(), metadata=remote.metadata)
        if not as_json:
            console.print(f"session {session.session_id}")
        upload(remote, session.session_id, common_pb2.ASSET_KIND_FACE_IMAGE, face)
        upload(remote, session.session_id, common_pb2.ASSET_KIND_VOICE_AUDIO, voice)
        job = remote.stage_runner.StartJob(
            stage_runner_pb2.StartJobRequest(
                session_id=session.session_id, spec=spec, request_id=uuid.uuid4().hex
            ),
            metadata=remote.metadata,
        )
        if not as_json:
            console.print(f"job {job.job_id} queued in session {session.session_id}")
        if not (follow_progress or out):
            if as_json:
                print_json(as_dict(job))
            return
        last = follow(remote, session.session_id, job.job_id, as_json)
        if last is None or last.type != progress_pb2.EVENT_TYPE_JOB_COMPLETED:
            reason = (
                f"{last.error.code}: {last.error.message}" if last and last.error.code else "did not complete"
            )
            console.print(f"[red]job {job.job_id} {reason}[/]")
            raise typer.Exit(EXIT_JOB_FAILED)
        if not as_json:
            console.print(f"[green]job {job.job_id} completed[/]")
        if out:
            download_output(remote, job.job_id, "video", out)
            console.print(f"[green]video written to[/] {out}")
        if as_json:
            final = remote.stage_runner.GetJob(
                stage_runner_pb2.GetJobRequest(job_id=job.job_id), metadata=remote.metadata
            )
            print_json({"job": as_dict(final), "video": str(out) if out else None})


def status(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """Show a job's state, stages and outputs."""
    remote = Remote(grpc_target, api_key)
    job = remote.call(remote.stage_runner.GetJob, stage_runner_pb2.GetJobRequest(job_id=job_id), as_json)
    if as_json:
        print_json(as_dict(job))
        return
    state = enum_label(common_pb2.JobState, job.state)
    console.print(f"job {job.job_id} ({job.session_id}): [bold]{state}[/] {job.overall_percent:.0f}%")
    for stage in job.stages:
        name = enum_label(common_pb2.Stage, stage.stage)
        status_name = enum_label(common_pb2.StageStatus, stage.status)
        console.print(f"  {name:<9} {status_name:<10} {stage.percent:5.1f}%  {stage.backend}")
    for output in job.outputs:
        console.print(f"  output {output.name}: {output.content_type}, {output.size_bytes} bytes")
    if job.error.message:
        console.print(f"  [red]{job.error.message}[/]")


def watch(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """Follow a session's progress events until its job ends."""
    remote = Remote(grpc_target, api_key)
    with catalogued_errors(as_json):
        last = follow(remote, session_id, "", as_json)
    if last is not None and last.type != progress_pb2.EVENT_TYPE_JOB_COMPLETED:
        raise typer.Exit(EXIT_JOB_FAILED)


def download(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    name: Annotated[str, typer.Option(help="video, thumbnail, audio or script.")] = "video",
    out: Annotated[
        Path | None, typer.Option(help="Where to write it (default: <job_id>-<name>.<ext>).")
    ] = None,
    api_key: ApiKeyOption = "",
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Download one output of a finished job through the gateway."""
    remote = Remote(DEFAULT_GRPC, api_key, url)
    extension = {"video": ".mp4", "thumbnail": ".jpg", "audio": ".wav", "script": ".txt"}.get(name, "")
    target = out or Path(f"{job_id}-{name}{extension}")
    download_output(remote, job_id, name, target)
    console.print(f"[green]written[/] {target}")
