"""`vidsynth sessions list [--all]` and `vidsynth sessions end ID [--force]`: what is on the
mesh and, for operators, ending any user's session without a restart."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from libs.common.enums import enum_label
from vidsynth.cli.remote import (
    DEFAULT_GRPC,
    ApiKeyOption,
    GrpcOption,
    JsonOption,
    Remote,
    console,
    http_views,
    print_json,
)
from vidsynth.v1 import session_pb2

app = typer.Typer(help="Sessions: yours, or (admin) every user's.", no_args_is_help=True)
PAGE_SIZE = 200


def state_name(state: int) -> str:
    return enum_label(session_pb2.SessionState, state)


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def _every_active(remote: Remote, user_id: str, as_json: bool) -> list[session_pb2.ActiveSession]:
    found: list[session_pb2.ActiveSession] = []
    token = ""
    while True:
        request = session_pb2.ListActiveSessionsRequest(
            page_size=PAGE_SIZE, page_token=token, user_id=user_id
        )
        page = remote.call(remote.session.ListActiveSessions, request, as_json)
        found += page.sessions
        token = page.next_page_token
        if not token:
            return found


def _every_own(remote: Remote, as_json: bool) -> list[session_pb2.Session]:
    found: list[session_pb2.Session] = []
    token = ""
    while True:
        request = session_pb2.ListSessionsRequest(page_size=PAGE_SIZE, page_token=token)
        page = remote.call(remote.session.ListSessions, request, as_json)
        found += page.sessions
        token = page.next_page_token
        if not token:
            return found


@app.command("list")
def list_sessions(
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user's active sessions (admin), with age and disk used.")
    ] = False,
    user: Annotated[str, typer.Option("--user", help="With --all: only this owner's sessions.")] = "",
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """Your sessions; with --all, every user's active ones (needs the admin role)."""
    remote = Remote(grpc_target, api_key)
    if not all_users:
        own = _every_own(remote, as_json)
        if as_json:
            view = http_views().session_view
            print_json({"sessions": [view(s).model_dump(mode="json") for s in own]})
            return
        table = Table("session", "state", "name", "job", "created")
        for s in own:
            table.add_row(
                s.session_id,
                state_name(s.state),
                s.display_name,
                s.active_job_id,
                s.create_time.ToJsonString(),
            )
        console.print(table)
        return
    active = _every_active(remote, user, as_json)
    if as_json:
        view = http_views().active_session_view
        print_json({"sessions": [view(a).model_dump(mode="json") for a in active]})
        return
    table = Table("session", "owner", "state", "age", "disk used", "job")
    for a in active:
        table.add_row(
            a.session.session_id,
            a.session.user_id,
            state_name(a.session.state),
            _age(a.age.ToMicroseconds() / 1e6),
            _size(a.disk_used_bytes),
            a.session.active_job_id,
        )
    console.print(table)
    console.print(f"{len(active)} active session(s)")


@app.command("end")
def end_session(
    session_id: Annotated[str, typer.Argument(help="The session to end, whoever owns it.")],
    force: Annotated[bool, typer.Option("--force", help="Cancel its queued or running job first.")] = False,
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """End any user's session (admin): cancel its job with --force, remove its files and events."""
    remote = Remote(grpc_target, api_key)
    ended = remote.call(
        remote.session.EndSession, session_pb2.EndSessionRequest(session_id=session_id, force=force), as_json
    )
    if as_json:
        print_json(http_views().ended_session_view(ended).model_dump(mode="json"))
        return
    job = f", cancelled job {ended.cancelled_job_id}" if ended.cancelled_job_id else ""
    console.print(
        f"[green]ended[/] {ended.session_id} of {ended.user_id}{job}: freed {_size(ended.bytes_freed)}, "
        f"removed {ended.events_deleted} event(s)"
    )
