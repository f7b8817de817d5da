"""Settings of the built-in media backends and the Gemini script writer."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from libs.common.settings import VidsynthSettings
from services.stage_runner.media.chunking import DEFAULT_SECONDS_PER_CHUNK, DEFAULT_WORDS_PER_MINUTE


class MediaSettings(VidsynthSettings):
    """`VIDSYNTH_MEDIA_*` settings; the Gemini key is also read from `GEMINI_API_KEY`."""

    model_config = SettingsConfigDict(populate_by_name=True)

    media_gemini_api_key: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices(
            "media_gemini_api_key", "VIDSYNTH_MEDIA_GEMINI_API_KEY", "GEMINI_API_KEY"
        ),
        description="Gemini API key (also read from GEMINI_API_KEY); empty disables generated scripts.",
    )
    media_gemini_base_url: str = Field(
        "", description="Override of the Gemini API base URL (for proxies and tests); empty uses Google's."
    )
    media_gemini_models: str = Field(
        "gemini-2.5-flash,gemini-2.0-flash,gemini-1.5-flash",
        description="Comma-separated Gemini models, tried in order when one fails.",
    )
    media_gemini_attempts: int = Field(3, ge=1, description="Attempts per Gemini model before the next one.")
    media_gemini_backoff_seconds: float = Field(
        1.0, ge=0, description="First retry delay for Gemini calls; doubles on each retry."
    )
    media_gemini_timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one Gemini request.")
    media_script_max_minutes: float = Field(10.0, gt=0, description="Longest script a prompt may ask for.")
    media_words_per_minute: float = Field(
        DEFAULT_WORDS_PER_MINUTE,
        gt=0,
        description="Speaking rate (words per minute): sizes generated scripts, estimates speech length "
        "(job estimates, simulated stages) and cuts the built-in voice's speech into chunks.",
    )
    media_default_size: int = Field(
        512,
        ge=256,
        le=1024,
        description="Frame size (square, pixels) of built-in videos when a job does not set one; 256 to 1024.",
    )
    media_seconds_per_chunk: float = Field(
        DEFAULT_SECONDS_PER_CHUNK,
        gt=0,
        description="Target length of each sentence-aligned speech chunk, in seconds.",
    )
