"""A due-time schedule split into SHARDS sorted sets, each in a slot of its own (keys.py).

Turns and research jobs both live on one: member = id, score = when someone should look at it next
(by Redis' clock). `claim` leases due members by pushing their time forward by the lease, so two
replicas never take the same member within one lease; what the member's own record says (its owner)
is settled afterwards in the record's slot by the caller. Each replica claims from every shard, from a
starting shard that moves each time, so no shard waits behind another.
"""

from __future__ import annotations

import asyncio
import itertools

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
"""

# KEYS: shard; ARGV: lease seconds, limit. Due members, each pushed to now + lease.
_CLAIM = NOW + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id) end
return ids
"""

# The same, returning member, new score pairs (the score as Redis will report it), so the claimer can later
# take the member off only if nobody moved it meanwhile (_REMOVE_IF).
_CLAIM_SCORED = NOW + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
  table.insert(out, id); table.insert(out, redis.call('ZSCORE', KEYS[1], id))
end
return out
"""

# KEYS: shard; ARGV: member, score. Removes the member only while its score is still that one.
_REMOVE_IF = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: shard; ARGV: seconds, flag ('' | 'NX' | 'XX'), member, ... Each member due in `seconds`.
# Returns how many were added.
_AT = NOW + """
local n = 0
for i = 3, #ARGV do
  if ARGV[2] == '' then n = n + redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
  else n = n + redis.call('ZADD', KEYS[1], ARGV[2], now + tonumber(ARGV[1]), ARGV[i]) end
end
return n
"""


class Schedule:
    def __init__(self, redis, shards: list[str]):
        self.redis = redis
        self.shards = shards
        self._claim = redis.register_script(_CLAIM)
        self._claim_scored = redis.register_script(_CLAIM_SCORED)
        self._remove_if = redis.register_script(_REMOVE_IF)
        self._at = redis.register_script(_AT)
        self._start = itertools.count()

    async def at(self, shard: str, members: list[str], seconds: float, *, only: str = "") -> int:
        """Members due in `seconds`; `only`: "NX" adds only new ones, "XX" moves only present ones."""
        if not members:
            return 0
        return int(await self._at(keys=[shard], args=[seconds, only, *members]))

    async def remove(self, shard: str, member: str) -> None:
        await self.redis.zrem(shard, member)

    async def claim(self, lease: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` due (shard, member) pairs, leased for `lease` seconds. All shards are asked at
        once; past the limit, the extra members are handed back (due now) for the next claim."""
        return [(shard, member) for shard, member, _ in await self._claim_all(self._claim, lease, limit, 1)]

    async def claim_scored(self, lease: float, limit: int) -> list[tuple[str, str, str]]:
        """As `claim`, with each member's leased score, for `remove_if`."""
        return await self._claim_all(self._claim_scored, lease, limit, 2)

    async def _claim_all(self, script, lease: float, limit: int, width: int) -> list[tuple[str, str, str]]:
        """(shard, member, score or "") from every shard; `width`: items per member in the script's answer."""
        first = next(self._start) % len(self.shards)
        order = self.shards[first:] + self.shards[:first]
        found = await asyncio.gather(*(script(keys=[s], args=[lease, limit]) for s in order))
        claimed = [(shard, str(flat[i]), str(flat[i + 1]) if width == 2 else "") for shard, flat in zip(order, found)
                   for i in range(0, len(flat), width)]
        for shard, member, _ in claimed[limit:]:
            await self.at(shard, [member], 0, only="XX")
        return claimed[:limit]

    async def remove_if(self, shard: str, member: str, score: str) -> bool:
        """Take the member off unless someone moved it since it was claimed at `score`."""
        return bool(await self._remove_if(keys=[shard], args=[member, score]))

    def group(self, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for shard, member in pairs:
            out.setdefault(shard, []).append(member)
        return out
