"""The edge: nginx in front of the mesh, rendered from deploy/edge/nginx.conf.j2.

`vidsynth up` renders the config into <data-dir>/edge/ (config, pid file, temp paths and
logs all there, so it runs as root or as a normal user), checks it with `nginx -t`, and
supervises `nginx` like any other child. docker-compose uses a static copy rendered from
the same template (`python -m scripts.gen_edge_config`).

Refusals the edge answers itself come from the error catalog: problem+json on HTTP, and
on gRPC a status with `google.rpc.Status` + `ErrorInfo` in `grpc-status-details-bin`,
exactly as a service would send them.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
from pydantic import Field, model_validator

from libs.common import children
from libs.common.errors import VidsynthError
from libs.common.mesh_tls import MeshTls
from libs.common.problems import problem_body
from libs.common.rpc_status import to_status_proto
from libs.common.settings import PUBLIC_SERVICES, MeshSettings, VidsynthSettings
from libs.common.tls import CertificateFiles, TlsFileError, check_certificate_files
from services.validator.config import ValidatorSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "deploy" / "edge"
TEMPLATE = "nginx.conf.j2"
NGINX_PACKAGE = "nginx"
NGINX_FALLBACK_DIRS = (Path("/usr/sbin"), Path("/usr/local/sbin"))
CHECK_SECONDS = 30.0
# Multipart framing (boundaries, part headers) around the largest upload.
MULTIPART_SLACK_BYTES = 64 * 1024
# gRPC upload streams carry their own message framing; the validator's cap must answer first.
GRPC_BODY_SLACK_BYTES = 1024 * 1024
GATEWAY_GRPC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


class EdgeError(RuntimeError):
    """The edge cannot start; the message says what to do."""


class EdgeSettings(VidsynthSettings):
    """The nginx edge `vidsynth up` runs in front of the mesh."""

    edge_header_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="A request's line and headers must arrive within this, else the edge closes the "
        "connection (slowloris guard).",
    )
    edge_body_timeout_seconds: float = Field(
        60.0, gt=0, description="Longest pause between two reads of a request body (or writes of a response)."
    )
    edge_read_timeout_seconds: float = Field(
        300.0, gt=0, description="Longest wait for the gateway's answer to an ordinary HTTP request."
    )
    edge_stream_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="Longest silence on a long-lived stream (SSE, WebSocket, gRPC) before the edge ends it.",
    )
    edge_max_connections_per_address: int = Field(
        128,
        ge=1,
        le=65535,  # nginx's limit_conn bound
        description="Connections one client address may hold at once (on HTTP/2 and gRPC: requests); "
        "more answer 429 RATE_LIMITED.",
    )
    edge_worker_processes: int = Field(0, ge=0, description="nginx worker processes; 0: one per core.")
    edge_nginx: str = Field(
        "nginx", description="The nginx executable: a name looked up on PATH and in /usr/sbin, or a path."
    )
    edge_access_log: bool = Field(True, description="Write an access log to <data_dir>/edge/access.log.")
    edge_tls_cert_file: Path | None = Field(
        None,
        description="Your own TLS certificate (PEM, chain after the leaf) for `vidsynth up --tls`; "
        "empty: a development CA under <data_dir>/tls issues one.",
    )
    edge_tls_key_file: Path | None = Field(
        None, description="The private key (PEM) of VIDSYNTH_EDGE_TLS_CERT_FILE."
    )

    @model_validator(mode="after")
    def _certificate_files_usable(self) -> EdgeSettings:
        """Missing or mismatched files fail at start, not at the first TLS handshake."""
        given = [p for p in (self.edge_tls_cert_file, self.edge_tls_key_file) if p]
        if len(given) == 1:
            raise ValueError(
                "set both VIDSYNTH_EDGE_TLS_CERT_FILE and VIDSYNTH_EDGE_TLS_KEY_FILE, or neither"
            )
        if given:
            try:
                check_certificate_files(given[0], given[1])
            except TlsFileError as error:
                raise ValueError(str(error)) from None
        return self

    @property
    def own_certificate(self) -> CertificateFiles | None:
        if self.edge_tls_cert_file and self.edge_tls_key_file:
            return CertificateFiles(self.edge_tls_cert_file, self.edge_tls_key_file, self.edge_tls_cert_file)
        return None


@dataclass(frozen=True)
class GrpcBackend:
    service: str  # vidsynth.v1.SessionService
    upstream: str  # nginx upstream name
    address: str  # host:port
    tls_name: str = ""  # with mesh TLS: the identity its certificate must name


@dataclass(frozen=True)
class EdgeMeshTls:
    """How the edge reaches the backends under mesh TLS: its own client certificate, the
    CA the backends' certificates must chain to, and the gateway's identity."""

    certificate: Path
    key: Path
    ca: Path
    gateway_name: str


@dataclass
class EdgeConfig:
    """Everything the template needs, independent of where it runs (up, compose, bench)."""

    http_listen: str
    grpc_listen: str
    gateway_http: str
    gateway_grpc: str
    grpc_backends: list[GrpcBackend]
    max_body_bytes: int
    pid_file: str
    error_log: str
    temp_dir: str
    header_timeout: float = 20.0
    body_timeout: float = 60.0
    read_timeout: float = 300.0
    stream_timeout: float = 3600.0
    max_connections_per_address: int = 128
    worker_processes: str = "auto"
    worker_connections: int = 8192
    worker_files: int = 16384  # each proxied connection holds two descriptors
    tls: CertificateFiles | None = None
    mesh_tls: EdgeMeshTls | None = None
    error_log_to_stderr: bool = False
    access_log: str = ""
    user: str = ""
    rendered_by: str = "vidsynth up"


def _connectable(address: str) -> str:
    """An address to connect to for one listened on (0.0.0.0 is every interface: take loopback)."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "::", "[::]", "") else address


