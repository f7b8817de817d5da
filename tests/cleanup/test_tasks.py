"""Each scheduled task on real directories: what goes, what stays."""

from __future__ import annotations

import pytest

from libs.common.clients import MeshClients
from libs.common.metrics import CLEANUP_BYTES_FREED
from services.cleanup.sessions import SessionStatus
from services.cleanup.tasks import (
    CleanupContext,
    remove_expired_outputs,
    remove_finished_work,
    remove_old_quarantine,
    remove_orphan_dirs,
    remove_stale_spools,
    run_outcome,
    sweep_expired_sessions,
)
from tests.cleanup.conftest import (
    DAY,
    StaticSessionStatus,
    age_tree,
    cleanup_settings,
    make_session,
    write_file,
)


@pytest.fixture
async def ctx(mesh_settings, sessions_dir):
    clients = MeshClients(mesh_settings)
    yield CleanupContext(cleanup_settings(), mesh_settings.data_dir, clients, StaticSessionStatus())
    await clients.close()


def _exists(root, *parts) -> bool:
    return root.joinpath(*parts).exists()


async def test_work_of_finished_jobs_goes_only_for_idle_sessions(ctx, sessions_dir):
    idle_id, idle = make_session(sessions_dir, age_seconds=DAY)
    busy_id, busy = make_session(sessions_dir, age_seconds=DAY)
    unknown_id, unknown = make_session(sessions_dir, age_seconds=DAY)
    fresh_id, fresh = make_session(sessions_dir, age_seconds=0)
    ctx.sessions.table.update(
        {idle_id: SessionStatus.IDLE, busy_id: SessionStatus.PROCESSING, fresh_id: SessionStatus.IDLE}
    )
    outcome = await run_outcome("finished_job_work", ctx, remove_finished_work)
    assert outcome.error_code == ""
    assert outcome.items_removed == 1 and outcome.bytes_freed == 4096
    assert outcome.removed == [f"sessions/{idle_id}/work/voice.wav"]
    assert not _exists(idle, "work", "voice.wav")
    assert _exists(idle, "assets", "face.png") and _exists(idle, "output", "video.mp4")
    for root in (busy, unknown, fresh):
        assert _exists(root, "work", "voice.wav")
    assert unknown_id not in ctx.sessions.table


async def test_outputs_past_retention_go_for_idle_sessions_only(ctx, sessions_dir):
    old_id, old = make_session(sessions_dir, age_seconds=8 * DAY)
    recent_id, recent = make_session(sessions_dir, age_seconds=6 * DAY)
    busy_id, busy = make_session(sessions_dir, age_seconds=30 * DAY)
    ctx.sessions.table.update(
        {old_id: SessionStatus.IDLE, recent_id: SessionStatus.IDLE, busy_id: SessionStatus.PROCESSING}
    )
    outcome = await run_outcome("output_retention", ctx, remove_expired_outputs)
    assert outcome.removed == [f"sessions/{old_id}/output/video.mp4"]
    assert _exists(old, "assets", "face.png")
    assert _exists(recent, "output", "video.mp4") and _exists(busy, "output", "video.mp4")


async def test_quarantine_older_than_retention_goes(ctx):
    old = write_file(ctx.quarantine_dir / "qua_old", 1000, age_seconds=31 * DAY)
    young = write_file(ctx.quarantine_dir / "qua_young", 1000, age_seconds=29 * DAY)
    outcome = await run_outcome("quarantine", ctx, remove_old_quarantine)
    assert (outcome.items_removed, outcome.bytes_freed) == (1, 1000)
    assert not old.exists() and young.exists()


async def test_stale_spools_go_fresh_ones_stay(ctx, sessions_dir):
    stale_tmp = write_file(ctx.tmp_dir / "upload-1.part", 500, age_seconds=2 * 3600)
    fresh_tmp = write_file(ctx.tmp_dir / "upload-2.part", 500)
    session_id, root = make_session(sessions_dir, age_seconds=2 * 3600)
    stray = write_file(root / ".spool-abc", 700, age_seconds=2 * 3600)
    outcome = await run_outcome("stale_spools", ctx, remove_stale_spools)
    assert sorted(outcome.removed) == sorted(["tmp/upload-1.part", f"sessions/{session_id}/.spool-abc"])
    assert outcome.bytes_freed == 1200
    assert not stale_tmp.exists() and not stray.exists() and fresh_tmp.exists()
    # Spools are the only thing this task touches inside a session.
    assert all(_exists(root, sub) for sub in ("assets/face.png", "work/voice.wav", "output/video.mp4"))


async def test_orphan_dirs_need_proof_and_age(ctx, sessions_dir):
    stray_old = sessions_dir / "not-a-session"
    write_file(stray_old / "junk.bin", 300, age_seconds=2 * DAY)
    stray_old_stamp = write_file(sessions_dir / "stray-file", 100, age_seconds=2 * DAY)
    stray_young = sessions_dir / "also-not-a-session"
    write_file(stray_young / "junk.bin", 300)
    absent_id, absent = make_session(sessions_dir, age_seconds=2 * DAY)
    unknown_id, unknown = make_session(sessions_dir, age_seconds=2 * DAY)
    age_tree(stray_old, 2 * DAY)
    age_tree(absent, 2 * DAY)
    ctx.sessions.table[absent_id] = SessionStatus.ABSENT
    outcome = await run_outcome("orphan_dirs", ctx, remove_orphan_dirs)
    assert sorted(outcome.removed) == sorted(
        ["sessions/not-a-session", "sessions/stray-file", f"sessions/{absent_id}"]
    )
    assert outcome.bytes_freed == 300 + 100 + 3 * 4096
    assert not stray_old.exists() and not stray_old_stamp.exists() and not absent.exists()
    assert stray_young.exists() and unknown.exists()
    assert unknown_id not in ctx.sessions.table


async def test_outcome_feeds_the_bytes_freed_counter(ctx):
    write_file(ctx.quarantine_dir / "qua_old", 2048, age_seconds=40 * DAY)
    before = CLEANUP_BYTES_FREED.labels("quarantine")._value.get()
    await run_outcome("quarantine", ctx, remove_old_quarantine)
    assert CLEANUP_BYTES_FREED.labels("quarantine")._value.get() - before == 2048


async def test_a_failing_task_reports_its_code(ctx):
    # No SessionService is running in this test: the sweep fails, the outcome says why.
    outcome = await run_outcome("expired_sessions", ctx, sweep_expired_sessions)
    assert outcome.error_code == "SERVICE_UNAVAILABLE"
    assert outcome.items_removed == 0 and outcome.ended_at is not None
