"""`vidsynth up`: the whole mesh on one machine, behind the nginx edge."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pydantic
import typer

from libs.common.identity import parse_api_keys
from libs.common.keys_file import KeysFileError, load_keys_file
from libs.common.settings import GATEWAY_GRPC_PORT_OFFSET, GATEWAY_HTTP_PORT_OFFSET, MeshSettings
from libs.common.tls import Authority, CertificateFiles, ensure_ca, ensure_certificate
from vidsynth.cli import clamd, edge, mesh_certs
from vidsynth.cli.mesh_certs import MeshTlsPlan
from vidsynth.cli.supervisor import EdgeProbe, Supervisor, child_environment, child_specs

READY_TIMEOUT_SECONDS = 60.0
KEYS_FILE_ENV = "VIDSYNTH_API_KEYS_FILE"
EXIT_BAD_CONFIG = 2
CLAMD_ADDRESS_ENV = "VIDSYNTH_VALIDATOR_CLAMD_ADDRESS"
LOOPBACK_NAMES = ["127.0.0.1", "localhost"]
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class MeshPlan:
    """A mesh ready to start: its supervisor, settings, and what to tell the user."""

    supervisor: Supervisor
    settings: MeshSettings
    dev_key: str | None
    url: str
    edge_argv: list[str]
    tls: CertificateFiles | None
    mesh_tls: MeshTlsPlan


def mesh_overrides(data_dir: Path, http_port: int, grpc_port: int) -> tuple[dict[str, str], str | None]:
    """Environment for the children, and the dev API key when none is configured."""
    overrides = {
        "VIDSYNTH_DATA_DIR": str(data_dir.resolve()),
        "VIDSYNTH_HTTP_PORT": str(http_port),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        # The edge owns P and G; the gateway listens behind it and believes only its X-Forwarded-For.
        "VIDSYNTH_GATEWAY_HTTP_PORT": str(grpc_port + GATEWAY_HTTP_PORT_OFFSET),
        "VIDSYNTH_GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
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
    if configured or not clamd.installed():
        if not configured:
            _echo("[up] clamd is not installed: uploads follow VIDSYNTH_VALIDATOR_SCAN_POLICY")
        return None, configured
    argv, address, db_kind = clamd.clamd_command(data_dir)
    overrides[CLAMD_ADDRESS_ENV] = address
    if db_kind == clamd.DB_TEST:
        _echo("[up] clamd: no official signature database here; using the project's test signatures")
    else:
        _echo("[up] clamd: official signature database")
    return argv, address


def _connectable(host: str) -> str:
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def mesh_hosts(settings: MeshSettings) -> list[str]:
    """The names a certificate on this machine answers to: loopback and the listen hosts."""
    hosts = [*LOOPBACK_NAMES]
    for host in (settings.http_host, settings.grpc_host):
        if host not in WILDCARD_HOSTS and host not in hosts:
            hosts.append(host)
    return hosts


def edge_certificate(
    data_dir: Path, settings: MeshSettings, edge_settings: edge.EdgeSettings, authority: Authority | None
) -> CertificateFiles:
    """The operator's certificate when configured, else one from the development CA under
    <data-dir>/tls/ (both reused on later starts while valid)."""
    own = edge_settings.own_certificate
    if own:
        return own
    if authority is None:
        raise ValueError("the edge needs VIDSYNTH_EDGE_TLS_CERT_FILE or the development CA")
    tls_dir = data_dir.resolve() / "tls"
    return ensure_certificate(authority, tls_dir, "edge", mesh_hosts(settings))


def certificates(
    data_dir: Path, settings: MeshSettings, edge_settings: edge.EdgeSettings, tls: bool
) -> tuple[CertificateFiles | None, MeshTlsPlan]:
    """The edge's certificate and the mesh's (mutual TLS behind the edge) under `--tls`;
    the development CA is made only when something needs it."""
    own_mesh = mesh_certs.operator_settings()
    tls_dir = data_dir.resolve() / "tls"
    needs_ca = tls and not (edge_settings.own_certificate and own_mesh.own_files)
    authority = ensure_ca(tls_dir) if needs_ca else None
    certificate = edge_certificate(data_dir, settings, edge_settings, authority) if tls else None
    mesh = mesh_certs.plan_mesh_tls(tls, own_mesh, authority, tls_dir, mesh_hosts(settings))
    return certificate, mesh


def plan_mesh(data_dir: Path, http_port: int, grpc_port: int, tls: bool = False) -> MeshPlan:
    """Blocking (config files, clamd's database copy, certificates): run it off the event loop.
    Raises EdgeError or ValueError with a message for the user."""
    try:
        edge_settings = edge.EdgeSettings()
    except pydantic.ValidationError as error:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())) from None
    binary = edge.nginx_binary(edge_settings.edge_nginx)
    overrides, dev_key = mesh_overrides(data_dir, http_port, grpc_port)
    clamd_argv, clamd_address = clamd_child(data_dir, overrides)
    settings = MeshSettings(
        data_dir=data_dir,
        http_port=http_port,
        grpc_port=grpc_port,
        gateway_http_port=grpc_port + GATEWAY_HTTP_PORT_OFFSET,
    )
    certificate, mesh_tls = certificates(data_dir, settings, edge_settings, tls)
    overrides |= mesh_tls.environment
    config = edge.config_for_mesh(settings, edge_settings, data_dir, certificate, mesh_tls.edge)
    edge_argv = edge.nginx_argv(binary, edge.write_config(config, edge.edge_dir(data_dir)))
    scheme = "https" if certificate else "http"
    url = f"{scheme}://{settings.http_host}:{http_port}"
    probe_url = f"{scheme}://{_connectable(settings.http_host)}:{http_port}"
    probe_target = f"{_connectable(settings.grpc_host)}:{grpc_port}"
    probe = EdgeProbe(probe_url, probe_target)
    if certificate and edge_settings.own_certificate:
        probe = EdgeProbe(probe_url, settings.gateway_grpc_address, tls=True, mesh_tls=mesh_tls.edge)
    elif certificate:
        probe = EdgeProbe(probe_url, probe_target, tls=True, ca_file=certificate.ca)
    env = child_environment(overrides)
    specs = child_specs(env, clamd_argv, edge_argv)
    supervisor = Supervisor(specs, settings, _echo, clamd_address, probe, mesh_tls.edge)
    return MeshPlan(supervisor, settings, dev_key, url, edge_argv, certificate, mesh_tls)


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


async def prepare_mesh(data_dir: Path, http_port: int, grpc_port: int, tls: bool = False) -> MeshPlan:
    plan = await asyncio.to_thread(plan_mesh, data_dir, http_port, grpc_port, tls)
    await edge.check_config(plan.edge_argv)
    return plan


def describe_edge(plan: MeshPlan) -> list[str]:
    settings = plan.settings
    grpc_port = settings.grpc_port
    lines = [
        f"[up] edge: nginx on {plan.url} (HTTP, SSE, WebSocket) and {settings.grpc_host}:{grpc_port} "
        f"(gRPC{' over TLS' if plan.tls else ''}); config {plan.edge_argv[-1]}",
        f"[up] behind the edge: session..cleanup on {grpc_port + 1}-{grpc_port + 5}, gateway HTTP on "
        f"{settings.gateway_listen_port}, gateway gRPC (reflection, health) on "
        f"{grpc_port + GATEWAY_GRPC_PORT_OFFSET}",
    ]
    if plan.tls:
        lines.append(f"[up] TLS: certificate {plan.tls.certificate}; CA {plan.tls.ca}")
        lines.append(f"[up] clients trust it with: export VIDSYNTH_TLS_CA={plan.tls.ca}")
    mesh = plan.mesh_tls
    if mesh.edge:
        where = f"certificates under {mesh.directory}" if mesh.directory else "the operator's certificates"
        lines.append(
            f"[up] mesh TLS: every port behind the edge requires a client certificate from "
            f"{mesh.edge.files.ca} ({where}); the mesh token stays required for internal RPCs"
        )
        if mesh.directory:
            lines.append(
                f"[up] vidsynth health presents the edge's with: export VIDSYNTH_MESH_TLS=true "
                f"VIDSYNTH_MESH_TLS_CA_FILE={mesh.edge.files.ca} VIDSYNTH_MESH_TLS_CERT_DIR={mesh.directory}"
            )
    return lines


async def run_mesh(data_dir: Path, http_port: int, grpc_port: int, tls: bool = False) -> int:
    if not check_keys_file():
        return EXIT_BAD_CONFIG
    try:
        plan = await prepare_mesh(data_dir, http_port, grpc_port, tls)
    except (edge.EdgeError, ValueError) as error:
        _echo(f"[up] cannot start: {error}")
        return 1
    supervisor, settings = plan.supervisor, plan.settings
    for line in describe_edge(plan):
        _echo(line)
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
        _echo(f"[up] vidsynth is up in {time.monotonic() - started:.1f}s: {plan.url}")
        _echo(f"[up] pids: {supervisor.pids()}")
        if plan.dev_key:
            _echo(f"[up] dev API key (user 'dev', admin): {plan.dev_key}")
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
    http_port: Annotated[
        int,
        typer.Option(
            envvar="VIDSYNTH_HTTP_PORT", help="The HTTP address (the edge): browsers, curl, SSE, WebSocket."
        ),
    ] = 8080,
    grpc_port: Annotated[
        int,
        typer.Option(
            envvar="VIDSYNTH_GRPC_PORT",
            help="The one public gRPC address (the edge); the services listen on the next ports.",
        ),
    ] = 50051,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Serve HTTPS and gRPC over TLS, and mutual TLS between the services behind the edge "
            "(a development CA under <data-dir>/tls/ unless VIDSYNTH_EDGE_TLS_CERT_FILE and "
            "VIDSYNTH_MESH_TLS_CA_FILE are set).",
        ),
    ] = False,
) -> None:
    """Start every service, the gateway and the nginx edge; Ctrl-C stops them all."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    raise typer.Exit(asyncio.run(run_mesh(data_dir, http_port, grpc_port, tls)))
