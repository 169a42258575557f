"""Rate budgets: one Redis token bucket per Slack method and workspace (or channel), shared by replicas.

Which budget a Slack call pays is the gateway's table (slack_out/limits.py); this module keeps the
buckets: it alone spells their keys, as `{prefix}:bucket:{<method>:<team>[:<channel>]}` plus
suffixes. The braces are a Redis Cluster hash tag: a bucket's five keys share one slot, so each
script below touches one slot only. Scripts read the clock with Redis' TIME so replicas with skewed
clocks agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

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


@dataclass(frozen=True)
class BucketId:
    """Which bucket: a Slack method's budget in one workspace, or in one of its channels (or, for a
    per-person method, one of its people: `channel` then holds the user id)."""

    method: str
    team: str
    channel: str | None = None

    @property
    def tag(self) -> str:
        return ":".join(filter(None, (self.method, self.team, self.channel)))


class BudgetStore:
    def __init__(self, redis: aioredis.Redis, prefix: str):
        self.p = prefix
        self._take = redis.register_script(_TAKE)
        self._take_now = redis.register_script(_TAKE_NOW)
        self._penalize = redis.register_script(_PENALIZE)

    def key(self, bucket: BucketId) -> str:
        """The bucket's hash; its queues are this key plus a suffix (same hash tag, same slot)."""
        return f"{self.p}:bucket:{{{bucket.tag}}}"

    def _keys(self, bucket: BucketId) -> list[str]:
        base = self.key(bucket)
        return [base, f"{base}:waiters", f"{base}:seen", f"{base}:pwaiters", f"{base}:pseen"]

    async def take(self, bucket: BucketId, budget: Budget, *, member: str = "-", priority: bool = True,
                   stale: float = 5.0, recovery: float = 1 / 300) -> float:
        """Try to take one token. Returns 0.0 when granted, else seconds to wait before asking again.

        Takers queue fairly (longest waiting first); priority takers go first and may use the reserve.
        A taker that stops asking for `stale` seconds loses its place.
        """
        ttl = max(120, int(budget.capacity / budget.rate) + 60)
        ms = await self._take(
            keys=self._keys(bucket),
            args=[budget.rate, budget.capacity, budget.reserve, member, 1 if priority else 0, stale, ttl, recovery],
        )
        return int(ms) / 1000.0

    async def take_now(self, bucket: BucketId, budget: Budget, *, priority: bool = False,
                       recovery: float = 1 / 300) -> float:
        """One token now (0.0) or the seconds until one would be free; priority takers may use the reserve."""
        ttl = max(120, int(budget.capacity / budget.rate) + 60)
        reserve = 0.0 if priority else budget.reserve
        ms = await self._take_now(keys=[self.key(bucket)], args=[budget.rate, budget.capacity, reserve, ttl, recovery])
        return int(ms) / 1000.0

    async def penalize(self, bucket: BucketId, retry_after: float, *, factor: float = 0.7, floor: float = 0.3) -> None:
        """Slack said 429 anyway: pause every taker of this bucket and slow its refill."""
        await self._penalize(keys=[self.key(bucket)], args=[retry_after, factor, floor, 3600])
