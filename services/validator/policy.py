"""What each kind of upload may be: detected MIME types, their extensions and the
declared content types that agree with them, plus the published UploadPolicy."""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.asset_kinds import FACE, VOICE
from services.validator.config import ValidatorSettings
from vidsynth.v1 import validator_pb2


@dataclass(frozen=True)
class AllowedType:
    """One accepted format: the MIME type libmagic reports, what we store it as, and the
    extensions and declared content types a client may name it with."""

    detected: str
    canonical: str
    extensions: frozenset[str]
    declared: frozenset[str]


def _t(detected: str, canonical: str, extensions: str, declared: str) -> AllowedType:
    return AllowedType(detected, canonical, frozenset(extensions.split()), frozenset(declared.split()))


_JPEG = _t("image/jpeg", "image/jpeg", ".jpg .jpeg .jpe .jfif", "image/jpeg image/jpg image/pjpeg")
_PNG = _t("image/png", "image/png", ".png", "image/png image/x-png")
_WEBP = _t("image/webp", "image/webp", ".webp", "image/webp")
_WAV = _t("audio/x-wav", "audio/wav", ".wav .wave", "audio/wav audio/x-wav audio/wave audio/vnd.wave")
_MP3 = _t("audio/mpeg", "audio/mpeg", ".mp3", "audio/mpeg audio/mp3 audio/x-mp3 audio/mpeg3")
_FLAC = _t("audio/flac", "audio/flac", ".flac", "audio/flac audio/x-flac")
_OGG = _t("audio/ogg", "audio/ogg", ".ogg .oga .opus", "audio/ogg audio/opus application/ogg")
_M4A = _t(
    "audio/x-m4a", "audio/mp4", ".m4a .mp4 .aac", "audio/mp4 audio/x-m4a audio/m4a audio/aac audio/x-aac"
)
_MP4 = _t("video/mp4", "audio/mp4", ".m4a .mp4", "audio/mp4 audio/x-m4a audio/m4a video/mp4")
_AAC = _t("audio/x-hx-aac-adts", "audio/aac", ".aac", "audio/aac audio/x-aac audio/aacp")

ALLOWED_TYPES: dict[int, tuple[AllowedType, ...]] = {
    FACE: (_JPEG, _PNG, _WEBP),
    VOICE: (_WAV, _MP3, _FLAC, _OGG, _M4A, _MP4, _AAC),
}

# A client that does not know the type says so; that is not a disagreement.
UNDECLARED_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def allowed_type(kind: int, detected: str) -> AllowedType | None:
    return next((t for t in ALLOWED_TYPES.get(kind, ()) if t.detected == detected), None)


def max_bytes(settings: ValidatorSettings, kind: int) -> int:
    return settings.validator_face_max_bytes if kind == FACE else settings.validator_voice_max_bytes


def _sorted_union(values) -> list[str]:
    return sorted({v for group in values for v in group})


def kind_policy(settings: ValidatorSettings, kind: int) -> validator_pb2.KindPolicy:
    types = ALLOWED_TYPES[kind]
    policy = validator_pb2.KindPolicy(
        kind=kind,
        max_bytes=max_bytes(settings, kind),
        allowed_content_types=_sorted_union(t.declared for t in types),
        allowed_extensions=_sorted_union(t.extensions for t in types),
    )
    if kind == FACE:
        policy.min_width = policy.min_height = settings.validator_image_min_side
        policy.max_width = policy.max_height = settings.validator_image_max_side
        policy.max_pixels = settings.validator_image_max_pixels
    else:
        policy.min_duration_seconds = settings.validator_audio_min_seconds
        policy.max_duration_seconds = settings.validator_audio_max_seconds
    return policy


def upload_policy(
    settings: ValidatorSettings, *, scanner_available: bool, signature_db: str
) -> validator_pb2.UploadPolicy:
    return validator_pb2.UploadPolicy(
        kinds=[kind_policy(settings, kind) for kind in (FACE, VOICE)],
        scan_policy=(
            validator_pb2.SCAN_POLICY_REQUIRED
            if settings.validator_scan_policy == "required"
            else validator_pb2.SCAN_POLICY_OPTIONAL
        ),
        scanner_available=scanner_available,
        signature_db=signature_db,
        chunk_size_bytes=settings.validator_chunk_bytes,
    )
