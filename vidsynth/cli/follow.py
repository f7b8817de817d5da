"""Following a session's progress over the gRPC stream, with rich progress bars."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from libs.common.progress_events import event_to_json, is_terminal, stage_name
from libs.common.rpc_status import error_from_rpc_error
from vidsynth.cli.remote import Remote, console
from vidsynth.http_client import RESUMABLE_CODES
from vidsynth.v1 import progress_pb2

MAX_RESUMES = 20


def events(remote: Remote, session_id: str, job_id: str = "") -> Iterator[progress_pb2.ProgressEvent]:
    """Every event of the session after seq 0 until a job ends, resuming by seq when the stream drops."""
    after_seq = 0
    resumes = 0
    while True:
        request = progress_pb2.SubscribeRequest(
            session_id=session_id, after_seq=after_seq, until_terminal=True, job_id=job_id
        )
        try:
            for event in remote.progress.Subscribe(request, metadata=remote.metadata, timeout=24 * 3600):
                after_seq = event.seq
                yield event
                if is_terminal(event):
                    return
            return
        except grpc.RpcError as error:
            if error_from_rpc_error(error).code not in RESUMABLE_CODES or resumes >= MAX_RESUMES:
                raise
            resumes += 1
            console.print(f"[yellow]stream dropped; resuming after event {after_seq}[/]")
            time.sleep(min(0.5 * resumes, 5))


class StageBars:
    """One bar per stage plus the overall percent, ETA and queue position; each distinct
    event message printed once (stages repeat theirs on every progress tick, and the job's
    last stage and the job itself both say "video ready")."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.overall: TaskID = progress.add_task("overall", total=100)
        self.stages: dict[str, TaskID] = {}
        self.printed: set[str] = set()

    def update(self, event: progress_pb2.ProgressEvent) -> None:
        stage = stage_name(event.stage)
        description = "overall"
        if event.queue_position:
            description = f"overall (queue position {event.queue_position})"
        self.progress.update(self.overall, completed=event.overall_percent, description=description)
        if stage:
            if stage not in self.stages:
                self.stages[stage] = self.progress.add_task(f"  {stage}", total=100)
            done = 100 if event.type == progress_pb2.EVENT_TYPE_STAGE_COMPLETED else event.stage_percent
            self.progress.update(self.stages[stage], completed=done)
        if event.message and event.message not in self.printed:
            self.printed.add(event.message)
            self.progress.console.print(Text(event.message, style="dim"))


def new_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(),
        console=console,
    )


def follow(
    remote: Remote,
    session_id: str,
    job_id: str = "",
    as_json: bool = False,
) -> progress_pb2.ProgressEvent | None:
    """Show progress until the job ends; returns the terminal event."""
    last: progress_pb2.ProgressEvent | None = None
    if as_json:
        for event in events(remote, session_id, job_id):
            print(_json_line(event), flush=True)
            last = event
        return last
    with new_progress() as progress:
        bars = StageBars(progress)
        for event in events(remote, session_id, job_id):
            bars.update(event)
            last = event
    return last


def _json_line(event: progress_pb2.ProgressEvent) -> str:
    return json.dumps(event_to_json(event), sort_keys=True)
