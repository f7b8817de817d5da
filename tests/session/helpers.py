"""Builders shared by the session tests."""

from __future__ import annotations

from libs.common import ids
from vidsynth.v1 import common_pb2

FACE = common_pb2.ASSET_KIND_FACE_IMAGE
VOICE = common_pb2.ASSET_KIND_VOICE_AUDIO


def asset(kind: int, stored_name: str | None = None) -> common_pb2.Asset:
    suffix = "png" if kind == FACE else "wav"
    return common_pb2.Asset(
        asset_id=ids.new_id("asset"),
        kind=kind,
        stored_name=f"{ids.new_id('asset')}.{suffix}" if stored_name is None else stored_name,
        content_type="image/png" if kind == FACE else "audio/wav",
        sha256="0" * 64,
        size_bytes=4,
    )
