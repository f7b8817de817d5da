"""`vidsynth up`: the whole mesh on one machine."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from libs.common.identity import parse_api_keys
from libs.common.keys_file import KeysFileError, load_keys_file
from libs.common.settings import MeshSettings
from services.validator import clamd_runner
from vidsynth.cli.supervisor import Supervisor, child_environment, child_specs

READY_TIMEOUT_SECONDS = 60.0
KEYS_FILE_ENV = "VIDSYNTH_API_KEYS_FILE"
EXIT_BAD_CONFIG = 2
CLAMD_ADDRESS_ENV = "VIDSYNTH_VALIDATOR_CLAMD_ADDRESS"


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def mesh_overrides(data_dir: Path, http_port: int, grpc_port: int) -> tuple[dict[str, str], str | None]:
    """Environment for the children, and the dev API key when none is configured."""
    overrides = {
        "VIDSYNTH_DATA_DIR": str(data_dir.resolve()),
        "VIDSYNTH_HTTP_PORT": str(http_port),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
    }
    if not os.environ.get("VIDSYNTH_MESH_TOKEN"):
        overrides["VIDSYNTH_MESH_TOKEN"] = secrets.token_urlsafe(32)
    dev_key = None
    keys_file = os.environ.get(KEYS_FILE_ENV, "")
    if not keys_file and not parse_api_keys(os.environ.get("VIDSYNTH_API_KEYS", "")):
        dev_key = "dev-" + secrets.token_urlsafe(24)
        overrides["VIDSYNTH_API_KEYS"] = f"{dev_key}=dev"
        if not os.environ.get("VIDSYNTH_ADMIN_USERS"):
            overrides["VIDSYNTH_ADMIN_USERS"] = "dev"
    return overrides, dev_key


def clamd_child(data_dir: Path, overrides: dict[str, str]) -> tuple[list[str] | None, str]:
    """clamd's argv and address when `up` should run it: installed, and no clamd configured."""
    configured = os.environ.get(CLAMD_ADDRESS_ENV, "")
    if configured or not clamd_runner.installed():
        if not configured:
            _echo("[up] clamd is not installed: uploads follow VIDSYNTH_VALIDATOR_SCAN_POLICY")
        return None, configured
    argv, address, db_kind = clamd_runner.clamd_command(data_dir)
    overrides[CLAMD_ADDRESS_ENV] = address
    if db_kind == clamd_runner.DB_TEST:
        _echo("[up] clamd: no official signature database here; using the project's test signatures")
    else:
        _echo("[up] clamd: official signature database")
    return argv, address


def build_supervisor(
    data_dir: Path, http_port: int, grpc_port: int
) -> tuple[Supervisor, MeshSettings, str | None]:
    overrides, dev_key = mesh_overrides(data_dir, http_port, grpc_port)
    clamd_argv, clamd_address = clamd_child(data_dir, overrides)
    settings = MeshSettings(data_dir=data_dir, http_port=http_port, grpc_port=grpc_port)
    env = child_environment(overrides)
    return Supervisor(child_specs(env, clamd_argv), settings, _echo, clamd_address), settings, dev_key


def check_keys_file() -> bool:
    """Every child would refuse a keys file it cannot use: say why once, before starting any."""
    path = os.environ.get(KEYS_FILE_ENV, "")
    if not path:
        return True
    try:
        keys = load_keys_file(Path(path))
    except KeysFileError as error:
        _echo(f"[up] refusing to start: {error}")
        return False
    _echo(f"[up] API keys file {path}: {len(keys.entries)} key(s), reloaded on change or SIGHUP")
    return True


async def run_mesh(data_dir: Path, http_port: int, grpc_port: int) -> int:
    if not check_keys_file():
        return EXIT_BAD_CONFIG
    # Writes clamd.conf and copies its database: file I/O, kept off the event loop.
    supervisor, settings, dev_key = await asyncio.to_thread(build_supervisor, data_dir, http_port, grpc_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get(KEYS_FILE_ENV):
        # `kill -HUP <up>` reloads the API keys file in every process at once (without a
        # keys file SIGHUP keeps its usual meaning: the mesh stops with its terminal).
        loop.add_signal_handler(signal.SIGHUP, supervisor.signal_mesh, signal.SIGHUP)

    started = time.monotonic()
    await supervisor.start()
    waiting = asyncio.create_task(supervisor.wait_until_serving(READY_TIMEOUT_SECONDS))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if waiting.done() and waiting.exception() is None:
        url = f"http://{settings.http_host}:{http_port}"
        _echo(f"[up] vidsynth is up in {time.monotonic() - started:.1f}s: {url}")
        _echo(f"[up] pids: {supervisor.pids()}")
        if dev_key:
            _echo(f"[up] dev API key (user 'dev', admin): {dev_key}")
        _echo("[up] press Ctrl-C to stop")
        await stopped
    elif waiting.done():
        _echo(f"[up] {waiting.exception()}")
        code = 1
    waiting.cancel()
    _echo("[up] stopping")
    await supervisor.stop(grace=settings.shutdown_grace_seconds + 2)
    _echo("[up] stopped")
    return code


def up(
    data_dir: Annotated[Path, typer.Option(help="Where sessions and databases live.")] = Path("var"),
    http_port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="First of the five consecutive service ports.")] = 50051,
) -> None:
    """Start every service and the gateway; Ctrl-C stops them all."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    raise typer.Exit(asyncio.run(run_mesh(data_dir, http_port, grpc_port)))
