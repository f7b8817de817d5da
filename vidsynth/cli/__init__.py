"""The `vidsynth` command line."""

from __future__ import annotations

import typer

from vidsynth.cli import health, up

app = typer.Typer(
    help="vidsynth: talking-head videos from a photo, a voice sample and a script.", no_args_is_help=True
)
app.command("up")(up.up)
app.command("health")(health.health)


def main() -> None:
    app()
