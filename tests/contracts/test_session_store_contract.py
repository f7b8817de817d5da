"""One SessionStore contract, run against SQLite and Redis: what the session manager relies on."""

from __future__ import annotations

import asyncio
import math

import pytest

from libs.common import ids
from libs.common.errors import VidsynthError
from services.session.lifecycle import CREATED, NEVER, PROCESSING, READY
from services.session.records import SessionRecord
from services.session.sessions import SessionManager
from services.session.store import CreateOutcome, PageCursor
from tests.session.helpers import FACE, VOICE, asset

NOW = 1_800_000_000.0
TTL = 60.0


def record(user_id: str = "alice", created: float = NOW, **changes) -> SessionRecord:
    base = SessionRecord(
        session_id=ids.new_id("session"),
        user_id=user_id,
        state=CREATED,
        display_name="contract",
        create_time=created,
        update_time=created,
        last_active_time=created,
        expires_at=created + TTL,
    )
    return base.evolve(**changes)


@pytest.fixture
async def store(backend):
    store = backend.session_store()
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def replica(backend):
    """A second store on the same backend, as another SessionService replica would hold."""
    store = backend.session_store()
    await store.open()
    yield store
    await store.close()


async def test_round_trip_keeps_every_field(store, replica):
    original = record(
        display_name="Résumé take 2 🎬",
        active_job_id=ids.new_id("job"),
        assets=(asset(FACE), asset(VOICE)),
        update_time=NOW + 0.123456789,
        version=1,
    )
    assert await store.create_within_limits(original, 10, 100, NOW) is CreateOutcome.CREATED
    assert await replica.get(original.session_id) == original
    assert await store.get(ids.new_id("session")) is None


async def test_caps_count_live_sessions_only(store):
    for offset in range(3):
        created = record(created=NOW + offset)
        assert await store.create_within_limits(created, 3, 5, NOW + offset) is CreateOutcome.CREATED
    assert await store.create_within_limits(record(), 3, 5, NOW + 5) is CreateOutcome.USER_LIMIT
    for _ in range(2):
        assert await store.create_within_limits(record("bob"), 3, 5, NOW + 5) is CreateOutcome.CREATED
    assert await store.create_within_limits(record("carol"), 3, 5, NOW + 5) is CreateOutcome.GLOBAL_LIMIT
    # alice's first session expired at NOW + 60 and no longer counts, swept or not.
    later = NOW + TTL + 0.5
    assert await store.create_within_limits(record(created=later), 3, 5, later) is CreateOutcome.CREATED


async def test_count_active_counts_what_the_caps_count(store):
    short = record(created=NOW)
    busy = record("bob", created=NOW)
    for created in (short, busy, record("carol", created=NOW + 30)):
        assert await store.create_within_limits(created, 5, 50, created.create_time) is CreateOutcome.CREATED
    assert await store.replace(busy.evolve(state=PROCESSING, expires_at=NEVER, version=2), 1)
    assert await store.count_active(NOW + 1) == 3
    # alice's expired (swept or not), carol's is still live, bob's is processing.
    assert await store.count_active(NOW + TTL + 1) == 2
    assert await store.delete(busy.session_id)
    assert await store.count_active(NOW + TTL + 1) == 1


async def test_fifty_concurrent_creates_on_two_replicas_get_exactly_the_cap(store, replica):
    async def create(target):
        return await target.create_within_limits(record(), 10, 1000, NOW)

    outcomes = await asyncio.gather(*(create(store if i % 2 else replica) for i in range(50)))
    assert outcomes.count(CreateOutcome.CREATED) == 10
    assert outcomes.count(CreateOutcome.USER_LIMIT) == 40
    assert len(await store.list_for_user("alice", None, 100)) == 10


async def test_replace_is_compare_and_set(store, replica):
    original = record()
    await store.create_within_limits(original, 10, 100, NOW)
    moved = original.evolve(state=READY, assets=(asset(FACE), asset(VOICE)), version=2)
    assert await replica.replace(moved, expected_version=1)
    assert not await store.replace(original.evolve(display_name="stale", version=2), expected_version=1)
    assert await store.get(original.session_id) == moved
    assert not await store.replace(record(version=2), expected_version=1)  # unknown session


