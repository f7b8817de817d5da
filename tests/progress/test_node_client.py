"""Cross-language check: a Node.js @grpc/grpc-js client that loads protos/ directly subscribes."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from tests.support.identities import API_KEYS
from tests.support.synthetic_events import job_events, publish

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


async def run_node(*args: str) -> tuple[int, list[dict]]:
    node = shutil.which("node")
    assert node, "node is required for the cross-language check (scripts/setup installs it)"
    assert (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run: npm ci --prefix tests/node"
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "subscribe.js"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert process.returncode in (0, 2), stderr.decode()
    return process.returncode, lines


async def test_node_client_replays_and_follows_live_events(progress_mesh):
    session_id = await progress_mesh.create_session("alice")
    job = job_events()
    await publish(progress_mesh.channel, session_id, job[:6], batch_size=6)
    node = asyncio.create_task(
        run_node(
            "--address",
            progress_mesh.progress_address,
            "--api-key",
            API_KEYS["alice"],
            "--session",
            session_id,
            "--until-terminal",
        )
    )
    # Live events once the Node client is subscribed (6 replayed, then these).
    broker = progress_mesh.event_log.broker
    for _ in range(800):
        if broker.subscriber_count(session_id):
            break
        await asyncio.sleep(0.025)
    await publish(progress_mesh.channel, session_id, job[6:], batch_size=4)
    code, lines = await node
    assert code == 0
    assert [line["seq"] for line in lines] == list(range(1, len(job) + 1))
    assert lines[0]["type"] == "EVENT_TYPE_JOB_QUEUED"
    assert lines[-1]["type"] == "EVENT_TYPE_JOB_COMPLETED"
    assert lines[3]["stage"] == "STAGE_SCRIPT"
    assert {line["session_id"] for line in lines} == {session_id}


async def test_node_client_sees_not_found_for_another_users_session(progress_mesh):
    session_id = await progress_mesh.create_session("alice")
    code, lines = await run_node(
        "--address", progress_mesh.progress_address, "--api-key", API_KEYS["bob"], "--session", session_id
    )
    assert code == 2
    assert [line["error"]["status"] for line in lines] == ["NOT_FOUND"]
