"""Every Redis key and atomic script the bot uses, in one place.

Shared state between replicas lives here and only here: rate budgets (token buckets) in this module;
chat turns (dedup, journal, thread chains and locks, quotas) in `turns.py`; research jobs in `jobs.py`;
every key spelled in `keys.py`; the client REDIS_URL asks for (one node, Cluster, Sentinel) in
`client.py`. Each multi-step decision is one Lua script so two replicas can never interleave inside it,
and each script declares every key it touches, all in one Redis Cluster slot. Scripts read the clock
with Redis' TIME so replicas with skewed clocks still agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncio
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from yarl import URL

from . import client as _client
from .jobs import JobStore
from .keys import Keys
from .turns import TurnRecord, TurnStore

__all__ = ["Store", "RedisError", "Budget", "JobStore", "Keys", "TurnRecord", "TurnStore", "redact"]


def redact(url: str) -> str:
    """A Redis URL fit for a log line or an error: its password masked."""
    try:
        parsed = URL(url)
    except ValueError:  # e.g. redis+sentinel://h1:26379,h2:26379/name: several hosts
        parts = urlsplit(url)
        userinfo, at, hosts = parts.netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else parts.netloc
        return urlunsplit(parts._replace(netloc=netloc)) if parts.scheme else "redis://…"
    return str(parsed.with_password("***")) if parsed.password else str(parsed)

# The bucket's state, refilled to now (Redis' clock): both takers below start from it. A 429's penalty
# factor recovers linearly. Needs `now`, `rate`, `cap`, `recovery`; defines tokens, factor, pause.
_REFILL = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'factor', 'pause')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
local factor = tonumber(b[3]) or 1
local pause = tonumber(b[4]) or 0
local elapsed = math.max(0, now - ts)
factor = math.min(1, factor + elapsed * recovery)
tokens = math.min(cap, tokens + elapsed * rate * factor)
"""

# Token bucket with a reserve and two fair queues (each served oldest first): priority takers
# (final edits) may use the reserve and go before everyone in the normal queue (intermediate edits).
# KEYS: bucket hash, normal queue zset, normal seen zset, priority queue zset, priority seen zset
#       (queue score = when the taker began waiting, seen score = when it last asked)
# ARGV: rate/s, capacity, reserve, member, priority (1/0), stale seconds, key ttl seconds,
#       recovery per second (of the 429 penalty factor)
# Returns milliseconds to wait (0 = granted). Lua numbers become integers on return, hence ms.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, cap, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local member, priority = ARGV[4], tonumber(ARGV[5])
local stale, ttl, recovery = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
""" + _REFILL + """local eff = rate * factor
local queue, seen = KEYS[2], KEYS[3]
if priority == 1 then queue, seen = KEYS[4], KEYS[5] end
local function save(w)
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now, 'factor', factor, 'pause', pause)
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
  return math.ceil(w * 1000)
end
-- takers that stopped asking (their answer ended or their process died) leave the queues
for _, pair in ipairs({{KEYS[2], KEYS[3]}, {KEYS[4], KEYS[5]}}) do
  local gone = redis.call('ZRANGEBYSCORE', pair[2], '-inf', now - stale)
  for _, m in ipairs(gone) do redis.call('ZREM', pair[1], m); redis.call('ZREM', pair[2], m) end
end
if now < pause then return save(pause - now) end
redis.call('ZADD', queue, 'NX', now, member)
redis.call('ZADD', seen, now, member)
local rank = redis.call('ZRANK', queue, member)
local avail = tokens
if priority == 0 then avail = tokens - reserve - redis.call('ZCARD', KEYS[4]) end
if avail >= 1 and rank < math.floor(avail) then
  tokens = tokens - 1
  redis.call('ZREM', queue, member)
  redis.call('ZREM', seen, member)
  return save(0)
end
return save(math.max(0.05, (rank + 1 - avail) / eff))
"""

# Take one token now if there is one (beyond `reserve` for ordinary takers), else say how long until
# there would be. No queue: the delivery planner decides what to do meanwhile (another budget may
# carry the text). KEYS: bucket hash; ARGV: rate/s, capacity, reserve, key ttl, recovery per second.
# Returns milliseconds to wait (0 = granted).
_TAKE_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, cap, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery = tonumber(ARGV[5])
""" + _REFILL + """local wait = 0
if now < pause then wait = pause - now
elseif tokens - reserve >= 1 then tokens = tokens - 1
else wait = math.max(0.02, (1 + reserve - tokens) / (rate * factor)) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now, 'factor', factor, 'pause', pause)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return math.ceil(wait * 1000)
"""

# After a 429: stop everyone until Retry-After, empty the bucket, slow the refill for a while.
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local until_ = now + tonumber(ARGV[1])
local b = redis.call('HMGET', KEYS[1], 'factor', 'pause')
local factor = math.max(tonumber(ARGV[3]), (tonumber(b[1]) or 1) * tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'tokens', 0, 'ts', now, 'factor', factor,
           'pause', math.max(until_, tonumber(b[2]) or 0))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


@dataclass(frozen=True)
class Budget:
    """A token bucket's shape: refill per second, burst capacity, tokens kept for priority takers."""

    rate: float
    capacity: float
    reserve: float = 0.0


