"""The JobStore on Redis, so several stage_runner replicas share one set of jobs.

Layout (every key starts with the configured namespace, e.g. `vidsynth:stage_runner:`):
- `job:<id>`: a hash with the serialized Job, owner, session, state, fingerprint, seq and
  the W3C traceparent of the request that started it
  (plus the queue's own fields: the stream `entry`, the running replica `owner`, `cancel`);
- `seq`: the counter giving jobs their order (list pages, like SQLite's rowid);
- `user:<user>` and `user:<user>:session:<session>`: job ids scored by seq (listing);
- `unfinished`: queued and running job ids scored by seq;
- `idem:<user>:<key>`: the job an idempotency key made, set with SET NX EX;
- `meta` and `cost_rates`: hashes shared by every replica (processing mode, learned rates).

Every multi-key write is one Lua script, so replicas never see half a job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis.asyncio as redis

from services.stage_runner.store import UNFINISHED_STATES, CostRate, StoredJob
from vidsynth.v1 import stage_runner_pb2

DEFAULT_IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600


class IdempotencyKeyTaken(Exception):
    """Another request (maybe on another replica) already made a job with this key."""


class JobKeys:
    """Key names shared by the store and the queue."""

    def __init__(self, namespace: str) -> None:
        self.prefix = namespace + "stage_runner:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def user_session(self, user_id: str, session_id: str) -> str:
        return f"{self.prefix}user:{user_id}:session:{session_id}"

    def idempotency(self, user_id: str, key: str) -> str:
        return f"{self.prefix}idem:{user_id}:{key}"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def unfinished(self) -> str:
        return self.prefix + "unfinished"

    @property
    def meta(self) -> str:
        return self.prefix + "meta"

    @property
    def cost_rates(self) -> str:
        return self.prefix + "cost_rates"


# KEYS: job, seq, user index, user+session index, unfinished, idempotency key.
# ARGV: job id, user, session, state, fingerprint, job blob, idempotency key, its ttl, unfinished(0/1),
# the traceparent of the request that started it.
_INSERT = """
if ARGV[7] ~= '' then
  if not redis.call('SET', KEYS[6], ARGV[1], 'NX', 'EX', ARGV[8]) then return -1 end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'job', ARGV[6], 'user_id', ARGV[2], 'session_id', ARGV[3],
  'state', ARGV[4], 'spec_hash', ARGV[5], 'seq', seq, 'trace_parent', ARGV[10] or '')
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
if ARGV[9] == '1' then redis.call('ZADD', KEYS[5], seq, ARGV[1]) end
return seq
"""

# KEYS: job, unfinished. ARGV: job id, state, job blob, unfinished (0/1).
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'job', ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'seq'), ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"""

_JOB_FIELDS = ("job", "user_id", "spec_hash", "seq")


def _stored(values: list) -> StoredJob | None:
    blob, user_id, spec_hash, seq = values
    if blob is None:
        return None
    return StoredJob(stage_runner_pb2.Job.FromString(blob), user_id.decode(), int(seq), spec_hash.decode())


class RedisJobStore:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        idempotency_ttl_seconds: int = DEFAULT_IDEMPOTENCY_TTL_SECONDS,
    ) -> None:
        self._redis = client
        self.client = client
        self.keys = JobKeys(namespace)
        self._idempotency_ttl = idempotency_ttl_seconds
        self._insert = client.register_script(_INSERT)
        self._update = client.register_script(_UPDATE)

    async def insert(
        self,
        job: stage_runner_pb2.Job,
        user_id: str,
        idempotency_key: str,
        spec_hash: str,
        trace_parent: str = "",
    ) -> None:
        keys = self.keys
        seq = await self._insert(
            keys=[
                keys.job(job.job_id),
                keys.seq,
                keys.user(user_id),
                keys.user_session(user_id, job.session_id),
                keys.unfinished,
                keys.idempotency(user_id, idempotency_key),
            ],
            args=[
                job.job_id,
                user_id,
                job.session_id,
                job.state,
                spec_hash,
                job.SerializeToString(),
                idempotency_key,
                self._idempotency_ttl,
                "1" if job.state in UNFINISHED_STATES else "0",
                trace_parent,
            ],
        )
        if int(seq) < 0:
            raise IdempotencyKeyTaken(idempotency_key)

    async def trace_parent(self, job_id: str) -> str:
        """The W3C traceparent of the request that started the job ("" if none)."""
        value = await self._redis.hget(self.keys.job(job_id), "trace_parent")
        return value.decode() if value else ""

    async def update(self, job: stage_runner_pb2.Job) -> None:
        await self._update(
            keys=[self.keys.job(job.job_id), self.keys.unfinished],
            args=[
                job.job_id,
                job.state,
                job.SerializeToString(),
                "1" if job.state in UNFINISHED_STATES else "0",
            ],
        )

    async def get(self, job_id: str) -> StoredJob | None:
        return _stored(await self._redis.hmget(self.keys.job(job_id), _JOB_FIELDS))

    async def get_many(self, job_ids: Iterable[str]) -> list[StoredJob]:
        """The jobs among `job_ids` that exist, in that order, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), _JOB_FIELDS)
            rows = await pipe.execute()
        return [job for job in map(_stored, rows) if job is not None]

    async def find_idempotent(self, user_id: str, key: str) -> StoredJob | None:
        job_id = await self._redis.get(self.keys.idempotency(user_id, key))
        if job_id is None:
            return None
        stored = await self.get(job_id.decode())
        return stored if stored is not None and stored.user_id == user_id else None

    async def list_for_user(
        self, user_id: str, session_id: str, after_seq: int, limit: int
    ) -> list[StoredJob]:
        index = self.keys.user_session(user_id, session_id) if session_id else self.keys.user(user_id)
        job_ids = await self._redis.zrangebyscore(index, f"({after_seq}", "+inf", start=0, num=limit)
        return await self.get_many(job_id.decode() for job_id in job_ids)

    async def unfinished(self) -> list[StoredJob]:
        job_ids = await self._redis.zrange(self.keys.unfinished, 0, -1)
        return await self.get_many(job_id.decode() for job_id in job_ids)

    async def get_meta(self, key: str) -> str | None:
        value = await self._redis.hget(self.keys.meta, key)
        return value.decode() if value is not None else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._redis.hset(self.keys.meta, key, value)

    async def cost_rates(self) -> list[CostRate]:
        rates = []
        for raw in (await self._redis.hgetall(self.keys.cost_rates)).values():
            body = json.loads(raw)
            rates.append(
                CostRate(body["backend"], int(body["stage"]), float(body["rate"]), int(body["samples"]))
            )
        return rates

    async def save_cost_rate(self, rate: CostRate) -> None:
        body = {"backend": rate.backend, "stage": rate.stage, "rate": rate.rate, "samples": rate.samples}
        await self._redis.hset(self.keys.cost_rates, f"{rate.backend}|{rate.stage}", json.dumps(body))

    async def open(self) -> RedisJobStore:
        """Nothing to prepare: the client connects on its first command."""
        return self

    async def close(self) -> None:
        """Closed last at shutdown: the store owns the client the queue shares."""
        await self._redis.aclose()
