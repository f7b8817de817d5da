"""ProgressService settings (`VIDSYNTH_PROGRESS_*`), read once at build time."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import VidsynthSettings


class ProgressSettings(VidsynthSettings):
    progress_max_events_per_session: int = Field(
        20_000,
        ge=100,
        description="Events kept per session; the oldest are dropped beyond this.",
    )
    progress_max_events_per_publish: int = Field(
        1_000, ge=1, description="Most events one PublishEvents call may carry."
    )
    progress_subscriber_buffer: int = Field(
        1_024,
        ge=4,
        description="Live events buffered per subscriber; one that falls further behind is ended "
        "with SUBSCRIBER_TOO_SLOW and resumes by seq.",
    )
    progress_replay_page_size: int = Field(500, ge=1, description="Events read from the store per page.")
    progress_redis_namespace: str = Field(
        "vidsynth:",
        description="Prefix of every progress key in Redis (with VIDSYNTH_REDIS_URL), so meshes can share one.",
    )
