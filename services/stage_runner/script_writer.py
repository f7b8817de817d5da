"""Script stage backend: a speakable script written by Gemini through the `google-genai` SDK.

The generated text is only ever spoken (cleaned to plain prose and fed to a speech engine); it
is never executed or interpreted. Models are tried in order; each gets a few attempts with
exponential backoff. HTTP 429 everywhere becomes RATE_LIMITED; anything else SCRIPT_GENERATION_FAILED.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import httpx
import httpx2
import structlog

from libs.common.errors import FieldViolation, VidsynthError
from services.stage_runner.media.chunking import clean_speakable, word_count
from services.stage_runner.media.config import MediaSettings

if TYPE_CHECKING:
    from google import genai
    from google.genai import errors as genai_errors

log = structlog.get_logger("stage_runner.script_writer")

MAX_TOPIC_CHARS = 500
MAX_FIELD_CHARS = 60
# A script shorter than this share of the target is a failed answer; a longer one than the
# upper share is trimmed at a sentence end.
_MIN_LENGTH_SHARE = 0.5
_MAX_LENGTH_SHARE = 1.15
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# google-genai talks HTTP through httpx2 (its fork of httpx), or httpx when configured so.
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx2.HTTPError, OSError, TimeoutError)

_SYSTEM_INSTRUCTION = (
    "You write scripts that one presenter reads aloud to camera. Answer with the spoken words only: "
    "plain sentences, no title, no headings, no lists, no markdown, no stage directions, no speaker "
    "labels, no emoji, no URLs. Spell out numbers and symbols as they are spoken."
)


@dataclass(frozen=True)
class ScriptPrompt:
    topic: str
    duration_minutes: float = 1.0
    tone: str = ""
    emotion: str = ""
    audience: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class GeneratedScript:
    text: str
    model: str
    word_count: int
    estimated_seconds: float


class _RetryableAnswer(Exception):
    """An answer that was received but is unusable (empty or too short)."""


def gemini_available(settings: MediaSettings) -> tuple[bool, str]:
    """Whether Gemini scripts can be generated, and if not, why (for capabilities)."""
    if not settings.media_gemini_api_key.get_secret_value().strip():
        return False, "GEMINI_API_KEY is not set"
    if not _models(settings):
        return False, "no Gemini models are configured (VIDSYNTH_MEDIA_GEMINI_MODELS)"
    return True, f"Gemini via google-genai ({_models(settings)[0]} first)"


def _models(settings: MediaSettings) -> list[str]:
    return [m.strip() for m in settings.media_gemini_models.split(",") if m.strip()]


def target_words(duration_minutes: float, words_per_minute: int) -> int:
    return max(20, round(duration_minutes * words_per_minute))


def validate_prompt(prompt: ScriptPrompt, settings: MediaSettings) -> None:
    violations: list[FieldViolation] = []
    if not prompt.topic.strip():
        violations.append(FieldViolation("script_prompt.topic", "Say what the script is about."))
    elif len(prompt.topic) > MAX_TOPIC_CHARS:
        violations.append(FieldViolation("script_prompt.topic", f"At most {MAX_TOPIC_CHARS} characters."))
    if not 0 < prompt.duration_minutes <= settings.media_script_max_minutes:
        violations.append(
            FieldViolation(
                "script_prompt.duration_minutes",
                f"Must be more than 0 and at most {settings.media_script_max_minutes:g} minutes.",
            )
        )
    for name in ("tone", "emotion", "audience", "content_type"):
        if len(getattr(prompt, name)) > MAX_FIELD_CHARS:
            violations.append(
                FieldViolation(f"script_prompt.{name}", f"At most {MAX_FIELD_CHARS} characters.")
            )
    if violations:
        raise VidsynthError(
            "INVALID_ARGUMENT", "The script prompt is not valid.", field_violations=violations
        )


def build_request(prompt: ScriptPrompt, words: int) -> str:
    """The user turn sent to Gemini; the user's fields are quoted as data, one per line."""
    lines = [
        f"Write a script of about {words} words (about {prompt.duration_minutes:g} minutes spoken).",
        f"Topic: {prompt.topic.strip()}",
    ]
    for label, value in (
        ("Content type", prompt.content_type),
        ("Audience", prompt.audience),
        ("Tone", prompt.tone),
        ("Emotion to convey", prompt.emotion),
    ):
        if value.strip():
            lines.append(f"{label}: {value.strip()}")
    lines.append("Start speaking right away with a hook and end with a short closing line.")
    return "\n".join(lines)


