"""The `vidsynth` command line."""

from __future__ import annotations

import typer

from vidsynth.cli import admin, demo, health, jobs, keys, sessions, up
from vidsynth.cli.remote import EXIT_HELP

app = typer.Typer(
    help=f"vidsynth: talking-head videos from a photo, a voice sample and a script.\n\n{EXIT_HELP}",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.command("up")(up.up)
app.command("demo")(demo.demo)
app.command("health")(health.health)
app.command("submit")(jobs.submit)
app.command("status")(jobs.status)
app.command("watch")(jobs.watch)
app.command("download")(jobs.download)
app.command("caps")(admin.caps)
app.command("cleanup")(admin.cleanup)
app.add_typer(sessions.app, name="sessions")
app.add_typer(keys.app, name="keys")


def main() -> None:
    app()
