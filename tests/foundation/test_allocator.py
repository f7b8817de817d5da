"""The malloc tuning the validator and gateway apply at start-up takes effect on this
platform (glibc), in a process of its own since it is process-wide."""

from __future__ import annotations

import subprocess
import sys


def test_large_buffers_are_kept_in_the_heap():
    code = (
        "from libs.common.allocator import keep_large_buffers_in_heap as tune\n"
        "first, again = tune(), tune()\n"
        "buffers = [bytearray(1 << 20) for _ in range(64)]\n"  # served from the heap now
        "print(first, again, len(buffers))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines()[-1].split() == ["True", "True", "64"]