async def test_processing_never_expires_and_still_counts(store):
    busy = record()
    await store.create_within_limits(busy, 1, 100, NOW)
    processing = busy.evolve(state=PROCESSING, expires_at=NEVER, version=2)
    assert await store.replace(processing, 1)
    far = NOW + 10 * TTL
    assert (await store.get(busy.session_id)).expires_at == math.inf
    assert await store.expired(far, 10) == []
    assert not await store.delete_if_expired(busy.session_id, far)
    assert await store.earliest_expiry("alice", far) is None
    assert await store.create_within_limits(record(created=far), 1, 100, far) is CreateOutcome.USER_LIMIT
    # Back to idle: it expires again, a TTL after its activity.
    idle = processing.evolve(state=READY, last_active_time=far, expires_at=far + TTL, version=3)
    assert await store.replace(idle, 2)
    assert await store.earliest_expiry("alice", far) == far + TTL
    assert [r.session_id for r in await store.expired(far + TTL, 10)] == [busy.session_id]


async def test_expired_sessions_stay_readable_until_deleted(store):
    old, young = record(), record(created=NOW + 30)
    for item in (old, young):
        await store.create_within_limits(item, 10, 100, item.create_time)
    later = NOW + TTL + 1
    assert await store.get(old.session_id) == old  # expired, but there until swept
    assert [r.session_id for r in await store.expired(later, 0)] == [old.session_id]
    assert not await store.delete_if_expired(young.session_id, later)
    assert await store.delete_if_expired(old.session_id, later)
    assert not await store.delete_if_expired(old.session_id, later)
    assert await store.get(old.session_id) is None
    assert await store.earliest_expiry("alice", later) == young.expires_at
    assert await store.earliest_expiry(None, later) == young.expires_at
    assert await store.earliest_expiry("bob", later) is None


async def test_expired_lists_oldest_first_up_to_the_limit(store):
    made = [record(user, created=NOW + i) for i, user in enumerate(["alice", "bob", "carol", "alice"])]
    for item in made:
        await store.create_within_limits(item, 10, 100, item.create_time)
    everything_expired = NOW + 10 * TTL
    assert [r.session_id for r in await store.expired(everything_expired, 2)] == [
        r.session_id for r in made[:2]
    ]
    assert [r.session_id for r in await store.expired(everything_expired, 0)] == [r.session_id for r in made]
    assert [r.session_id for r in await store.expired(NOW + TTL + 1.5, 0)] == [r.session_id for r in made[:2]]


async def test_delete_with_and_without_version(store):
    first, second = record(), record()
    await store.create_within_limits(first, 1, 100, NOW)
    assert not await store.delete(first.session_id, expected_version=7)
    assert await store.delete(first.session_id, expected_version=1)
    assert not await store.delete(first.session_id)
    # The slot is free again.
    assert await store.create_within_limits(second, 1, 100, NOW) is CreateOutcome.CREATED
    assert await store.delete(second.session_id)
    assert await store.list_for_user("alice", None, 10) == []


async def test_pages_are_newest_first_complete_and_owner_scoped(store):
    # Equal create times are ordered by id, so a cursor on a tie neither skips nor repeats.
    times = [NOW + (i // 3) for i in range(11)]
    mine = [record(created=t) for t in times]
    for item in mine:
        await store.create_within_limits(item, 100, 1000, NOW)
    await store.create_within_limits(record("bob"), 100, 1000, NOW)
    expected = sorted(mine, key=lambda r: (r.create_time, r.session_id), reverse=True)

    pages, cursor = [], None
    while True:
        page = await store.list_for_user("alice", cursor, 4)
        pages.append(page)
        if len(page) < 4:
            break
        cursor = PageCursor(page[-1].create_time, page[-1].session_id)
    assert [r.session_id for page in pages for r in page] == [r.session_id for r in expected]
    assert [len(page) for page in pages] == [4, 4, 3]
    assert await store.list_for_user("dave", None, 4) == []


async def test_the_manager_on_either_store_caps_expires_and_sweeps(store, backend, tmp_path):
    now = [NOW]
    manager = SessionManager(
        store,
        backend.session_settings(
            session_max_per_user=2, session_idle_ttl_seconds=TTL, session_activity_write_interval_seconds=0
        ),
        tmp_path / "sessions",
        clock=lambda: now[0],
    )
    first = await manager.create("alice", "one")
    now[0] += 10
    await manager.create("alice", "two")
    with pytest.raises(VidsynthError) as caught:
        await manager.create("alice", "three")
    assert caught.value.code == "SESSION_LIMIT_REACHED"
    assert caught.value.retry_after_seconds == pytest.approx(TTL - 10)
    now[0] = NOW + TTL + 1
    with pytest.raises(VidsynthError) as caught:
        await manager.get("alice", first.session_id)
    assert caught.value.code == "SESSION_EXPIRED"
    swept = await manager.sweep(10)
    assert swept.session_ids == [first.session_id]
    assert not (tmp_path / "sessions" / first.session_id).exists()
    await manager.create("alice", "three")
