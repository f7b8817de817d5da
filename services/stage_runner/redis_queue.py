"""The shared job queue of several stage_runner replicas on Redis.

- The waiting room: `waiting` (job ids by arrival) and `waiting_users` (job id -> user).
  StartJob on any replica adds a job there (`add`).
- A replica with a free run slot takes the next job by the fair rule of fair_share.py in one
  Lua script (`pick`): each user's oldest waiting job, the user with the fewest jobs running
  across the cluster first (ties: arrival), users at their running cap skipped. The script
  appends the job to the stream (XADD) and delivers it to the caller in the same step
  (XREADGROUP), so from then on the job is in the caller's pending list.
- Running jobs are exactly the consumer group's pending entries, each carrying its user:
  the per-user running counts are read from there, with no counter to drift.
- While a job runs, its holder heartbeats the entry (XCLAIM ... JUSTID by the holder only).
- A replica that died stops heartbeating: once an entry has been idle longer than the
  reclaim time, any replica takes it over with XAUTOCLAIM and resumes the job from its last
  completed-stage checkpoint on the shared data dir.
- A finished job's entry is acknowledged and deleted.
- Whatever may let a waiting job start (a job added, a job finished) appends to the `ticks`
  stream, which idle replicas block on (XREAD), so one of them picks at once.
- The job hash's `owner` field says which replica runs a job; `cancel` asks the owner
  to stop it (checked on every heartbeat), so CancelJob works from any replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ResponseError

from services.stage_runner.fair_share import Waiting
from services.stage_runner.redis_store import JobKeys
from vidsynth.v1 import common_pb2

GROUP = "runners"
TICKS_KEPT = 100

# KEYS: waiting, waiting_users, arrival counter, ticks. ARGV: job id, user.
_ADD = f"""
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', {TICKS_KEPT}, '*', 'tick', '1')
return 1
"""

# KEYS: stream, waiting, waiting_users, ticks, served, serial. ARGV: group, consumer, running
# cap per user. -> {last tick id} when nothing may start, else {last tick id, entry id, job id}.
_PICK = """
local running = {}
for _, pending in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000)) do
  local entry = redis.call('XRANGE', KEYS[1], pending[1], pending[1])[1]
  if entry then
    for i = 1, #entry[2], 2 do
      if entry[2][i] == 'user' then running[entry[2][i + 1]] = (running[entry[2][i + 1]] or 0) + 1 end
    end
  end
end
-- Each user's oldest waiting job; the fewest running first, then served longest ago
-- (never: -1), then arrival (the iteration order).
local cap = tonumber(ARGV[3])
local seen, chosen, chosen_user, best_count, best_served = {}, nil, nil, nil, nil
for _, job in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local user = redis.call('HGET', KEYS[3], job) or ''
  if not seen[user] then
    seen[user] = true
    local count = running[user] or 0
    local served = tonumber(redis.call('HGET', KEYS[5], user) or '-1')
    if count < cap and (chosen == nil or count < best_count or (count == best_count and served < best_served)) then
      chosen, chosen_user, best_count, best_served = job, user, count, served
    end
  end
end
local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)[1]
local tick = last and last[1] or '0-0'
if not chosen then return {tick} end
redis.call('ZREM', KEYS[2], chosen)
redis.call('HDEL', KEYS[3], chosen)
redis.call('HSET', KEYS[5], chosen_user, redis.call('INCR', KEYS[6]))
redis.call('XADD', KEYS[1], '*', 'job_id', chosen, 'user', chosen_user)
-- Every entry is delivered in the script that adds it, so this one is the next undelivered.
local entry = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')[1][2][1]
local job_id = ''
for i = 1, #entry[2], 2 do
  if entry[2][i] == 'job_id' then job_id = entry[2][i + 1] end
