"""The bounds of one photo's decode, handed to its worker process as plain JSON (the
worker does not read the service's settings: tests and operators configure the
service, and the worker must check exactly what the service was told)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DecodeLimits:
    min_side: int
    max_side: int
    max_pixels: int
    max_scans: int
    max_expansion: float
    expansion_free_bytes: int
    face_min_size_ratio: float
    cpu_seconds: float
    memory_bytes: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DecodeLimits:
        return cls(**data)
