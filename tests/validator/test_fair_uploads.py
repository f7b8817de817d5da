"""Issue 15, item 3 (uploads) at the validator: a user holds at most their share of the
upload slots, and an upload must keep a minimum average rate (after a grace period)
and arrive within a total deadline, so trickling uploads cannot hold slots."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from libs.common.errors import VidsynthError
from libs.common.rpc_status import error_from_rpc_error
from services.validator.admission import UploadSlots
from services.validator.pacing import TransferPace
from tests.support.identities import user_metadata
from tests.validator.conftest import Mesh, validator_settings_for
from tests.validator.corpus import FACE, PORTRAIT, VOICE_KIND
from tests.validator.uploading import eventually, grpc_upload
from vidsynth.v1 import validator_pb2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pace_allows_the_grace_then_the_bytes_worth_of_time():
    clock = FakeClock()
    pace = TransferPace(
        idle_seconds=60, min_bytes_per_second=1000, grace_seconds=2, max_seconds=100, clock=clock
    )
    assert pace.next_wait() == (2.0, "rate")
    pace.record(3000)  # three seconds' worth at the floor
    clock.now += 1
    assert pace.next_wait() == (4.0, "rate")
    clock.now += 4.5
    refusal = pace.refusal(pace.next_wait()[1])
    assert pace.next_wait()[0] < 0 and refusal.code == "UPLOAD_TOO_SLOW" and refusal.retry_after_seconds


def test_pace_idle_and_total_bounds():
    clock = FakeClock()
    pace = TransferPace(idle_seconds=5, min_bytes_per_second=0, grace_seconds=0, max_seconds=12, clock=clock)
    assert pace.next_wait() == (5, "idle")
    assert pace.refusal("idle").code == "DEADLINE_EXCEEDED"
    clock.now += 9
    assert pace.next_wait() == (3, "total")
    assert pace.refusal("total").code == "UPLOAD_TOO_SLOW"


def test_slots_per_user_then_global():
    slots = UploadSlots(total=3, per_user=2)
    with slots.hold("mallory"), slots.hold("mallory"):
        with pytest.raises(VidsynthError) as refused, slots.hold("mallory"):
            pass
        assert refused.value.code == "TOO_MANY_UPLOADS" and refused.value.retry_after_seconds
        with slots.hold("alice"):
            with pytest.raises(VidsynthError) as full, slots.hold("bob"):
                pass
            assert full.value.code == "RATE_LIMITED" and full.value.retry_after_seconds
    assert slots.active == 0 and slots.held_by("mallory") == 0


def stalled_requests(session_id: str, every: float, count: int = 1000):
    """A voice upload that sends one byte every `every` seconds."""

    async def requests():
        yield validator_pb2.ValidateUploadRequest(
            header=validator_pb2.UploadHeader(
                session_id=session_id, kind=VOICE_KIND, original_filename="v.wav"
            )
        )
        for _ in range(count):
            await asyncio.sleep(every)
            yield validator_pb2.ValidateUploadRequest(chunk=b"R")

    return requests()


async def refusal_of(call) -> VidsynthError:
    with pytest.raises(grpc.RpcError) as caught:
        await call
    return error_from_rpc_error(caught.value)


async def test_trickling_uploads_are_cut_and_cannot_crowd_out_another_user(in_process_mesh, clamd_address):
    # Bob writes a byte every 6 s; his uploads are cut 7 s in (once the validator has
    # stopped draining them, a second later), far from his next write: a write racing the
    # end of the call fails on the client's side as a bare INTERNAL (grpc/grpc#36066).
    grace, every = 7.0, 6.0
    settings = validator_settings_for(
        clamd_address,
        validator_max_concurrent_uploads=3,
        validator_max_concurrent_uploads_per_user=2,
        validator_upload_rate_grace_seconds=grace,
    )
    mesh = await Mesh(in_process_mesh).start(settings)
    try:
        alice_session = await mesh.new_session("alice")
        bob_session = await mesh.new_session("bob")
        photo = PORTRAIT.read_bytes()
        started = time.monotonic()
        _, code = await grpc_upload(mesh, alice_session, FACE, "p.jpg", photo, user="alice")
        baseline = time.monotonic() - started
        assert code is None, code

        trickles = [
            asyncio.ensure_future(
                refusal_of(
                    mesh.validator.ValidateUpload(
                        stalled_requests(bob_session, every), metadata=user_metadata("bob")
                    )
                )
            )
            for _ in range(8)
        ]
        # Two are admitted (bob's share); the other six are refused at once (the validator
        # stops draining a refused stream at its first pause).
        assert await eventually(lambda: sum(t.done() for t in trickles) >= 6, grace - 2)
        refused = [t.result() for t in trickles if t.done()]
        trickling = [t for t in trickles if not t.done()]
        assert [e.code for e in refused] == ["TOO_MANY_UPLOADS"] * 6 and len(trickling) == 2, refused
        assert all(e.retry_after_seconds for e in refused)

        # Alice is not crowded out while bob's two trickle (they still hold their slots).
        started = time.monotonic()
        response, code = await grpc_upload(mesh, alice_session, FACE, "p.jpg", photo, user="alice")
        during = time.monotonic() - started
        assert code is None and response.report.accepted, code
        assert not any(t.done() for t in trickling), "bob's uploads ended before alice's was checked"
        assert during < baseline * 4 + 5.0, (baseline, during)

        # The admitted two are cut once the grace is over (a byte every 6 s is far below the floor).
        outcomes = await asyncio.wait_for(asyncio.gather(*trickling), grace + 10)
        assert [e.code for e in outcomes] == ["UPLOAD_TOO_SLOW"] * 2, [(e.code, e.detail) for e in outcomes]
        # And their slots are free again.
        response, code = await grpc_upload(mesh, bob_session, FACE, "p.jpg", photo, user="bob")
        assert code is None, code
    finally:
        await mesh.close()