class Store:
    """The bot's Redis: its client, every sub-store (`turns`, `jobs`) and every key (`keys`)."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "slackbot", *, chain_ttl: int, dedup_ttl: int,
                 journal_ttl: int = 3600):
        self.redis = redis
        self.p = prefix
        self.keys = Keys(prefix)
        self.chain_ttl = chain_ttl
        self.dedup_ttl = dedup_ttl
        self.turns = TurnStore(redis, prefix, chain_ttl=chain_ttl, dedup_ttl=dedup_ttl, journal_ttl=journal_ttl)
        self.jobs = JobStore(redis, prefix)
        self._take = redis.register_script(_TAKE)
        self._take_now = redis.register_script(_TAKE_NOW)
        self._penalize = redis.register_script(_PENALIZE)

    @classmethod
    async def connect(cls, url: str, prefix: str, *, chain_ttl: int = 600, dedup_ttl: int = 600,
                      journal_ttl: int = 3600, max_connections: int = 50, pool_timeout: float = 10.0) -> "Store":
        """A store on REDIS_URL: one node, any node of a Redis Cluster, or Sentinel (client.py). Callers
        wait up to `pool_timeout` for one of `max_connections` connections instead of failing a burst."""
        client = await _client.connect(url, max_connections=max_connections, pool_timeout=pool_timeout)
        return cls(client, prefix, chain_ttl=chain_ttl, dedup_ttl=dedup_ttl, journal_ttl=journal_ttl)

    @property
    def cluster(self) -> bool:
        return _client.is_cluster(self.redis)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def unreachable(self) -> str:
        """'' when Redis answers a PING, else why not, in a few words (start-up names it and stops)."""
        try:
            await self.redis.ping()
            return ""
        except (RedisError, OSError) as exc:
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

    async def writable(self) -> bool:
        """Whether Redis takes writes now, everywhere the bot writes: reachable is not enough (out of
        memory with noeviction, or a read-only replica, answer reads and refuse every claim), and on a
        cluster one node is not all. Writes one short-lived key in every schedule shard's slot."""
        try:
            results = await asyncio.gather(*(self.redis.set(key, "1", ex=10) for key in self.keys.probes))
            return all(results)
        except (RedisError, OSError):
            return False

    # --- the whole prefix (the sandbox, the bench and the tests clean up with it) ------------------
    async def prefix_keys(self, pattern: str = "") -> list[str]:
        """Every key under this prefix (or matching one of `keys`' patterns), from every primary of a cluster."""
        pattern = pattern or self.keys.pattern
        if self.cluster:
            return [k async for k in self.redis.scan_iter(match=pattern, count=1000,
                                                          target_nodes=RedisCluster.PRIMARIES)]
        return [k async for k in self.redis.scan_iter(match=pattern, count=1000)]

    async def delete_prefix(self) -> int:
        """Delete every key under this prefix (on a cluster: on every primary); returns how many."""
        keys = await self.prefix_keys()
        for i in range(0, len(keys), 500):
            await self.redis.delete(*keys[i:i + 500])  # the cluster client splits it by slot
        return len(keys)

    async def commands_processed(self) -> int:
        """Commands the server (every primary of a cluster) has processed since it started, all clients'."""
        if self.cluster:
            per_node = await self.redis.info("stats", target_nodes=RedisCluster.PRIMARIES)
            return sum(int(stats["total_commands_processed"]) for stats in per_node.values())
        return int((await self.redis.info("stats"))["total_commands_processed"])

    async def keys_per_node(self, pattern: str = "") -> dict[str, int]:
        """How many of this prefix's keys (or those matching `pattern`) each primary holds
        ("host:port" -> count); one entry on one node."""
        pattern = pattern or self.keys.pattern
        if not self.cluster:
            return {"single": len(await self.prefix_keys(pattern))}
        counts: dict[str, int] = {}
        for node in self.redis.get_primaries():
            counts[node.name] = len([k async for k in self.redis.scan_iter(match=pattern, count=1000,
                                                                            target_nodes=node)])
        return counts

    # --- thread chains (kept here for research, which links a report thread to its chain) ------
    async def move_head(self, team: str, channel: str, thread_ts: str, expected: str | None, new: str) -> bool:
        """Compare-and-set the chain head; refreshes the TTL to Gemini's retention (and the bot's presence)."""
        return await self.turns.move_head(team, channel, thread_ts, expected, new)

    # --- rate budgets ------------------------------------------------------------------------
    def _bucket_keys(self, name: str) -> list[str]:
        base = f"{self.p}:bucket:{{{name}}}"  # one hash tag per bucket: its five keys share a slot
        return [base, f"{base}:waiters", f"{base}:seen", f"{base}:pwaiters", f"{base}:pseen"]

    async def take(self, name: str, budget: Budget, *, member: str = "-", priority: bool = True,
                   stale: float = 5.0, recovery: float = 1 / 300) -> float:
        """Try to take one token. Returns 0.0 when granted, else seconds to wait before asking again.

        Takers queue fairly (longest waiting first); priority takers go first and may use the reserve.
        A taker that stops asking for `stale` seconds loses its place.
        """
        ttl = max(120, int(budget.capacity / budget.rate) + 60)
        ms = await self._take(
            keys=self._bucket_keys(name),
            args=[budget.rate, budget.capacity, budget.reserve, member, 1 if priority else 0, stale, ttl, recovery],
        )
        return int(ms) / 1000.0

    async def take_now(self, name: str, budget: Budget, *, priority: bool = False,
                       recovery: float = 1 / 300) -> float:
        """One token now (0.0) or the seconds until one would be free; priority takers may use the reserve."""
        ttl = max(120, int(budget.capacity / budget.rate) + 60)
        reserve = 0.0 if priority else budget.reserve
        ms = await self._take_now(keys=self._bucket_keys(name)[:1],
                                  args=[budget.rate, budget.capacity, reserve, ttl, recovery])
        return int(ms) / 1000.0

    async def penalize(self, name: str, retry_after: float, *, factor: float = 0.7, floor: float = 0.3) -> None:
        """Slack said 429 anyway: pause every taker of this bucket and slow its refill."""
        await self._penalize(keys=self._bucket_keys(name)[:1], args=[retry_after, factor, floor, 3600])