def _fit_length(text: str, words: int) -> str:
    """Trim an over-long script at the last sentence end that keeps it within the upper share."""
    limit = round(words * _MAX_LENGTH_SHARE)
    if word_count(text) <= limit:
        return text
    kept: list[str] = []
    count = 0
    for sentence in _SENTENCE_END.split(text):
        n = word_count(sentence)
        if kept and count + n > limit:
            break
        kept.append(sentence)
        count += n
    return " ".join(kept)


def _sdk() -> tuple[ModuleType, ModuleType, ModuleType]:
    """google-genai (genai, errors, types), imported on first use: it is about 0.7 s of every
    stage runner's start-up otherwise, which a mesh without a Gemini key never needs."""
    from google import genai
    from google.genai import errors, types

    return genai, errors, types


def _client(settings: MediaSettings) -> genai.Client:
    genai, _, types = _sdk()
    options = types.HttpOptions(
        base_url=settings.media_gemini_base_url or None,
        timeout=int(settings.media_gemini_timeout_seconds * 1000),
    )
    return genai.Client(api_key=settings.media_gemini_api_key.get_secret_value(), http_options=options)


async def _ask(client: genai.Client, model: str, request: str, words: int) -> str:
    types = _sdk()[2]
    response = await client.aio.models.generate_content(
        model=model,
        contents=request,
        config=types.GenerateContentConfig(
            system_instruction=_SYSTEM_INSTRUCTION,
            temperature=0.8,
            # Tokens run ~1.4 per English word; leave room so the answer is not cut mid-sentence.
            max_output_tokens=max(256, int(words * 2.5)),
        ),
    )
    text = clean_speakable(response.text or "")
    if word_count(text) < max(5, round(words * _MIN_LENGTH_SHARE)):
        raise _RetryableAnswer(f"answer too short ({word_count(text)} words for {words})")
    return _fit_length(text, words)


async def generate_script(prompt: ScriptPrompt, settings: MediaSettings) -> GeneratedScript:
    """Write a speakable script for `prompt` with Gemini; see the module docstring for failures."""
    validate_prompt(prompt, settings)
    available, reason = gemini_available(settings)
    if not available:
        raise VidsynthError("STAGE_UNAVAILABLE", f"Generated scripts are not available: {reason}.")
    words = target_words(prompt.duration_minutes, settings.media_words_per_minute)
    request = build_request(prompt, words)
    rate_limited_everywhere = True
    retry_after: float | None = None
    # The first import runs in a thread, so the event loop keeps serving meanwhile.
    genai_errors = (await asyncio.to_thread(_sdk))[1]
    client = _client(settings)
    try:
        for model in _models(settings):
            delay = settings.media_gemini_backoff_seconds
            for attempt in range(1, settings.media_gemini_attempts + 1):
                try:
                    text = await _ask(client, model, request, words)
                except genai_errors.APIError as exc:
                    log.warning(
                        "gemini_error", model=model, attempt=attempt, code=exc.code, status=exc.status
                    )
                    if exc.code != 429:
                        rate_limited_everywhere = False
                    else:
                        retry_after = _retry_after_seconds(exc) or retry_after
                    if exc.code in (401, 403):
                        raise VidsynthError(
                            "SCRIPT_GENERATION_FAILED", "The Gemini API key was refused."
                        ) from exc
                    if exc.code not in (408, 429) and exc.code < 500:
                        break  # This model will not work (e.g. unknown model); try the next one.
                except (_RetryableAnswer, *_TRANSPORT_ERRORS) as exc:
                    rate_limited_everywhere = False
                    log.warning(
                        "gemini_unusable", model=model, attempt=attempt, error=str(exc) or type(exc).__name__
                    )
                else:
                    count = word_count(text)
                    log.info("script_generated", model=model, attempt=attempt, words=count, target=words)
                    seconds = count * 60.0 / settings.media_words_per_minute
                    return GeneratedScript(
                        text=text, model=model, word_count=count, estimated_seconds=seconds
                    )
                if attempt < settings.media_gemini_attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
    finally:
        await client.aio.aclose()
    if rate_limited_everywhere:
        raise VidsynthError(
            "RATE_LIMITED",
            "Gemini is rate limiting requests; try again shortly.",
            retry_after_seconds=retry_after or 30.0,
        )
    raise VidsynthError("SCRIPT_GENERATION_FAILED")


def _retry_after_seconds(exc: genai_errors.APIError) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
