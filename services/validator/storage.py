"""A full disk while an upload is written (spool, safe copy, quarantine) is the
server's condition, not the file's: a retryable INSUFFICIENT_STORAGE (507 with
Retry-After), never a 500."""

from __future__ import annotations

import errno

from libs.common.errors import VidsynthError

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# As the disk gate's (libs.common.backpressure), which this module does not import: the
# decode worker imports it and should not load the mesh's gRPC clients.
RETRY_AFTER_SECONDS = 30.0
# What ffmpeg prints when a write fails with ENOSPC.
FFMPEG_OUT_OF_SPACE = "No space left on device"


def out_of_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in OUT_OF_SPACE_ERRNOS


def insufficient_storage() -> VidsynthError:
    return VidsynthError(
        "INSUFFICIENT_STORAGE",
        "The server ran out of disk space while storing the upload; try again later.",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )
