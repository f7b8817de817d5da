"""Validation of a job request before anything is stored or queued."""

from __future__ import annotations

import hashlib

from libs.common.errors import FieldViolation, VidsynthError
from vidsynth.v1 import stage_runner_pb2

MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_PROMPT_MINUTES = 30.0
MAX_FIELD_CHARS = 200


def _invalid(field: str, description: str) -> VidsynthError:
    return VidsynthError("INVALID_ARGUMENT", f"{field} {description}.", [FieldViolation(field, description)])


def check_spec(spec: stage_runner_pb2.JobSpec, max_script_chars: int) -> None:
    script = spec.WhichOneof("script")
    if script is None:
        raise _invalid("spec.script_text", "or spec.script_prompt is required")
    if script == "script_text":
        if not spec.script_text.strip():
            raise _invalid("spec.script_text", "must not be empty")
        if len(spec.script_text) > max_script_chars:
            raise VidsynthError(
                "SCRIPT_TOO_LONG",
                f"The script has {len(spec.script_text)} characters; the limit is {max_script_chars}.",
                [FieldViolation("spec.script_text", f"at most {max_script_chars} characters")],
                metadata={"characters": str(len(spec.script_text)), "limit": str(max_script_chars)},
            )
    else:
        prompt = spec.script_prompt
        if not prompt.topic.strip():
            raise _invalid("spec.script_prompt.topic", "must not be empty")
        if not 0 <= prompt.duration_minutes <= MAX_PROMPT_MINUTES:
            raise _invalid(
                "spec.script_prompt.duration_minutes", f"must be between 0 and {MAX_PROMPT_MINUTES:g}"
            )
        for name in ("topic", "tone", "emotion", "audience", "content_type"):
            if len(getattr(prompt, name)) > MAX_FIELD_CHARS:
                raise _invalid(f"spec.script_prompt.{name}", f"must be at most {MAX_FIELD_CHARS} characters")
    for name in ("emotion", "tone"):
        if len(getattr(spec, name)) > MAX_FIELD_CHARS:
            raise _invalid(f"spec.{name}", f"must be at most {MAX_FIELD_CHARS} characters")
    options = spec.options
    if options.size and not 64 <= options.size <= 1024:
        raise _invalid("spec.options.size", "must be between 64 and 1024")
    if options.fps and not 1 <= options.fps <= 60:
        raise _invalid("spec.options.fps", "must be between 1 and 60")
    if options.upscale_factor and not 1 <= options.upscale_factor <= 4:
        raise _invalid("spec.options.upscale_factor", "must be between 1 and 4")


def check_idempotency_key(key: str) -> None:
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise _invalid("request_id", f"must be printable and at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")


def request_fingerprint(session_id: str, spec: stage_runner_pb2.JobSpec) -> str:
    """Same session and spec -> same fingerprint (deterministic serialization)."""
    digest = hashlib.sha256(session_id.encode() + b"\0")
    digest.update(spec.SerializeToString(deterministic=True))
    return digest.hexdigest()