end
return {tick, entry[1], job_id}
"""

# KEYS: job hash. ARGV: consumer, entry id, 'new' (fresh delivery) or 'reclaim'.
# -> 'run' (start or resume it), 'cancel' (finish it as cancelled), 'skip' (ack and drop).
_TAKE = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'skip' end
local state = tonumber(redis.call('HGET', KEYS[1], 'state'))
if state ~= {common_pb2.JOB_STATE_QUEUED} and state ~= {common_pb2.JOB_STATE_RUNNING} then return 'skip' end
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[3] == 'new' and owner and owner ~= '' then return 'skip' end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'entry', ARGV[2])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 'cancel' end
return 'run'
"""

# KEYS: job hash, waiting, waiting_users. ARGV: the cancelling replica, job id.
# -> 'done' (already finished), 'mine' (nobody took it: the caller finishes it), 'owned'.
_CANCEL = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'done' end
local state = tonumber(redis.call('HGET', KEYS[1], 'state'))
if state ~= {common_pb2.JOB_STATE_QUEUED} and state ~= {common_pb2.JOB_STATE_RUNNING} then return 'done' end
redis.call('HSET', KEYS[1], 'cancel', '1')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or owner == '' then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  return 'mine'
end
return 'owned'
"""

# KEYS: stream. ARGV: group, entry id, consumer. Resets the entry's idle time only while
# this consumer still holds it (a plain XCLAIM would steal back a reclaimed job).
_HEARTBEAT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""

# KEYS: stream. ARGV: group, min idle ms, the caller. Forgets consumers of replicas gone for
# good (nothing pending, silent for long); atomic, so no entry is dropped with one.
_PRUNE = """
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""


@dataclass(frozen=True)
class WaitingRoom:
    entries: list[Waiting]  # in arrival order
    served: dict[str, int]  # user -> serial of their last start


@dataclass(frozen=True)
class Entry:
    entry_id: str
    job_id: str
    reclaimed: bool


