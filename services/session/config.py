"""SessionService settings (`VIDSYNTH_SESSION_*`), read once when the service is built."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import VidsynthSettings


class SessionSettings(VidsynthSettings):
    """Limits and lifetimes of sessions."""

    session_max_per_user: int = Field(
        10, ge=1, description="Most concurrent (not expired, not deleted) sessions one user may hold."
    )
    session_max_global: int = Field(
        1000, ge=1, description="Most concurrent (not expired, not deleted) sessions on this mesh."
    )
    session_idle_ttl_seconds: float = Field(
        3600.0, gt=0, description="A session expires this long after its owner's last call."
    )
    session_processing_ttl_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="Expiry shown while a job is processing; a processing session itself never expires.",
    )
    session_activity_write_interval_seconds: float = Field(
        1.0,
        ge=0,
        description="Reads refresh a session's activity at most this often (TouchSession always does).",
    )
    session_redis_namespace: str = Field(
        "vidsynth:",
        description="Prefix of every session key in Redis (with VIDSYNTH_REDIS_URL), so meshes can share one.",
    )
