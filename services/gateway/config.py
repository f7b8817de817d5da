"""Gateway settings (`VIDSYNTH_GATEWAY_*`), read once when the app is created."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import VidsynthSettings


class GatewaySettings(VidsynthSettings):
    """The gateway's front door: rate limit, body cap, CORS."""

    gateway_rate_limit_per_second: float = Field(
        20.0, gt=0, description="API requests per second each key (or unauthenticated client address) earns."
    )
    gateway_rate_limit_burst: int = Field(
        100, ge=1, description="Requests an API key may make at once before the per-second rate applies."
    )
    gateway_max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Largest request body outside uploads (uploads have the validator's own cap).",
    )
    gateway_upload_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="An upload body that sends nothing for this long is refused (DEADLINE_EXCEEDED), "
        "freeing its connection and validator stream (slow-drip guard).",
    )
    gateway_stream_max_seconds: float = Field(
        3600.0,
        gt=0,
        description="Longest an SSE or WebSocket progress stream stays open; the client then "
        "reconnects and resumes by seq (so no stream outlives its token or key for long).",
    )
    gateway_cors_origins: str = Field(
        "",
        description="Comma-separated origins browsers may call the API from (empty: none); WebSockets from "
        "other origins (but the gateway's own) are refused.",
    )
    gateway_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of the proxies in front of the gateway (the "
        "edge) whose X-Forwarded-For and X-Forwarded-Proto are believed, so per-address limits see the "
        "real client; empty: none. `vidsynth up` sets the edge's address.",
    )

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip() for origin in self.gateway_cors_origins.split(",") if origin.strip()]
