"""The words for the kinds of asset a session holds, as logs, URLs and the HTTP API spell
them (`/v1/sessions/{id}/assets/face`), against the proto's AssetKind values."""

from __future__ import annotations

from vidsynth.v1 import common_pb2

FACE = common_pb2.ASSET_KIND_FACE_IMAGE
VOICE = common_pb2.ASSET_KIND_VOICE_AUDIO
KIND_NAMES: dict[int, str] = {FACE: "face", VOICE: "voice"}
