"""Fair shares of the run slots between users: who runs next, and the forecast of every
waiting job's place in line and ETA that follows from it.

The rule (the local queue, the Redis queue and the forecasts all use it):
- each user's waiting jobs go in their arrival order (FIFO within a user);
- across users, the next job is the oldest waiting job of the user with the fewest jobs
  running now; among those, of the user served longest ago (never served: first), then
  the job that arrived first; users already at their per-user running cap are skipped.
That is round-robin over users, weighted by the slots they hold. So another user's job
is next in line whatever one user has queued: when a slot frees, its user runs no more
jobs than the heavy one and was served before the heavy user's last start.
Jobs resumed after a restart go first.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A waiting job, listed in arrival order."""

    job_id: str
    user_id: str
    seconds: float = 0.0  # its estimated run time, for forecasts
    resumed: bool = False  # was running before a restart: goes first


@dataclass(frozen=True)
class Running:
    user_id: str
    remaining_seconds: float


@dataclass(frozen=True)
class Forecast:
    position: int  # 1-based place in line
    start_seconds: float  # from now until it starts
    eta_seconds: float  # from now until it finishes


NEVER_SERVED = -1


def next_to_run(
    waiting: Sequence[Waiting],
    running: Mapping[str, int],
    per_user_cap: int | None,
    served: Mapping[str, int],
) -> Waiting | None:
    """The job to start in a free slot now; None when every waiting user is at the cap.
    `served`: user -> serial of their last start (larger is more recent)."""
    heads: dict[str, Waiting] = {}
    for job in waiting:
        heads.setdefault(job.user_id, job)
    arrival = {job.job_id: i for i, job in enumerate(waiting)}
    best: tuple | None = None
    for user_id, job in heads.items():
        count = running.get(user_id, 0)
        if per_user_cap is not None and count >= per_user_cap and not job.resumed:
            continue
        key = (not job.resumed, count, served.get(user_id, NEVER_SERVED), arrival[job.job_id])
        if best is None or key < best[0]:
            best = (key, job)
    return best[1] if best else None


def forecast(
    waiting: Sequence[Waiting],
    running: Sequence[Running],
    slots: int,
    per_user_cap: int | None,
    served: Mapping[str, int],
) -> dict[str, Forecast]:
    """Every waiting job's place in line and ETA, by playing the rule forward over the
    estimated run times: a slot frees when its job's time is up, the rule picks who
    takes it (waiting for a capped user's own job to end if need be)."""
    now = 0.0
    free_at = sorted(r.remaining_seconds for r in running)[: max(slots, 1)]
    free_at += [0.0] * max(0, slots - len(free_at))
    heapq.heapify(free_at)
    # (finish time, user) of every job running at some point of the play.
    busy = [(r.remaining_seconds, r.user_id) for r in running]
    left = list(waiting)
    served = dict(served)
    serial = max(served.values(), default=NEVER_SERVED)
    result: dict[str, Forecast] = {}
    while left:
        now = max(now, heapq.heappop(free_at))
        while True:
            counts = Counter(user for finish, user in busy if finish > now)
            chosen = next_to_run(left, counts, per_user_cap, served)
            if chosen is not None:
                break
            # Every waiting user is at the cap: the slot waits for one of their jobs to end.
            now = min(finish for finish, user in busy if finish > now)
        finish = now + chosen.seconds
        serial += 1
        served[chosen.user_id] = serial
        busy.append((finish, chosen.user_id))
        heapq.heappush(free_at, finish)
        left.remove(chosen)
        result[chosen.job_id] = Forecast(len(result) + 1, now, finish)
    return result
