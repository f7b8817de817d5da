"""Resources one user owns on the reliability mesh, for the abuse cases to aim at."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.reliability.faults import FACE, VOICE
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient

# Path segments that try to leave their directory or smuggle syntax into a lookup.
HOSTILE_IDS = [
    "..",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "ses_../../x",
    "ses_' OR '1'='1",
    'ses_"; DROP TABLE sessions; --',
    "ses_%00",
    "ses_\u202e",
    "ses_" + "a" * 5000,
    "*",
    "ses_${jndi:ldap://x}",
]
HOSTILE_NAMES = ["../video", "..%2Fvideo", "video%00.mp4", "/etc/passwd", "video;rm -rf /", "%2e%2e%2fscript"]


@dataclass(frozen=True)
class Owned:
    session_id: str
    job_id: str


async def _make(mesh: MeshProcess, user: str) -> Owned:
    async with GatewayClient(mesh.url, API_KEYS[user]) as client:
        session_id = (await client.create_session("owned"))["session_id"]
        await client.upload(session_id, "face", FACE)
        await client.upload(session_id, "voice", VOICE)
        job = await client.start_job(session_id, {"script_text": "Mine, not yours."})
        end = await client.wait_for_job(session_id, job["job_id"])
        assert end["type"] == "job.completed", end
        return Owned(session_id, job["job_id"])


def make_owned(mesh: MeshProcess, user: str = "alice") -> Owned:
    """A session with both uploads and a completed job, owned by `user`."""
    mesh.wait_ready(90)
    return asyncio.run(_make(mesh, user))
