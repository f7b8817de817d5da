"""The one child-process helper: every road out of a call ends and reaps the child's whole group."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from libs.common import children


def _running(pid: int) -> bool:
    """Alive and not a zombie. This sandbox's pid 1 does not reap orphans, so a killed
    grandchild stays listed as a zombie: dead, holding no CPU or memory."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _group_members(pgid: int) -> list[int]:
    """Running processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and _running(int(entry)):
                    members.append(int(entry))
            except ProcessLookupError:
                continue
    return members


async def _group_gone(pgid: int) -> bool:
    """SIGKILL is delivered at once but a loaded machine may take a moment to finish the exit."""
    for _ in range(100):
        if not _group_members(pgid):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_run_returns_output_and_status() -> None:
    done = await children.run(["sh", "-c", "cat; echo err >&2; exit 3"], input=b"hello", time_limit=10)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"hello", b"err\n")
    assert children.live_children() == []


async def test_timeout_kills_the_whole_group_and_reaps_it() -> None:
    script = "sleep 60 & echo $! ; wait"
    started = asyncio.get_running_loop().time()
    with pytest.raises(children.ChildTimeout):
        await children.run(["sh", "-c", script], time_limit=0.5)
    assert asyncio.get_running_loop().time() - started < 5
    assert children.live_children() == []


async def test_cancel_mid_run_leaves_no_process_of_its_group() -> None:
    pids: list[int] = []

    async def call() -> None:
        async with children.child_process(["sh", "-c", "sleep 60 & sleep 60"], stdout=children.PIPE) as proc:
            pids.append(proc.pid)
            await proc.wait()

    task = asyncio.create_task(call())
    while not pids:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the grandchild is running too
    assert len(_group_members(pids[0])) >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _group_gone(pids[0])
    assert not _running(pids[0])
    assert children.live_children() == []


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace() -> None:
    pids: list[int] = []

    async def call() -> None:
        async with children.child_process(["sh", "-c", "trap '' TERM; sleep 60"], grace=0.3) as proc:
            pids.append(proc.pid)
            await proc.wait()

    task = asyncio.create_task(call())
    while not pids:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _group_gone(pids[0])


async def test_output_over_the_limit_ends_the_child() -> None:
    with pytest.raises(children.OutputTooLarge):
        await children.run(["sh", "-c", "yes"], time_limit=10, max_output_bytes=1024 * 1024)
    assert children.live_children() == []


async def test_missing_executable_is_not_startable() -> None:
    with pytest.raises(children.ChildNotStartable):
        await children.run(["/nonexistent/vidsynth-tool"], time_limit=1)


async def test_grandchildren_left_after_a_normal_exit_are_ended() -> None:
    done = await children.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], time_limit=10)
    grandchild = int(done.stdout)
    for _ in range(50):
        if not _running(grandchild):
            break
        await asyncio.sleep(0.05)
    assert not _running(grandchild)


async def test_end_all_children_at_shutdown() -> None:
    proc = await children.start(["sleep", "60"])
    assert proc.pid in children.live_children()
    await children.end_all_children()
    assert proc.returncode == -signal.SIGTERM
    assert children.live_children() == []


def test_popen_twin_ends_its_group() -> None:
    proc = children.popen_in_group(["sh", "-c", "sleep 60 & sleep 60"])
    assert children.end_popen(proc, grace=0.2) != 0
    assert asyncio.run(_group_gone(proc.pid))
