"""ProgressService settings (`VIDSYNTH_PROGRESS_*`), read once at build time."""

from __future__ import annotations

from pydantic import Field, field_validator

from libs.common.progress_events import STAGES_BY_NAME
from libs.common.settings import VidsynthSettings

DEFAULT_STAGE_WEIGHTS = "script=5,voice=20,face=5,animate=45,enhance=15,assemble=10"


def parse_stage_weights(spec: str) -> dict[str, float]:
    """`"voice=20,animate=45"` -> {"voice": 20.0, "animate": 45.0}; stages not named weigh 0."""
    weights: dict[str, float] = {}
    for pair in spec.split(","):
        if not pair.strip():
            continue
        name, sep, value = pair.strip().partition("=")
        if not sep or name not in STAGES_BY_NAME:
            raise ValueError(f"stage weights must look like {DEFAULT_STAGE_WEIGHTS}")
        weight = float(value)
        if weight < 0:
            raise ValueError("stage weights must not be negative")
        weights[name] = weight
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("at least one stage needs a positive weight")
    return weights


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
    progress_stage_weights: str = Field(
        DEFAULT_STAGE_WEIGHTS,
        description="Share of each stage in a job's overall percent, as stage=weight pairs.",
    )

    progress_redis_namespace: str = Field(
        "vidsynth:",
        description="Prefix of every progress key in Redis (with VIDSYNTH_REDIS_URL), so meshes can share one.",
    )

    @field_validator("progress_stage_weights")
    @classmethod
    def _check_weights(cls, value: str) -> str:
        parse_stage_weights(value)
        return value

    @property
    def stage_weights(self) -> dict[str, float]:
        return parse_stage_weights(self.progress_stage_weights)
