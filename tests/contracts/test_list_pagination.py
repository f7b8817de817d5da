"""Every list RPC pages with the one AIP-158 helper (libs/common/pagination.py), on SQLite and
on Redis where both exist: paging through N items yields each exactly once, in the RPC's
order; the token is not a bare number; a changed token, or one from another query, is refused
with INVALID_ARGUMENT naming `page_token`. (ListCleanupTasks: tests/cleanup/test_service.py.)"""

from __future__ import annotations

import base64
import itertools
import json

import pytest

from libs.common import ids
from libs.common.errors import VidsynthError
from services.session.config import SessionSettings
from services.session.sessions import SessionManager
from services.stage_runner.job_pages import list_jobs
from services.validator import quarantine
from tests.contracts.test_job_store_contract import new_job, open_job_store
from vidsynth.v1 import stage_runner_pb2

PAGE = 3


def changed(token: str) -> str:
    """The same token with its cursor moved by hand (its digest left as it was)."""
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body[1] = [0 if isinstance(v, int | float) else v[:-1] + "x" for v in body[1]]
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def assert_refused(call) -> None:
    with pytest.raises(VidsynthError) as info:
        call()
    assert info.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in info.value.field_violations] == ["page_token"]


async def assert_refused_async(call) -> None:
    with pytest.raises(VidsynthError) as info:
        await call()
    assert info.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in info.value.field_violations] == ["page_token"]


async def page_through(fetch) -> tuple[list[list], list[str]]:
    """Every page of `fetch(token) -> (items, next_token)`, and the tokens handed out."""
    pages, tokens, token = [], [], ""
    for _ in range(100):
        items, token = await fetch(token)
        pages.append(items)
        if not token:
            return pages, tokens
        tokens.append(token)
    raise AssertionError("the pages never ended")


def assert_opaque(tokens: list[str]) -> None:
    assert tokens
    for token in tokens:
        assert not token.lstrip("-").isdigit()
        with pytest.raises(ValueError):
            int(token)


# ---- SessionService: ListSessions and ListActiveSessions -------------------------------------


@pytest.fixture
async def sessions(backend, tmp_path):
    store = backend.session_store()
    await store.open()
    clock = itertools.count(1_800_000_000.0, 0.5)  # distinct create times, and ties below
    settings = SessionSettings(session_max_per_user=100, session_max_global=1000)
    yield SessionManager(store, settings, tmp_path / "sessions", clock=lambda: next(clock))
    await store.close()


async def test_list_sessions_pages_each_session_once(sessions):
    made = [(await sessions.create("alice", f"s{i}")).session_id for i in range(7)]
    await sessions.create("bob", "not alice's")

    async def fetch(token):
        records, next_token = await sessions.list("alice", PAGE, token)
        return [r.session_id for r in records], next_token

    pages, tokens = await page_through(fetch)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [sid for page in pages for sid in page] == made[::-1]  # newest first, each once
    assert_opaque(tokens)
    await assert_refused_async(lambda: sessions.list("alice", PAGE, changed(tokens[0])))
    await assert_refused_async(lambda: sessions.list_active(PAGE, tokens[0], ""))  # another RPC's


async def test_list_active_sessions_pages_each_session_once_per_filter(sessions):
    made = {
        user: [(await sessions.create(user, "s")).session_id for _ in range(4)] for user in ("alice", "bob")
    }

    async def fetch_for(user_id):
        async def fetch(token):
            views, next_token = await sessions.list_active(2, token, user_id)
            return [v.record.session_id for v in views], next_token

        return fetch

    every, tokens = await page_through(await fetch_for(""))
    assert sorted(sid for page in every for sid in page) == sorted(made["alice"] + made["bob"])
    assert len({sid for page in every for sid in page}) == 8
    bobs, bob_tokens = await page_through(await fetch_for("bob"))
    assert [sid for page in bobs for sid in page] == made["bob"][::-1]
    assert_opaque(tokens + bob_tokens)
    await assert_refused_async(lambda: sessions.list_active(2, bob_tokens[0], "alice"))  # other filter
    await assert_refused_async(lambda: sessions.list_active(2, changed(tokens[0]), ""))
    await assert_refused_async(lambda: sessions.list("bob", 2, bob_tokens[0]))  # another RPC's


# ---- StageRunnerService: ListJobs -------------------------------------------------------------


@pytest.fixture
async def job_store(backend):
    store = open_job_store(backend)
    yield store
    await store.close()


async def test_list_jobs_pages_each_job_once_per_session(job_store):
    session_a, session_b = ids.new_id("session"), ids.new_id("session")
    made = {session_a: [], session_b: []}
    for i in range(9):
        job = new_job(session_a if i % 3 else session_b)
        await job_store.insert(job, "alice", "", "")
        made[job.session_id].append(job.job_id)
    await job_store.insert(new_job(session_a), "bob", "", "")

    def fetcher(session_id: str):
        async def fetch(token):
            request = stage_runner_pb2.ListJobsRequest(session_id=session_id, page_size=2, page_token=token)
            listed = await list_jobs(job_store, "alice", request, lambda stored: stored.job)
            return [j.job_id for j in listed.jobs], listed.next_page_token

        return fetch

    everything, tokens = await page_through(fetcher(""))
    assert [len(p) for p in everything] == [2, 2, 2, 2, 1]
    assert sorted(jid for page in everything for jid in page) == sorted(made[session_a] + made[session_b])
    assert len({jid for page in everything for jid in page}) == 9
    of_a, a_tokens = await page_through(fetcher(session_a))
    assert [jid for page in of_a for jid in page] == made[session_a]  # oldest first, each once
    assert_opaque(tokens + a_tokens)

    async def listed_with(session_id: str, token: str):
        request = stage_runner_pb2.ListJobsRequest(session_id=session_id, page_token=token)
        return await list_jobs(job_store, "alice", request, lambda stored: stored.job)

    await assert_refused_async(lambda: listed_with(session_b, a_tokens[0]))  # another session's
    await assert_refused_async(lambda: listed_with("", a_tokens[0]))
    await assert_refused_async(lambda: listed_with(session_a, changed(a_tokens[0])))
    await assert_refused_async(lambda: listed_with(session_a, "2"))  # the old bare sequence number


# ---- ValidatorService: ListQuarantine (entries on disk, no database) --------------------------


def test_list_quarantine_pages_each_entry_once(tmp_path):
    root = tmp_path / "quarantine"
    made = []
    for i in range(5):
        payload = tmp_path / f"upload{i}"
        payload.write_bytes(b"x")
        record = quarantine.QuarantineRecord(
            quarantine_id=ids.new_id("quarantine"),
            create_time=f"2026-12-07T05:00:0{i}+00:00",
            session_id="ses_x",
            user_id="alice",
            original_filename=f"{i}.jpg",
            declared_content_type="image/jpeg",
            detected_type="text/plain",
            sha256="0" * 64,
            size_bytes=1,
            signature="Eicar-Test-Signature",
            reason_code="MALWARE_DETECTED",
        )
        quarantine.quarantine(root, payload, record)
        made.append(record.quarantine_id)

    pages, tokens = [], []
    token = ""
    while True:
        records, token = quarantine.list_records(root, 2, token)
        pages.append([r.quarantine_id for r in records])
        if not token:
            break
        tokens.append(token)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [qid for page in pages for qid in page] == made[::-1]  # newest first, each once
    assert_opaque(tokens)
    assert_refused(lambda: quarantine.list_records(root, 2, changed(tokens[0])))
    assert_refused(lambda: quarantine.list_records(root, 2, made[0]))  # the old bare id
