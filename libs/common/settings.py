"""Mesh-wide settings, read once from `VIDSYNTH_*` environment variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The port layout of one mesh, from its public gRPC port G (the edge's under `vidsynth up`):
# the services listen behind it on G+1..G+5, the gateway's gRPC server (reflection and
# health of the public API) on G+6, and under `vidsynth up` the gateway's HTTP on G+7.
SERVICE_PORT_OFFSETS: dict[str, int] = {
    "session": 1,
    "validator": 2,
    "stage_runner": 3,
    "progress": 4,
    "cleanup": 5,
}
GATEWAY_GRPC_PORT_OFFSET = 6
GATEWAY_HTTP_PORT_OFFSET = 7
PORT_BLOCK_SIZE = 8
# The public gRPC service each backend serves (package vidsynth.v1), which the edge routes by path.
PUBLIC_SERVICES: dict[str, str] = {
    "session": "vidsynth.v1.SessionService",
    "validator": "vidsynth.v1.ValidatorService",
    "stage_runner": "vidsynth.v1.StageRunnerService",
    "progress": "vidsynth.v1.ProgressService",
    "cleanup": "vidsynth.v1.CleanupService",
}

ProcessingModeName = Literal["auto", "production", "simulation"]


class VidsynthSettings(BaseSettings):
    """Base for every settings class: the `VIDSYNTH_` prefix and unknown keys ignored."""

    model_config = SettingsConfigDict(env_prefix="VIDSYNTH_", extra="ignore", frozen=True)


class MeshSettings(VidsynthSettings):
    """Settings every service and the gateway read."""

    data_dir: Path = Field(Path("var"), description="Where sessions, databases and quarantine live.")
    grpc_host: str = Field("127.0.0.1", description="Host the services listen on and are reached at.")
    grpc_port: int = Field(
        50051,
        description="The public gRPC port G (the edge's under `vidsynth up`). The services listen behind "
        "it: session G+1, validator G+2, stage_runner G+3, progress G+4, cleanup G+5, the gateway's "
        "reflection and health server G+6.",
    )
    http_host: str = Field("127.0.0.1", description="Gateway listen address.")
    http_port: int = Field(
        8080,
        description="The public HTTP port (the edge's under `vidsynth up`); the gateway listens here "
        "itself unless VIDSYNTH_GATEWAY_HTTP_PORT is set.",
    )
    gateway_http_port: int = Field(
        0,
        ge=0,
        description="Port the gateway's HTTP server listens on; 0: http_port. `vidsynth up` sets it to "
        "grpc_port+7, behind the edge on http_port.",
    )
    session_addr: str = Field("", description="host:port of SessionService (default: grpc_host:grpc_port+1).")
    validator_addr: str = Field("", description="host:port of ValidatorService (default: grpc_port+2).")
    stage_runner_addr: str = Field("", description="host:port of StageRunnerService (default: grpc_port+3).")
    progress_addr: str = Field("", description="host:port of ProgressService (default: grpc_port+4).")
    cleanup_addr: str = Field("", description="host:port of CleanupService (default: grpc_port+5).")
    gateway_addr: str = Field(
        "",
        description="host:port of the gateway's gRPC server: reflection and health of the public API, "
        "which the edge routes there (default: grpc_host:grpc_port+6).",
    )
    api_keys: SecretStr = Field(SecretStr(""), description='API keys as "key1=alice,key2=bob".')
    api_keys_file: Path | None = Field(
        None,
        description="File of API key hashes (`sha256:<hex> user [admin]` per line, written by "
        "`vidsynth keys`), reloaded on change or SIGHUP; used beside VIDSYNTH_API_KEYS.",
    )
    api_keys_reload_seconds: float = Field(
        1.0, gt=0, description="How often every process checks the API keys file for changes."
    )
    admin_users: str = Field("", description="Comma-separated user ids with the admin role.")
    mesh_token: SecretStr = Field(
        SecretStr(""),
        description="Shared credential for internal RPCs; internal RPCs are refused when empty.",
    )
    processing_mode: ProcessingModeName = Field("auto", description="auto, production or simulation.")
    redis_url: str = Field("", description="redis://... switches stores to Redis; empty keeps SQLite.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    grpc_rate_limit_per_second: float = Field(
        50.0, gt=0, description="Calls per second each API key may make directly to a service (token bucket)."
    )
    grpc_rate_limit_burst: int = Field(200, ge=1, description="Burst size of that per-key gRPC rate limit.")
    rpc_timeout_seconds: float = Field(10.0, description="Default deadline of every outgoing unary RPC.")
    shutdown_grace_seconds: float = Field(5.0, description="Grace period for in-flight RPCs on SIGTERM.")
    parent_pid: int = Field(0, description="Set by `vidsynth up`: a service exits when this process is gone.")

    def service_address(self, service: str) -> str:
        override = getattr(self, f"{service}_addr")
        if override:
            return override
        return f"{self.grpc_host}:{self.grpc_port + SERVICE_PORT_OFFSETS[service]}"

    def listen_address(self, service: str) -> str:
        return f"{self.grpc_host}:{self.grpc_port + SERVICE_PORT_OFFSETS[service]}"

    @property
    def gateway_grpc_listen_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port + GATEWAY_GRPC_PORT_OFFSET}"

    @property
    def gateway_grpc_address(self) -> str:
        return self.gateway_addr or self.gateway_grpc_listen_address

    @property
    def gateway_listen_port(self) -> int:
        """Where the gateway's HTTP server listens (behind the edge, or the public port itself)."""
        return self.gateway_http_port or self.http_port

    @functools.cached_property
    def admin_user_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"


@functools.cache
def get_mesh_settings() -> MeshSettings:
    """The process's mesh settings, read from the environment once."""
    return MeshSettings()
