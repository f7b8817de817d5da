"""glibc malloc tuned for processes that pass MB-sized buffers along (upload relays).

By default glibc gives every allocation of 128 KiB or more its own fresh mapping and
unmaps it again when it is freed. So every 1 MiB chunk an upload passes through (HTTP
body, protobuf message, gRPC slice, spool write) faults its 256 pages in anew at each
copy: about 0.7 ms per MB copied here, twenty times the copy itself. Served from the
heap, with freed memory kept for reuse up to a bound, the same copies cost ~0.04 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import structlog

log = structlog.get_logger("vidsynth.allocator")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap; larger ones (decoded photos) still get their
# own mapping and go back to the system when freed.
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
# Free memory at the top of the heap beyond this is returned to the system.
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


@functools.cache
def keep_large_buffers_in_heap() -> bool:
    """Once per process, best effort (glibc only): True when the thresholds took effect."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )
    log.debug("allocator.tuned", applied=applied)
    return applied