def grpc_backends(addresses: dict[str, str], tls: MeshTls | None = None) -> list[GrpcBackend]:
    """One upstream per public service, at `addresses[name]` (session, validator, ...)."""
    return [
        GrpcBackend(
            full_name, f"grpc_{name}", _connectable(addresses[name]), tls.server_name(name) if tls else ""
        )
        for name, full_name in PUBLIC_SERVICES.items()
    ]


def edge_mesh_tls(tls: MeshTls | None) -> EdgeMeshTls | None:
    if tls is None:
        return None
    files = tls.files
    return EdgeMeshTls(files.certificate, files.key, files.ca, tls.server_name("gateway"))


def max_upload_bytes(validator: ValidatorSettings | None = None) -> int:
    validator = validator or ValidatorSettings()
    return max(validator.validator_face_max_bytes, validator.validator_voice_max_bytes)


def _problem(code: str, status: int, detail: str | None = None, retry_after: int = 0) -> dict:
    """problem+json exactly as the gateway writes it, with nginx's request id; `status` is
    the one the edge answers with."""
    error = VidsynthError(code, detail, retry_after_seconds=retry_after or None)
    body = {**problem_body(error, "$request_id"), "status": status}
    text = json.dumps(body, separators=(",", ":"))
    if "'" in text or text.count("$") != 1:
        raise ValueError(f"{code}: the message cannot go in an nginx string as is")
    return {"status": status, "body": text, "retry_after": retry_after}


def _grpc_refusal(code: str, detail: str | None = None, retry_after: int = 0) -> dict:
    error = VidsynthError(code, detail, retry_after_seconds=retry_after or None)
    details = base64.b64encode(to_status_proto(error).SerializeToString()).decode()
    if any(c in error.message for c in '"$%\\'):
        raise ValueError(f"{code}: the message cannot go in a grpc-message header as is")
    return {"status": error.spec.grpc_code.value[0], "message": error.message, "details": details}


def refusals(config: EdgeConfig) -> tuple[dict, dict]:
    """The HTTP problems and gRPC statuses the edge answers itself."""
    problems = {
        "not_found": _problem("NOT_FOUND", 404),
        "timed_out": _problem(
            "DEADLINE_EXCEEDED", 408, f"The request body paused for over {config.body_timeout:g} seconds."
        ),
        "too_large": _problem(
            "REQUEST_TOO_LARGE",
            413,
            f"The request body is larger than the largest upload ({config.max_body_bytes} bytes).",
        ),
        "too_many_connections": _problem(
            "RATE_LIMITED", 429, "Too many connections from your address; close some and retry.", 1
        ),
        "head_too_large": _problem("REQUEST_HEADERS_TOO_LARGE", 431, "A request header line is too long."),
        "unavailable": _problem("SERVICE_UNAVAILABLE", 503),
    }
    grpc_refusals = {
        "grpc_unimplemented": _grpc_refusal(
            "NOT_IMPLEMENTED", "No such service or method in the public vidsynth API."
        ),
        "grpc_unavailable": _grpc_refusal("SERVICE_UNAVAILABLE"),
        "grpc_too_many_connections": _grpc_refusal(
            "RATE_LIMITED", "Too many concurrent calls from your address.", 1
        ),
        "grpc_too_large": _grpc_refusal("REQUEST_TOO_LARGE"),
    }
    return problems, grpc_refusals


def render(config: EdgeConfig) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # nginx config, not HTML  # noqa: S701
    )
    environment.filters["ms"] = lambda seconds: f"{round(seconds * 1000)}ms"
    problems, grpc_refusals = refusals(config)
    return environment.get_template(TEMPLATE).render(
        **vars(config),
        # What nginx itself cannot parse: a NUL in the path, a path above the root, ...
        bad_request=_problem("INVALID_ARGUMENT", 400, "The request line or its headers are malformed."),
        problems=problems,
        grpc_refusals=grpc_refusals,
        gateway_grpc_services=GATEWAY_GRPC_SERVICES,
        max_grpc_body_bytes=config.max_body_bytes + GRPC_BODY_SLACK_BYTES,
    )


def nginx_binary(name: str = "nginx") -> str:
    """`name` on PATH or where Debian puts it (/usr/sbin is not on a normal user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    if "/" not in name:
        for directory in NGINX_FALLBACK_DIRS:
            if os.access(directory / name, os.X_OK):
                return str(directory / name)
    raise EdgeError(
        f"nginx ({name}) is not installed: the edge needs it. Install the Debian package `{NGINX_PACKAGE}` "
        f"(apt-get install {NGINX_PACKAGE}, or run scripts/setup.sh)."
    )


def edge_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / "edge"


def open_file_budget() -> tuple[int, int]:
    """(files, connections) per worker: what this user may open (the hard limit, which an
    unprivileged nginx may raise its workers to), and half of it, at most 8192, as connections."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    return files, max(256, min(8192, files // 2))


def worker_user() -> str:
    """As root nginx's workers would switch to `nobody`, who cannot reach the temp paths
    under the 0700 data dir: keep them as the user `up` runs as (the services run as it too).
    As a normal user the directive does not apply."""
    if os.geteuid() != 0:
        return ""
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def config_for_mesh(
    mesh: MeshSettings,
    edge: EdgeSettings,
    data_dir: Path,
    tls: CertificateFiles | None,
    mesh_tls: MeshTls | None = None,
) -> EdgeConfig:
    """The edge of a `vidsynth up` mesh: P and G public, everything else behind (reached
    with the edge's identity under mesh TLS)."""
    base = edge_dir(data_dir)
    addresses = {name: mesh.service_address(name) for name in PUBLIC_SERVICES}
    files, connections = open_file_budget()
    return EdgeConfig(
        http_listen=f"{mesh.http_host}:{mesh.http_port}",
        grpc_listen=f"{mesh.grpc_host}:{mesh.grpc_port}",
        gateway_http=_connectable(f"{mesh.http_host}:{mesh.gateway_listen_port}"),
        gateway_grpc=_connectable(mesh.gateway_grpc_address),
        grpc_backends=grpc_backends(addresses, mesh_tls),
        max_body_bytes=max_upload_bytes() + MULTIPART_SLACK_BYTES,
        header_timeout=edge.edge_header_timeout_seconds,
        body_timeout=edge.edge_body_timeout_seconds,
        read_timeout=edge.edge_read_timeout_seconds,
        stream_timeout=edge.edge_stream_timeout_seconds,
        max_connections_per_address=edge.edge_max_connections_per_address,
        worker_processes=str(edge.edge_worker_processes or "auto"),
        worker_connections=connections,
        worker_files=files,
        tls=tls,
        mesh_tls=edge_mesh_tls(mesh_tls),
        pid_file=str(base / "nginx.pid"),
        error_log=str(base / "error.log"),
        error_log_to_stderr=True,
        access_log=str(base / "access.log") if edge.edge_access_log else "",
        temp_dir=str(base / "tmp"),
        user=worker_user(),
    )


