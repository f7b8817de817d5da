"""A logged crash shows where it happened, never the caller's secrets: structlog's dict
tracebacks used to carry every frame's locals, the Authorization metadata included."""

from __future__ import annotations

import subprocess
import sys

from tests.support.identities import API_KEYS

CRASH = f"""
import structlog
from libs.common.log import configure_logging
configure_logging("test", "info")
def handle(metadata):
    authorization = metadata["authorization"]
    raise RuntimeError("boom")
try:
    handle({{"authorization": "Bearer {API_KEYS["alice"]}"}})
except RuntimeError:
    structlog.get_logger("test").exception("rpc.crashed")
"""


def test_logged_tracebacks_carry_frames_but_no_locals():
    completed = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60)
    assert "rpc.crashed" in completed.stderr and '"name": "handle"' in completed.stderr, completed.stderr
    assert API_KEYS["alice"] not in completed.stderr
    assert "locals" not in completed.stderr
