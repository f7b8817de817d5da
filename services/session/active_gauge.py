"""Keeps the `vidsynth_active_sessions` gauge current: a count from the store every
few seconds, so sessions that expire (not only those created or deleted) are reflected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from libs.common.errors import VidsynthError
from libs.common.metrics import ACTIVE_SESSIONS
from services.session.store import SessionStore

log = structlog.get_logger("vidsynth.session.gauge")
REFRESH_SECONDS = 2.0


async def refresh_active_sessions(
    store: SessionStore, clock: Callable[[], float] = time.time, interval: float = REFRESH_SECONDS
) -> None:
    while True:
        try:
            ACTIVE_SESSIONS.set(await store.count_active(clock()))
        except VidsynthError as error:  # e.g. Redis briefly unreachable: keep the last value
            log.warning("session.gauge_not_refreshed", code=error.code)
        await asyncio.sleep(interval)