def write_config(config: EdgeConfig, base: Path) -> Path:
    """Renders into `base` (created 0700 with its temp dir). Blocking: small file writes."""
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    Path(config.temp_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    path = base / "nginx.conf"
    path.write_text(render(config))
    return path


def nginx_argv(binary: str, config_path: Path) -> list[str]:
    base = config_path.parent
    # -e: where nginx logs before it has read the config (the default path is not writable
    # for a normal user).
    return [binary, "-p", str(base), "-e", str(base / "error.log"), "-c", str(config_path)]


async def check_config(argv: list[str]) -> None:
    """`nginx -t` on the rendered config: a bad certificate, a busy port... fail here, at start."""
    done = await children.run([*argv, "-t", "-q"], time_limit=CHECK_SECONDS)
    if done.returncode != 0:
        lines = [line for line in done.stderr_tail.splitlines() if "[emerg]" in line or "[crit]" in line]
        reason = lines[0] if lines else done.stderr_tail.strip() or f"exit status {done.returncode}"
        raise EdgeError(f"nginx refused the edge config ({argv[-1]}): {reason}")


# docker-compose.yml's edge container: the official nginx image, the services by their
# compose names, the ports the compose file sets (checked against it by a test).
COMPOSE_CONFIG_FILE = TEMPLATE_DIR / "nginx.compose.conf"
COMPOSE_HTTP_PORT = 8080
COMPOSE_GRPC_PORT = 50051
COMPOSE_ADDRESSES = {
    "session": "session:50052",
    "validator": "validator:50053",
    "stage_runner": "stage_runner:50054",
    "progress": "progress:50055",
    "cleanup": "cleanup:50056",
}


def compose_config() -> EdgeConfig:
    defaults = EdgeSettings.model_construct()  # the shipped defaults, not this machine's environment
    return EdgeConfig(
        http_listen=f"0.0.0.0:{COMPOSE_HTTP_PORT}",
        grpc_listen=f"0.0.0.0:{COMPOSE_GRPC_PORT}",
        gateway_http="gateway:8080",
        gateway_grpc="gateway:50057",
        grpc_backends=grpc_backends(COMPOSE_ADDRESSES),
        max_body_bytes=max_upload_bytes(ValidatorSettings.model_construct()) + MULTIPART_SLACK_BYTES,
        pid_file="/var/run/nginx.pid",
        error_log="/dev/stderr",
        temp_dir="/var/cache/nginx",
        header_timeout=defaults.edge_header_timeout_seconds,
        body_timeout=defaults.edge_body_timeout_seconds,
        read_timeout=defaults.edge_read_timeout_seconds,
        stream_timeout=defaults.edge_stream_timeout_seconds,
        max_connections_per_address=defaults.edge_max_connections_per_address,
        access_log="/dev/stdout",
        user="nginx",
        rendered_by="`python -m scripts.gen_edge_config` for docker-compose.yml",
    )
