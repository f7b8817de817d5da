"""How the client commands reach a running mesh, and how its errors become exit codes."""

from __future__ import annotations

import contextlib
import functools
import json
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, ValidationError, field_validator
from rich.console import Console
from rich.markup import escape

from libs.common.clients import ServiceStubs
from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import VidsynthSettings
from vidsynth.v1 import stage_runner_pb2

# Exit codes by the gRPC status of the catalogued error (documented in `vidsynth --help`).
EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAUTHENTICATED: 3,
    grpc.StatusCode.PERMISSION_DENIED: 3,
    grpc.StatusCode.NOT_FOUND: 4,
    grpc.StatusCode.INVALID_ARGUMENT: 5,
    grpc.StatusCode.FAILED_PRECONDITION: 5,
    grpc.StatusCode.ALREADY_EXISTS: 5,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 6,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
}
EXIT_JOB_FAILED = 7
DEFAULT_GRPC = "127.0.0.1:50051"
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_HELP = (
    "Exit codes: 0 ok, 1 other error, 2 usage, 3 not authenticated/allowed, 4 not found, "
    "5 refused input or state, 6 busy or unavailable (retry later), 7 the job failed or was cancelled."
)

ApiKeyOption = Annotated[
    str, typer.Option("--api-key", envvar="VIDSYNTH_API_KEY", help="Your API key.", show_default=False)
]
GrpcOption = Annotated[
    str,
    typer.Option(
        "--grpc",
        envvar="VIDSYNTH_GRPC_TARGET",
        help="host:port of the mesh's public gRPC address (the edge).",
    ),
]
UrlOption = Annotated[str, typer.Option("--url", envvar="VIDSYNTH_URL", help="The gateway's base URL.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]

console = Console(stderr=True)
Reply = TypeVar("Reply", bound=Message)


class ClientSettings(VidsynthSettings):
    """How the command line reaches a mesh over TLS."""

    tls_ca: Path | None = Field(
        None,
        description="CA certificate (PEM) the `vidsynth` client commands trust, e.g. the one `vidsynth up "
        "--tls` prints (<data-dir>/tls/ca.pem); setting it also makes them use TLS for gRPC.",
    )
    grpc_tls: bool = Field(
        False, description="`vidsynth` client commands use TLS for gRPC with the system's trusted CAs."
    )

    @field_validator("tls_ca")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"VIDSYNTH_TLS_CA: no file at {path}")
        return path


@functools.cache
def client_settings() -> ClientSettings:
    try:
        return ClientSettings()
    except ValidationError as error:
        fail(VidsynthError("INVALID_ARGUMENT", error.errors()[0]["msg"].removeprefix("Value error, ")))


def https_verify() -> ssl.SSLContext | bool:
    """What HTTPS calls verify the server's certificate against: VIDSYNTH_TLS_CA, else the system's CAs."""
    ca = client_settings().tls_ca
    return ssl.create_default_context(cafile=str(ca)) if ca else True


@dataclass
class Remote(ServiceStubs):
    """Stubs for every public service of one mesh, all through its one gRPC address (the
    edge), called with the user's key."""

    grpc_target: str
    api_key: str
    url: str = DEFAULT_URL

    def __post_init__(self) -> None:
        if not self.api_key:
            fail(VidsynthError("UNAUTHENTICATED", "Pass --api-key or set VIDSYNTH_API_KEY."))
        grpc_host_and_port(self.grpc_target)  # a usage error now, not at the first call
        self._settings = client_settings()
        self._channel: grpc.Channel | None = None

    @property
    def tls(self) -> bool:
        return bool(self._settings.tls_ca or self._settings.grpc_tls or self.url.startswith("https://"))

    @property
    def http_verify(self) -> ssl.SSLContext | bool:
        """What HTTPS downloads verify the gateway's certificate against."""
        return https_verify()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),)

    def call(self, rpc: Callable[..., Reply], request: Message, as_json: bool = False) -> Reply:
        """One unary call with the user's key; a failure prints its catalogued error and exits."""
        with catalogued_errors(as_json):
            return rpc(request, metadata=self.metadata)

    def channel(self, service: str) -> grpc.Channel:
        """One channel for every service: the edge routes each call by its path."""
        if self._channel is None:
            if self.tls:
                ca = self._settings.tls_ca.read_bytes() if self._settings.tls_ca else None
                credentials = grpc.ssl_channel_credentials(root_certificates=ca)
                self._channel = grpc.secure_channel(self.grpc_target, credentials)
            else:
                self._channel = grpc.insecure_channel(self.grpc_target)
        return self._channel


def grpc_host_and_port(target: str) -> tuple[str, int]:
    """`host:port` of the mesh's gRPC address; a usage error (exit 5) when it is not one."""
    host, _, port = target.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        fail(VidsynthError("INVALID_ARGUMENT", f"--grpc must look like host:port, not {target!r}."))
    return host or "127.0.0.1", int(port)


def fail(error: VidsynthError, as_json: bool = False) -> NoReturn:
    """Print a catalogued error in plain words and exit with its code."""
    if as_json:
        print(json.dumps({"error": {"code": error.code, "message": error.message}}))
    else:
        console.print(f"[red]error[/] {error.code}: {escape(error.message)}")
    raise typer.Exit(EXIT_CODES.get(error.spec.grpc_code, 1))


@contextlib.contextmanager
def catalogued_errors(as_json: bool = False) -> Iterator[None]:
    """Turns failed RPCs into the catalog's message and exit code."""
    try:
        yield
    except grpc.RpcError as error:
        fail(error_from_rpc_error(error), as_json)
    except VidsynthError as error:
        fail(error, as_json)


def http_views() -> ModuleType:
    """The HTTP API's views, for --json to print exactly the HTTP answer. Imported on use:
    their FastAPI models are a quarter of every command's start-up."""
    from services.gateway import views

    return views


def http_view(message: Message) -> Callable[[Any], Any] | None:
    """The HTTP API's view of `message`, if it shows that message too."""
    views = http_views()
    known: dict[type, Callable[[Any], Any]] = {
        stage_runner_pb2.Job: views.job_view,
        stage_runner_pb2.Capabilities: views.capabilities_view,
    }
    return known.get(type(message))


def _field_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_label(field.enum_type._concrete_class, value)  # type: ignore[attr-defined]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return plain_json(value)
    return value


def plain_json(message: Message) -> Any:
    """Any message in the HTTP API's spelling: lower-case enum words, integers as numbers
    (protobuf-JSON writes 64-bit ones as strings), RFC 3339 timestamps, every field present."""
    if isinstance(message, Timestamp):
        return message.ToJsonString()
    body: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            body[field.name] = [_field_json(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
            body[field.name] = None
        else:
            body[field.name] = _field_json(field, value)
    return body


def as_dict(message: Message) -> Any:
    """A reply as --json prints it: the HTTP API's view where it has one, else `plain_json`."""
    view = http_view(message)
    return view(message).model_dump(mode="json") if view is not None else plain_json(message)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
