"""The SessionStore on Redis, so several SessionService replicas share one set of sessions.

Layout (every key starts with the configured namespace, e.g. `vidsynth:`):
- `session:<id>`: a hash with the record's fields;
- `session:user-created:<user>`: the user's session ids scored by create time (listing);
- `session:created`: every session id scored by create time (the admins' listing); a store
  opened on data written before this index existed fills it once from the users' indexes;
- `session:user-expiry:<user>` and `session:expiry`: ids scored by `expires_at` (`inf` while
  processing), the per-user and global counts of live sessions, and the sweep's queue.

Every write is one Lua script, so the cap check and the insert (or the version check and
the update) are atomic across replicas. Expiry means what it means in SQLite: an expired
session stays readable (shown EXPIRED) until a sweep deletes it. The hash's own Redis TTL
only backs that up (expiry plus a grace period), so a mesh whose sweeps stopped does not
keep dead sessions forever; index entries left behind by such a key are pruned on sight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import redis.asyncio as redis

from libs.common.redis_outage import redis_outage_as_unavailable
from services.session.lifecycle import NEVER
from services.session.records import SessionRecord, decode_assets, encode_assets
from services.session.store import CreateOutcome, PageCursor

STORAGE = "Session storage"  # as SERVICE_UNAVAILABLE names it
# How long after its expiry Redis drops a session hash that no sweep removed.
DEFAULT_KEY_GRACE_SECONDS = 24 * 3600.0
_SCAN_BATCH = 200

_TTL_AND_INDEXES = """
local function index(prefix, id, user, created, expires_at, ttl_ms)
  redis.call('ZADD', prefix .. 'session:user-created:' .. user, created, id)
  redis.call('ZADD', prefix .. 'session:created', created, id)
  redis.call('ZADD', prefix .. 'session:user-expiry:' .. user, expires_at, id)
  redis.call('ZADD', prefix .. 'session:expiry', expires_at, id)
  local key = prefix .. 'session:' .. id
  if tonumber(ttl_ms) > 0 then redis.call('PEXPIRE', key, ttl_ms) else redis.call('PERSIST', key) end
end
local function unindex(prefix, id, user)
  redis.call('ZREM', prefix .. 'session:user-created:' .. user, id)
  redis.call('ZREM', prefix .. 'session:created', id)
  redis.call('ZREM', prefix .. 'session:user-expiry:' .. user, id)
  redis.call('ZREM', prefix .. 'session:expiry', id)
end
"""

# KEYS: 1 the session hash, 2 the user's expiry index, 3 the global expiry index.
# ARGV: 1 prefix, 2 now, 3 per-user cap, 4 global cap, 5 id, 6 user, 7 create time, 8 expires_at,
# 9 hash ttl in ms (0: none), 10.. field/value pairs.
_CREATE = (
    _TTL_AND_INDEXES
    + """
if redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[2], '+inf') >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf') >= tonumber(ARGV[4]) then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 3 end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
index(ARGV[1], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return 0
"""
)

# KEYS: 1 the session hash. ARGV: 1 prefix, 2 expected version, 3 id, 4 user, 5 create time,
# 6 expires_at, 7 hash ttl in ms, 8.. field/value pairs.
_REPLACE = (
    _TTL_AND_INDEXES
    + """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end
local previous_user = redis.call('HGET', KEYS[1], 'user_id')
if previous_user ~= ARGV[4] then unindex(ARGV[1], ARGV[3], previous_user) end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
index(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
"""
)

# KEYS: 1 the session hash. ARGV: 1 prefix, 2 id, 3 expected version ('' = any),
# 4 only if expired at this time ('' = regardless).
_DELETE = (
    _TTL_AND_INDEXES
    + """
local fields = redis.call('HMGET', KEYS[1], 'user_id', 'version', 'expires_at')
if not fields[1] then
  redis.call('ZREM', ARGV[1] .. 'session:expiry', ARGV[2])
  redis.call('ZREM', ARGV[1] .. 'session:created', ARGV[2])
  return 0
end
if ARGV[3] ~= '' and fields[2] ~= ARGV[3] then return 0 end
if ARGV[4] ~= '' and (fields[3] == 'inf' or tonumber(fields[3]) > tonumber(ARGV[4])) then return 0 end
redis.call('DEL', KEYS[1])
unindex(ARGV[1], ARGV[2], fields[1])
return 1
"""
)


_CREATE_OUTCOMES = {0: CreateOutcome.CREATED, 1: CreateOutcome.USER_LIMIT, 2: CreateOutcome.GLOBAL_LIMIT}


def _number(value: float) -> str:
    """Exact text for a float (repr round-trips); Redis and Lua read `inf` as infinity."""
    return "inf" if value == math.inf else repr(float(value))


def _fields(record: SessionRecord) -> list[str | bytes]:
    pairs: dict[str, str | bytes] = {
        "session_id": record.session_id,
        "user_id": record.user_id,
        "state": str(record.state),
        "display_name": record.display_name,
        "active_job_id": record.active_job_id,
        "create_time": _number(record.create_time),
        "update_time": _number(record.update_time),
        "last_active_time": _number(record.last_active_time),
        "expires_at": _number(record.expires_at),
        "version": str(record.version),
        "assets": encode_assets(record.assets),
    }
    return [item for pair in pairs.items() for item in pair]


def _record(raw: dict[bytes, bytes]) -> SessionRecord:
    text = {key.decode(): value for key, value in raw.items()}
    expires_at = float(text["expires_at"])
    return SessionRecord(
        session_id=text["session_id"].decode(),
        user_id=text["user_id"].decode(),
        state=int(text["state"]),
        display_name=text["display_name"].decode(),
        active_job_id=text["active_job_id"].decode(),
        create_time=float(text["create_time"]),
        update_time=float(text["update_time"]),
        last_active_time=float(text["last_active_time"]),
        expires_at=expires_at if math.isfinite(expires_at) else NEVER,
        version=int(text["version"]),
        assets=decode_assets(text["assets"]),
    )


class RedisSessionStore:
    def __init__(
        self, url: str, namespace: str = "vidsynth:", key_grace_seconds: float = DEFAULT_KEY_GRACE_SECONDS
    ) -> None:
        self._redis = redis.Redis.from_url(url)
        self._prefix = namespace
        self._grace = key_grace_seconds
        self._create = self._redis.register_script(_CREATE)
        self._replace = self._redis.register_script(_REPLACE)
        self._delete = self._redis.register_script(_DELETE)

    # --- keys ------------------------------------------------------------------------------

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}session:{session_id}"

    def _user_created_key(self, user_id: str) -> str:
        return f"{self._prefix}session:user-created:{user_id}"

    def _created_key(self) -> str:
        return f"{self._prefix}session:created"

    def _backfilled_key(self) -> str:
        return f"{self._prefix}session:created-backfilled"

    def _expiry_key(self, user_id: str | None) -> str:
        if user_id is None:
            return f"{self._prefix}session:expiry"
        return f"{self._prefix}session:user-expiry:{user_id}"

    def _ttl_ms(self, record: SessionRecord) -> str:
        """Relative to the record's own activity time, so it holds whatever clock wrote it."""
        if not math.isfinite(record.expires_at):
            return "0"
        return str(max(1, round((record.expires_at - record.last_active_time + self._grace) * 1000)))

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> RedisSessionStore:
        async with redis_outage_as_unavailable(STORAGE):
            await self._redis.ping()
            await self._backfill_created_index()
        return self

    async def _backfill_created_index(self) -> None:
        """Sessions written before `session:created` existed join it once, from the users'
        own create-time indexes. Writes since then index themselves (the Lua scripts), and an
        id copied here after its session was deleted is pruned on sight like any other."""
        if await self._redis.exists(self._backfilled_key()):
            return
        pattern = f"{self._prefix}session:user-created:*"
        async for user_key in self._redis.scan_iter(match=pattern, count=_SCAN_BATCH):
            members = await self._redis.zrange(user_key, 0, -1, withscores=True)
            if members:
                await self._redis.zadd(self._created_key(), dict(members))
        await self._redis.set(self._backfilled_key(), "1")

    async def close(self) -> None:
        await self._redis.aclose()

    # --- SessionStore ----------------------------------------------------------------------

    async def create_within_limits(
        self, record: SessionRecord, per_user: int, global_cap: int, now: float
    ) -> CreateOutcome:
        keys = [
            self._session_key(record.session_id),
            self._expiry_key(record.user_id),
            self._expiry_key(None),
        ]
        args = [
            self._prefix,
            _number(now),
            per_user,
            global_cap,
            record.session_id,
            record.user_id,
            _number(record.create_time),
            _number(record.expires_at),
            self._ttl_ms(record),
            *_fields(record),
        ]
        async with redis_outage_as_unavailable(STORAGE):
            result = int(await self._create(keys=keys, args=args))
        if result not in _CREATE_OUTCOMES:
            raise RuntimeError(f"session id {record.session_id} already exists")
        return _CREATE_OUTCOMES[result]

    async def get(self, session_id: str) -> SessionRecord | None:
        async with redis_outage_as_unavailable(STORAGE):
            raw = await self._redis.hgetall(self._session_key(session_id))
        return _record(raw) if raw else None

    async def _records(self, session_ids: list[bytes], index_keys: list[str]) -> list[SessionRecord]:
        """The records of `session_ids`, in order; ids whose hash is gone leave the indexes."""
        async with redis_outage_as_unavailable(STORAGE):
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.hgetall(self._session_key(session_id.decode()))
                raws = await pipe.execute()
            gone = [sid for sid, raw in zip(session_ids, raws, strict=True) if not raw]
            if gone:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in index_keys:
                        pipe.zrem(key, *gone)
                    await pipe.execute()
        return [_record(raw) for raw in raws if raw]

    async def list_for_user(self, user_id: str, after: PageCursor | None, limit: int) -> list[SessionRecord]:
        key = self._user_created_key(user_id)
        prune = [key, self._expiry_key(user_id), self._expiry_key(None), self._created_key()]
        return await self._newest_first(key, prune, after, limit, keep=lambda record: True)

    async def list_active(
        self, user_id: str | None, after: PageCursor | None, limit: int, now: float
    ) -> list[SessionRecord]:
        """Unexpired sessions of every user (or of `user_id`), newest first."""
        if user_id is None:
            key = self._created_key()
            prune = [key, self._expiry_key(None)]
        else:
            key = self._user_created_key(user_id)
            prune = [key, self._expiry_key(user_id), self._expiry_key(None), self._created_key()]
        return await self._newest_first(key, prune, after, limit, keep=lambda record: record.expires_at > now)

    async def _newest_first(
        self,
        key: str,
        prune_keys: list[str],
        after: PageCursor | None,
        limit: int,
        keep: Callable[[SessionRecord], bool],
    ) -> list[SessionRecord]:
        """Records of the ids in the create-time index `key` that `keep` accepts, newest first,
        ties by id descending: Redis orders equal scores by member bytes, exactly as SQLite
        compares TEXT, so pages match the SQLite store's."""
        found: list[SessionRecord] = []
        while len(found) < limit:
            batch = max(limit - len(found), 1)
            async with redis_outage_as_unavailable(STORAGE):
                if after is None:
                    page = await self._redis.zrevrangebyscore(key, "+inf", "-inf", 0, batch, withscores=True)
                else:
                    ties = await self._redis.zrevrangebyscore(
                        key, _number(after.create_time), _number(after.create_time), withscores=True
                    )
                    older = await self._redis.zrevrangebyscore(
                        key, f"({_number(after.create_time)}", "-inf", 0, batch, withscores=True
                    )
                    cursor_id = after.session_id.encode()
                    page = ([tie for tie in ties if tie[0] < cursor_id] + older)[:batch]
            if not page:
                break
            records = await self._records([member for member, _ in page], prune_keys)
            found += [record for record in records if keep(record)]
            last_member, last_score = page[-1]
            after = PageCursor(last_score, last_member.decode())
            if len(page) < batch:
                break
        return found[:limit]

    async def replace(self, record: SessionRecord, expected_version: int) -> bool:
        args = [
            self._prefix,
            str(expected_version),
            record.session_id,
            record.user_id,
            _number(record.create_time),
            _number(record.expires_at),
            self._ttl_ms(record),
            *_fields(record),
        ]
        async with redis_outage_as_unavailable(STORAGE):
            return bool(await self._replace(keys=[self._session_key(record.session_id)], args=args))

    async def delete(self, session_id: str, expected_version: int | None = None) -> bool:
        version = "" if expected_version is None else str(expected_version)
        args = [self._prefix, session_id, version, ""]
        async with redis_outage_as_unavailable(STORAGE):
            return bool(await self._delete(keys=[self._session_key(session_id)], args=args))

    async def delete_if_expired(self, session_id: str, now: float) -> bool:
        args = [self._prefix, session_id, "", _number(now)]
        async with redis_outage_as_unavailable(STORAGE):
            return bool(await self._delete(keys=[self._session_key(session_id)], args=args))

    async def expired(self, now: float, limit: int) -> list[SessionRecord]:
        """Oldest expiry first; `limit` <= 0 means all of them."""
        key = self._expiry_key(None)
        found: list[SessionRecord] = []
        while limit <= 0 or len(found) < limit:
            batch = _SCAN_BATCH if limit <= 0 else min(limit - len(found), _SCAN_BATCH)
            # Kept ids stay in the index and pruned ones leave it, so the offset is what was kept.
            async with redis_outage_as_unavailable(STORAGE):
                page = await self._redis.zrangebyscore(key, "-inf", _number(now), len(found), batch)
            found += await self._records(page, [key])
            if len(page) < batch:
                break
        return found

    async def earliest_expiry(self, user_id: str | None, now: float) -> float | None:
        async with redis_outage_as_unavailable(STORAGE):
            first = await self._redis.zrangebyscore(
                self._expiry_key(user_id), f"({_number(now)}", "+inf", 0, 1, withscores=True
            )
        if not first or not math.isfinite(first[0][1]):
            return None
        return first[0][1]

    async def count_active(self, now: float) -> int:
        """Sessions neither expired nor deleted (what the caps count)."""
        async with redis_outage_as_unavailable(STORAGE):
            return int(await self._redis.zcount(self._expiry_key(None), f"({_number(now)}", "+inf"))
