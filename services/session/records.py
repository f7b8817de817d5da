"""The stored form of a session and its conversion to the `Session` message."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from google.protobuf import duration_pb2, timestamp_pb2

from services.session.lifecycle import EXPIRED, TtlPolicy
from vidsynth.v1 import common_pb2, session_pb2


@dataclass(frozen=True)
class SessionRecord:
    """One session row. `expires_at` is the sweep deadline (infinite while processing);
    `version` increases on every write so updates are compare-and-set."""

    session_id: str
    user_id: str
    state: int
    display_name: str
    create_time: float
    update_time: float
    last_active_time: float
    expires_at: float
    active_job_id: str = ""
    assets: tuple[common_pb2.Asset, ...] = field(default_factory=tuple)
    version: int = 1

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now

    def evolve(self, **changes) -> SessionRecord:
        return dataclasses.replace(self, **changes)


def encode_assets(assets: tuple[common_pb2.Asset, ...]) -> bytes:
    return session_pb2.Session(assets=assets).SerializeToString()


def decode_assets(blob: bytes | None) -> tuple[common_pb2.Asset, ...]:
    return tuple(session_pb2.Session.FromString(blob or b"").assets)


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(round(seconds * 1e6))
    return stamp


def to_proto(record: SessionRecord, ttl: TtlPolicy, now: float) -> session_pb2.Session:
    """The message a caller sees; an expired session shows as EXPIRED until swept."""
    state = EXPIRED if record.is_expired(now) else record.state
    return session_pb2.Session(
        session_id=record.session_id,
        user_id=record.user_id,
        state=state,
        display_name=record.display_name,
        assets=sorted(record.assets, key=lambda a: a.kind),
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        last_active_time=timestamp(record.last_active_time),
        expire_time=timestamp(ttl.expire_time(record.state, record.last_active_time)),
        active_job_id=record.active_job_id,
    )


def active_to_proto(
    record: SessionRecord, disk_used_bytes: int, ttl: TtlPolicy, now: float
) -> session_pb2.ActiveSession:
    """The operators' view: the session, its age and the disk its files use."""
    age = duration_pb2.Duration()
    age.FromMicroseconds(max(0, round((now - record.create_time) * 1e6)))
    return session_pb2.ActiveSession(
        session=to_proto(record, ttl, now), age=age, disk_used_bytes=disk_used_bytes
    )