class RedisJobStream:
    def __init__(self, client: redis.Redis, keys: JobKeys, consumer: str) -> None:
        self._redis = client
        self._keys = keys
        self.consumer = consumer
        self.stream = keys.prefix + "queue"
        self._waiting = keys.prefix + "waiting"
        self._waiting_users = keys.prefix + "waiting_users"
        self._arrivals = keys.prefix + "arrivals"
        self._ticks = keys.prefix + "ticks"
        self._served = keys.prefix + "served"
        self._serial = keys.prefix + "serial"
        self._runners = keys.prefix + "runners"
        self._member = ""
        self._add = client.register_script(_ADD)
        self._pick = client.register_script(_PICK)
        self._take = client.register_script(_TAKE)
        self._cancel = client.register_script(_CANCEL)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._prune = client.register_script(_PRUNE)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def adopt_undelivered(self) -> int:
        """Moves entries no replica took into the waiting room; returns how many. `pick`
        delivers every entry it adds, so these can only come from an older version, which
        queued jobs on the stream itself."""
        last = "0-0"
        for group in await self._redis.xinfo_groups(self.stream):
            if group["name"] in (GROUP, GROUP.encode()):
                last = group["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else last
        entries = await self._redis.xrange(self.stream, min=f"({last}", max="+")
        for raw_id, fields in entries:
            job_id = fields.get(b"job_id", b"").decode()
            user_id = await self._redis.hget(self._keys.job(job_id), "user_id") if job_id else None
            if user_id is not None:
                await self.add(job_id, user_id.decode())
            await self._redis.xdel(self.stream, raw_id)
        return len(entries)

    async def add(self, job_id: str, user_id: str) -> None:
        """Into the waiting room (and a tick, so an idle replica picks at once)."""
        await self._add(
            keys=[self._waiting, self._waiting_users, self._arrivals, self._ticks], args=[job_id, user_id]
        )

    @staticmethod
    def _entry(raw_id: bytes, fields: dict, reclaimed: bool) -> Entry:
        return Entry(raw_id.decode(), fields.get(b"job_id", b"").decode(), reclaimed)

    async def reclaim_one(self, min_idle_ms: int) -> Entry | None:
        """An entry a dead (silent) replica held, now ours; None when there is none."""
        result = await self._redis.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_ms, start_id="0-0", count=1
        )
        claimed = result[1]
        for raw_id, fields in claimed:
            if fields:
                return self._entry(raw_id, fields, reclaimed=True)
            # Deleted from the stream while pending: nothing to run.
            await self._redis.xack(self.stream, GROUP, raw_id)
        return None

    async def pick(self, running_cap_per_user: int) -> tuple[str, Entry | None]:
        """(the last tick seen, the next job by the fair rule, now ours; None when no waiting
        job may start). Block on `wait_for_tick` with that tick before picking again."""
        result = await self._pick(
            keys=[self.stream, self._waiting, self._waiting_users, self._ticks, self._served, self._serial],
            args=[GROUP, self.consumer, running_cap_per_user],
        )
        tick = result[0].decode()
        if len(result) < 3:
            return tick, None
        return tick, Entry(result[1].decode(), result[2].decode(), reclaimed=False)

    async def wait_for_tick(self, after: str, block_ms: int) -> None:
        """Returns once a tick newer than `after` exists, or after `block_ms`."""
        await self._redis.xread({self._ticks: after}, count=1, block=block_ms)

    async def take(self, entry: Entry) -> str:
        verdict = await self._take(
            keys=[self._keys.job(entry.job_id)],
            args=[self.consumer, entry.entry_id, "reclaim" if entry.reclaimed else "new"],
        )
        return verdict.decode()

    async def done(self, entry_id: str) -> None:
        """A job ended: its entry goes, and so does its user's running slot (a tick)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            pipe.xadd(self._ticks, {"tick": "1"}, maxlen=TICKS_KEPT, approximate=True)
            await pipe.execute()

    async def request_cancel(self, job_id: str) -> str:
        verdict = await self._cancel(
            keys=[self._keys.job(job_id), self._waiting, self._waiting_users], args=[self.consumer, job_id]
        )
        return verdict.decode()

    async def entry_of(self, job_id: str) -> str:
        value = await self._redis.hget(self._keys.job(job_id), "entry")
        return value.decode() if value else ""

    async def heartbeat(self, entry_ids: dict[str, str]) -> tuple[set[str], set[str]]:
        """Keeps our entries alive. Returns (jobs we lost to a reclaim, jobs asked to cancel)."""
        lost, cancelled = set(), set()
        for job_id, entry_id in entry_ids.items():
            held = await self._heartbeat(keys=[self.stream], args=[GROUP, entry_id, self.consumer])
            if not held:
                lost.add(job_id)
            elif await self._redis.hget(self._keys.job(job_id), "cancel") == b"1":
                cancelled.add(job_id)
        return lost, cancelled

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Drops the group's consumers that hold nothing and were silent for `min_idle_ms`
        (every restart makes a new consumer); returns how many."""
        return int(await self._prune(keys=[self.stream], args=[GROUP, min_idle_ms, self.consumer]))

    async def waiting_room(self) -> WaitingRoom:
        """Every job in the waiting room, and when each user was last served."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self._waiting, 0, -1)
            pipe.hgetall(self._waiting_users)
            pipe.hgetall(self._served)
            job_ids, users, served = await pipe.execute()
        return WaitingRoom(
            [Waiting(job_id.decode(), users.get(job_id, b"").decode()) for job_id in job_ids],
            {user.decode(): int(serial) for user, serial in served.items()},
        )

    async def register(self, max_running: int, ttl_seconds: float) -> None:
        """Announces this replica's run slots (for cluster-wide ETAs)."""
        now = time.time()
        self._member = f"{self.consumer}|{max_running}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._runners, {self._member: now})
            pipe.zremrangebyscore(self._runners, "-inf", now - ttl_seconds)
            await pipe.execute()

    async def capacity(self) -> int:
        """Run slots of the replicas alive now (at least 1)."""
        members = await self._redis.zrange(self._runners, 0, -1)
        return max(1, sum(int(m.decode().rpartition("|")[2]) for m in members))

    async def forget(self) -> None:
        """A replica shutting down cleanly stops counting towards capacity at once."""
        if self._member:
            await self._redis.zrem(self._runners, self._member)
