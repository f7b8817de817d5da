"""The session manager over a real SQLite store, with a clock the test moves."""

from __future__ import annotations

import asyncio
import stat

import pytest

from libs.common import ids
from libs.common.errors import VidsynthError
from services.session.config import SessionSettings
from services.session.lifecycle import COMPLETED, CREATED, EXPIRED, PROCESSING, READY
from services.session.sessions import SessionManager
from services.session.store import SqliteSessionStore
from tests.session.helpers import FACE, VOICE, asset


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path):
    store = SqliteSessionStore(tmp_path / "session.sqlite3")
    await store.open()
    yield store
    await store.close()


def make_manager(store, tmp_path, clock, **overrides) -> SessionManager:
    settings = SessionSettings(
        **{
            "session_max_per_user": 3,
            "session_max_global": 5,
            "session_idle_ttl_seconds": 60,
            "session_processing_ttl_seconds": 600,
            "session_activity_write_interval_seconds": 0,
            **overrides,
        }
    )
    return SessionManager(store, settings, tmp_path / "sessions", clock=clock)


@pytest.fixture
def manager(store, tmp_path, clock) -> SessionManager:
    return make_manager(store, tmp_path, clock)


async def expect(code: str, call) -> VidsynthError:
    with pytest.raises(VidsynthError) as info:
        await call
    assert info.value.code == code
    return info.value


async def test_create_makes_private_dirs_and_delete_removes_them(manager, tmp_path):
    record = await manager.create("alice", "  first  ")
    assert ids.is_valid_id("session", record.session_id)
    assert record.display_name == "first"
    root = tmp_path / "sessions" / record.session_id
    for sub in (root, root / "assets", root / "work", root / "output"):
        assert stat.S_IMODE(sub.stat().st_mode) == 0o700
    (root / "output" / "video.mp4").write_bytes(b"x" * 1000)
    assert await manager.delete("alice", record.session_id, force=False) == 1000
    assert not root.exists()
    await expect("SESSION_NOT_FOUND", manager.get("alice", record.session_id))


async def test_display_name_is_checked(manager):
    await expect("INVALID_ARGUMENT", manager.create("alice", "x" * 101))
    await expect("INVALID_ARGUMENT", manager.create("alice", "bad\x00name"))


async def test_idle_ttl_expires_and_owner_calls_refresh_it(manager, clock):
    record = await manager.create("alice", "")
    clock.now += 50
    await manager.get("alice", record.session_id)  # activity refreshes the idle TTL
    clock.now += 50
    touched = await manager.touch("alice", record.session_id)
    assert touched.last_active_time == clock.now
    clock.now += 61
    await expect("SESSION_EXPIRED", manager.get("alice", record.session_id))
    await expect("SESSION_EXPIRED", manager.touch("alice", record.session_id))
    await expect("SESSION_EXPIRED", manager.register_asset("alice", record.session_id, asset(FACE)))
    listed, _ = await manager.list("alice", 0, "")
    assert [manager.to_proto(r).state for r in listed] == [EXPIRED]


async def test_processing_sessions_never_expire_or_get_swept(manager, clock):
    record = await manager.create("alice", "")
    await manager.register_asset("alice", record.session_id, asset(FACE))
    await manager.register_asset("alice", record.session_id, asset(VOICE))
    job_id = ids.new_id("job")
    await manager.update_state("alice", record.session_id, PROCESSING, job_id)
    clock.now += 10_000  # past both TTLs
    assert (await manager.sweep(0)).session_ids == []
    current = await manager.get("alice", record.session_id)
    assert current.state == PROCESSING
    assert current.active_job_id == job_id
    done = await manager.update_state("", record.session_id, COMPLETED, job_id)
    assert done.active_job_id == ""
    clock.now += 61
    swept = await manager.sweep(0)
    assert swept.session_ids == [record.session_id]


async def test_sweep_removes_rows_and_dirs_and_counts_bytes(manager, clock, tmp_path):
    old = await manager.create("alice", "")
    (tmp_path / "sessions" / old.session_id / "work" / "a.bin").write_bytes(b"y" * 321)
    clock.now += 30
    fresh = await manager.create("bob", "")
    clock.now += 31
    result = await manager.sweep(0)
    assert result.session_ids == [old.session_id]
    assert result.bytes_freed == 321
    assert not (tmp_path / "sessions" / old.session_id).exists()
    await expect("SESSION_NOT_FOUND", manager.get("alice", old.session_id))
    assert (await manager.get("bob", fresh.session_id)).session_id == fresh.session_id


async def test_sweep_limit(manager, clock):
    for _ in range(3):
        await manager.create("alice", "")
    clock.now += 61
    assert len((await manager.sweep(2)).session_ids) == 2
    assert len((await manager.sweep(2)).session_ids) == 1


async def test_user_and_global_caps_with_retry_hint(manager, clock):
    for _ in range(3):
        await manager.create("alice", "")
        clock.now += 10
    error = await expect("SESSION_LIMIT_REACHED", manager.create("alice", ""))
    # The oldest of alice's sessions expires 60 s after it was made, 30 s ago.
    assert error.retry_after_seconds == pytest.approx(30.0)
    assert error.metadata == {"scope": "user", "limit": "3"}  # session_max_per_user
    await manager.create("bob", "")
    await manager.create("bob", "")
    error = await expect("SESSION_LIMIT_REACHED", manager.create("carol", ""))
    assert error.metadata == {"scope": "global", "limit": "5"}  # session_max_global
    clock.now += 31  # alice's first session expires and no longer counts
    await manager.create("alice", "")


async def test_concurrent_creates_never_overshoot_the_cap(store, tmp_path, clock):
    manager = make_manager(store, tmp_path, clock, session_max_per_user=10, session_max_global=100)
    results = await asyncio.gather(*(manager.create("alice", "") for _ in range(50)), return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, VidsynthError)]
    assert len(created) == 10
    assert len(refused) == 40
    assert {e.code for e in refused} == {"SESSION_LIMIT_REACHED"}


async def test_register_asset_replaces_same_kind_and_reaches_ready(manager, tmp_path):
    record = await manager.create("alice", "")
    assets_dir = tmp_path / "sessions" / record.session_id / "assets"
    first = asset(FACE)
    (assets_dir / first.stored_name).write_bytes(b"old")
    after_face = await manager.register_asset("alice", record.session_id, first)
    assert after_face.state == CREATED
    second = asset(FACE)
    (assets_dir / second.stored_name).write_bytes(b"new")
    after_second = await manager.register_asset("alice", record.session_id, second)
    assert [a.asset_id for a in after_second.assets] == [second.asset_id]
    assert not (assets_dir / first.stored_name).exists()
    assert (assets_dir / second.stored_name).exists()
    ready = await manager.register_asset("alice", record.session_id, asset(VOICE))
    assert ready.state == READY
    assert {a.kind for a in ready.assets} == {FACE, VOICE}


async def test_concurrent_face_and_voice_both_land(manager):
    record = await manager.create("alice", "")
    await asyncio.gather(
        manager.register_asset("alice", record.session_id, asset(FACE)),
        manager.register_asset("alice", record.session_id, asset(VOICE)),
    )
    current = await manager.get("alice", record.session_id)
    assert current.state == READY
    assert len(current.assets) == 2


async def test_asset_checks(manager):
    record = await manager.create("alice", "")
    for bad in ("../escape.png", ".hidden", "a/b.png", "", "x" * 200):
        await expect("INVALID_ARGUMENT", manager.register_asset("alice", record.session_id, asset(FACE, bad)))
    unknown_kind = asset(FACE)
    unknown_kind.kind = 0
    await expect("INVALID_ARGUMENT", manager.register_asset("alice", record.session_id, unknown_kind))
    bad_id = asset(FACE)
    bad_id.asset_id = "ast_nope"
    await expect("INVALID_ID", manager.register_asset("alice", record.session_id, bad_id))
    await expect("SESSION_NOT_FOUND", manager.register_asset("bob", record.session_id, asset(FACE)))
    await expect("SESSION_NOT_FOUND", manager.register_asset("", record.session_id, asset(FACE)))


async def test_transitions_through_a_job(manager):
    record = await manager.create("alice", "")
    job = ids.new_id("job")
    await expect("INVALID_SESSION_STATE", manager.update_state("alice", record.session_id, PROCESSING, job))
    await manager.register_asset("alice", record.session_id, asset(FACE))
    await manager.register_asset("alice", record.session_id, asset(VOICE))
    await expect("INVALID_ID", manager.update_state("alice", record.session_id, PROCESSING, ""))
    processing = await manager.update_state("alice", record.session_id, PROCESSING, job)
    assert processing.active_job_id == job
    # The same job saying so again (a resumed runner) is fine; another job is not.
    await manager.update_state("alice", record.session_id, PROCESSING, job)
    await expect(
        "INVALID_SESSION_STATE",
        manager.update_state("alice", record.session_id, PROCESSING, ids.new_id("job")),
    )
    await expect("INVALID_SESSION_STATE", manager.register_asset("alice", record.session_id, asset(FACE)))
    await expect("INVALID_SESSION_STATE", manager.delete("alice", record.session_id, force=False))
    await expect(
        "INVALID_SESSION_STATE",
        manager.update_state("alice", record.session_id, COMPLETED, ids.new_id("job")),
    )
    cancelled = await manager.update_state("alice", record.session_id, READY, job)
    assert cancelled.state == READY
    await expect("INVALID_SESSION_STATE", manager.update_state("alice", record.session_id, COMPLETED, ""))
    await expect("INVALID_SESSION_STATE", manager.update_state("alice", record.session_id, EXPIRED, ""))
    await expect("INVALID_SESSION_STATE", manager.update_state("alice", record.session_id, CREATED, ""))
    await expect("INVALID_ARGUMENT", manager.update_state("alice", record.session_id, 0, ""))
    await expect("SESSION_NOT_FOUND", manager.update_state("bob", record.session_id, PROCESSING, job))


class UnreachableRunner:
    """Peers whose runner cannot be told: the delete still goes ahead."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str]] = []
        self.events_deleted: list[str] = []

    async def cancel_job(self, job_id: str, owner: str) -> bool:
        self.cancelled.append((job_id, owner))
        return False

    async def delete_events(self, session_id: str, expect_late: bool) -> int:
        self.events_deleted.append(session_id)
        return 0


async def test_force_delete_cancels_the_running_job(store, tmp_path, clock):
    peers = UnreachableRunner()
    manager = SessionManager(store, SessionSettings(), tmp_path / "sessions", peers=peers, clock=clock)
    record = await manager.create("alice", "")
    await manager.register_asset("alice", record.session_id, asset(FACE))
    await manager.register_asset("alice", record.session_id, asset(VOICE))
    job = ids.new_id("job")
    await manager.update_state("alice", record.session_id, PROCESSING, job)
    await manager.delete("alice", record.session_id, force=True)
    assert peers.cancelled == [(job, "alice")]
    assert peers.events_deleted == [record.session_id]
    await expect("SESSION_NOT_FOUND", manager.get("alice", record.session_id))


async def test_pagination_is_owner_scoped_and_complete(manager, store, clock):
    for _ in range(3):
        await manager.create("alice", "")
        clock.now += 1
    mine = [r.session_id for r in await store.list_for_user("alice", None, 10)]
    await manager.create("bob", "")
    page1, token = await manager.list("alice", 2, "")
    assert token
    page2, token2 = await manager.list("alice", 2, token)
    assert token2 == ""
    assert [r.session_id for r in page1 + page2] == mine
    # Bob replaying alice's token sees only his own sessions (none older than the cursor).
    theirs, _ = await manager.list("bob", 2, token)
    assert all(r.user_id == "bob" for r in theirs)
    await expect("INVALID_ARGUMENT", manager.list("alice", 2, "not-a-token"))
    await expect("INVALID_ARGUMENT", manager.list("alice", -1, ""))


async def test_malformed_ids_are_refused_before_any_lookup(manager):
    for bad in ("", "../../etc/passwd", "ses_", "ses_" + "g" * 24, "job_" + "0" * 24):
        await expect("INVALID_ID", manager.get("alice", bad))
        await expect("INVALID_ID", manager.delete("alice", bad, force=False))


async def test_concurrent_deletes_free_once(manager):
    record = await manager.create("alice", "")
    results = await asyncio.gather(
        manager.delete("alice", record.session_id, force=False),
        manager.delete("alice", record.session_id, force=False),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["VidsynthError", "int"]
    assert next(r for r in results if isinstance(r, VidsynthError)).code == "SESSION_NOT_FOUND"


async def test_concurrent_reads_of_one_session_all_succeed_with_one_activity_write(manager, clock):
    record = await manager.create("alice", "")
    clock.now += 30
    reads = await asyncio.gather(*(manager.get("alice", record.session_id) for _ in range(32)))
    assert {r.last_active_time for r in reads} == {clock.now}
    assert {r.version for r in reads} == {record.version + 1}


async def test_concurrent_touches_all_succeed(manager, clock):
    record = await manager.create("alice", "")
    clock.now += 30
    touched = await asyncio.gather(*(manager.touch("alice", record.session_id) for _ in range(32)))
    assert {t.last_active_time for t in touched} == {clock.now}
