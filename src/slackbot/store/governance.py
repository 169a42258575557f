"""Governance state in Redis: which interactions each answered message started, tombstones of deleted
messages, daily token spend, cached user-group membership and "told once" marks.

The message map (`msgs:{team:channel:thread}`, a hash in the thread's slot) is written in the same
script that moves the chain head: field = the asker's message ts, value = JSON {ids, bot, user} (the
turn's interaction ids, the bot's answer message ts's, who asked). Forgetting a message takes its entry
and every later one out, cuts the chain and leaves a tombstone field (`x:<ts>`, or `x:all` with a cutoff
ts for a whole thread) so a turn still running, a retry or another replica can never move the head
(and so bring the text back) for a forgotten message.

The same script moves what is still to delete (interaction ids, the bot's answer ts's, research job ids)
into the thread's purge hash; a member on the sharded deletion schedule, written before it, makes a
worker finish those deletes if the forgetting process dies. Deletes are idempotent (Gemini's 404, Slack's
message_not_found count as done), so a retry after a crash repeats at most the one in flight.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from . import client as _client

from .keys import GovernanceKeys, TurnKeys, shard_of, turn_id
from .schedule import Schedule

# Move the head (ARGV[6] = '1'; '0' maps only: a stopped or failed answer leaves the chain as it was) and
# map the message to its interactions, unless the message (or its whole thread) was forgotten meanwhile
# (-1; also when the chain the turn started from was cut under it: it followed a forgotten message), or
# the head moved (0). KEYS: chain, presence, msgs; ARGV: expected, new, ttl, message ts, entry json, move
_MOVE_AND_MAP = """
local ts = ARGV[4]
local all = redis.call('HGET', KEYS[3], 'x:all')
if redis.call('HEXISTS', KEYS[3], 'x:' .. ts) == 1 or (all and tonumber(ts) <= tonumber(all)) then return -1 end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then
  if cur == '' then return -1 end
  if ARGV[6] == '1' then return 0 end
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  if redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) == 0 then redis.call('SET', KEYS[2], 'own', 'EX', tonumber(ARGV[3])) end
end
redis.call('HSET', KEYS[3], ts, ARGV[5])
if redis.call('TTL', KEYS[3]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3])) end
return 1
"""

# Map a message to what it started without touching the chain (a research job, as soon as its status
# message is up), unless the message or its thread was forgotten already (-1).
# KEYS: msgs; ARGV: message ts, entry json, ttl
_MAP = """
local all = redis.call('HGET', KEYS[1], 'x:all')
if redis.call('HEXISTS', KEYS[1], 'x:' .. ARGV[1]) == 1 or (all and tonumber(ARGV[1]) <= tonumber(all)) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3])) end
return 1
"""

# What a purge hash is to delete, from a map entry's JSON (KEYS[4] = the purge hash; in_slack: the bot's
# messages and uploads too, which retention leaves to the workspace).
_TO_PURGE = """
local function to_purge(raw, in_slack)
  local ok, e = pcall(cjson.decode, raw)
  if not ok or type(e) ~= 'table' then return end
  for _, id in ipairs(e.ids or {}) do redis.call('HSET', KEYS[4], 'g:' .. id, '1') end
  if in_slack then
    for _, ts in ipairs(e.bot or {}) do redis.call('HSET', KEYS[4], 's:' .. ts, '1') end
    for _, f in ipairs(e.files or {}) do redis.call('HSET', KEYS[4], 'f:' .. f, '1') end
  end
  if e.job and e.job ~= '' then redis.call('HSET', KEYS[4], 'j:' .. e.job, '1') end
end
"""

# Forget a message and every later answered one (ARGV[1] = its ts), or the whole thread (ARGV[1] = '',
# ARGV[2] = the cutoff ts): take their entries out (into the purge hash), leave the tombstone, cut the
# chain (and for a whole thread the bot's presence). Returns the entries taken, as field, value pairs.
# Idempotent: a retry finds nothing left. KEYS: msgs, chain, presence, purge; ARGV: ts, cutoff,
# tombstone ttl, purge ttl, '1' to delete the bot's messages in Slack too
_FORGET = _TO_PURGE + """
local out = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local f = flat[i]
  if string.sub(f, 1, 2) ~= 'x:' and (ARGV[1] == '' or tonumber(f) >= tonumber(ARGV[1])) then
    table.insert(out, f); table.insert(out, flat[i + 1])
    redis.call('HDEL', KEYS[1], f)
    to_purge(flat[i + 1], ARGV[5] == '1')
  end
end
if #out > 0 then redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4])) end
if ARGV[1] == '' then
  redis.call('HSET', KEYS[1], 'x:all', ARGV[2])
  redis.call('DEL', KEYS[3])
else
  redis.call('HSET', KEYS[1], 'x:' .. ARGV[1], '1')
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
return out
"""


# What a purge hash keeps while nothing has deleted it: far longer than any retry takes.
PURGE_KEEP_SECONDS = 14 * 86400


@dataclass(frozen=True)
class Answered:
    """One answered message of a thread: its ts, the interactions it started, the bot's answer messages
    (and, for a research report, its job)."""

    ts: str
    ids: list[str]
    bot: list[str]
    user: str
    job: str = ""
    files: list[str] = ()  # the bot's uploads in the answer (images, plots, research figures)


@dataclass(frozen=True)
class Pending:
    """What is still to delete of one thread: at Gemini, in Slack, and research jobs' text."""

    ids: list[str]
    bot: list[str]
    jobs: list[str]
    files: list[str]

    def __bool__(self) -> bool:
        return bool(self.ids or self.bot or self.jobs or self.files)


class GovernanceStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, chain_ttl: int):
        self.redis = redis
        self.turn_keys = TurnKeys(prefix)
        self.chain_ttl = chain_ttl
        self._move = redis.register_script(_MOVE_AND_MAP)
        self.keys = GovernanceKeys(prefix)
        self.retention = Schedule(redis, self.keys.retention_shards)
        self.purges = Schedule(redis, self.keys.purge_shards)
        self._forget = redis.register_script(_FORGET)
        self._map = redis.register_script(_MAP)

    # --- the message map ------------------------------------------------------------------------
    async def move_and_map(self, team: str, channel: str, thread: str, expected: str | None, new: str, *,
                           ts: str, ids: list[str], bot: list[str], user: str, job: str = "",
                           files: list[str] = (), move: bool = True) -> int:
        """1 moved (and mapped), 0 the head moved meanwhile, -1 the message was forgotten meanwhile.
        `move=False`: map only (an answer that did not complete), so deleting its message still deletes
        what it made."""
        entry = json.dumps({"ids": ids, "bot": bot, "user": user, **({"job": job} if job else {}),
                            **({"files": list(files)} if files else {})})
        return int(await self._move(
            keys=[self.turn_keys.chain(team, channel, thread), self.turn_keys.presence(team, channel, thread),
                  self.keys.msgs(team, channel, thread)],
            args=[expected or "", new, self.chain_ttl, ts, entry, "1" if move else "0"]))

    async def map_job(self, team: str, channel: str, thread: str, ts: str, *, user: str, job: str) -> int:
        """A research job's status message is up in the thread: forgetting the thread from now on reaches
        the job (cancelled, and what it made deleted). 1 mapped, -1 the thread was forgotten already."""
        entry = json.dumps({"ids": [], "bot": [ts], "user": user, "job": job})
        return int(await self._map(keys=[self.keys.msgs(team, channel, thread)], args=[ts, entry, self.chain_ttl]))

    async def answered(self, team: str, channel: str, thread: str) -> list[Answered]:
        raw = await self.redis.hgetall(self.keys.msgs(team, channel, thread))
        return sorted((_entry(k, v) for k, v in raw.items() if not k.startswith("x:")), key=lambda a: float(a.ts))

    async def forget(self, team: str, channel: str, thread: str, ts: str | None, cutoff: str, *,
                     retry_in: float, in_slack: bool = True) -> tuple[list[Answered], str]:
        """Forget `ts` and every later answered message (None: the whole thread up to `cutoff`): the
        entries taken, and the deletion schedule's member that a worker finishes from `retry_in` seconds
        on unless `purged` ends it first (`in_slack`: the bot's answers there are deleted too). Their
        journal entries go too (same slot)."""
        member = await self._schedule_purge(team, channel, thread, retry_in)  # first: a crash keeps the debt
        flat = await self._forget(
            keys=[self.keys.msgs(team, channel, thread), self.turn_keys.chain(team, channel, thread),
                  self.turn_keys.presence(team, channel, thread), self.keys.purge(team, channel, thread)],
            args=[ts or "", cutoff, self.chain_ttl, PURGE_KEEP_SECONDS, "1" if in_slack else "0"])
        taken = [_entry(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        for at in {a.ts for a in taken} | ({ts} if ts else set()):
            await self.drop_journal(turn_id(team, channel, thread, at))
        return taken, member

    # --- deletions still to do (the purge hash and its schedule) ---------------------------------
    async def to_purge(self, team: str, channel: str, thread: str, ids: list[str], bot: list[str],
                       files: list[str] = (), *, retry_in: float) -> str:
        """Owe these deletes (a turn that finished after its message was forgotten); the schedule member."""
        member = await self._schedule_purge(team, channel, thread, retry_in)
        fields = {f"g:{i}": "1" for i in ids} | {f"s:{ts}": "1" for ts in bot} | {f"f:{f}": "1" for f in files}
        if fields:
            key = self.keys.purge(team, channel, thread)
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, PURGE_KEEP_SECONDS)
            await pipe.execute()
        return member

    async def pending(self, team: str, channel: str, thread: str) -> Pending:
        fields = list(await self.redis.hkeys(self.keys.purge(team, channel, thread)))
        return Pending(*([f[2:] for f in fields if f.startswith(kind)] for kind in ("g:", "s:", "j:", "f:")))

    async def purged(self, team: str, channel: str, thread: str, *, ids=(), bot=(), jobs=(), files=()) -> None:
        """These deletes are done (or need no doing)."""
        fields = ([f"g:{i}" for i in ids] + [f"s:{ts}" for ts in bot] + [f"j:{j}" for j in jobs]
                  + [f"f:{f}" for f in files])
        if fields:
            await self.redis.hdel(self.keys.purge(team, channel, thread), *fields)

    async def due_purges(self, lease: float, limit: int) -> list[str]:
        """Schedule members whose deletes a worker should finish now, leased for `lease` seconds."""
        return [member for _, member in await self.purges.claim(lease, limit)]

    async def purge_settled(self, member: str) -> None:
        """Its forgetting's deletes are all done. Another forgetting of the thread has a member of its own."""
        await self.purges.remove(self.purges.shards[shard_of(member)], member)

    async def _schedule_purge(self, team: str, channel: str, thread: str, retry_in: float) -> str:
        member = f"{team}:{channel}:{thread}|{secrets.token_hex(6)}"
        await self.purges.at(self.purges.shards[shard_of(member)], [member], retry_in)
        return member

    async def threads_of(self, team: str, channel: str) -> list[str]:
        """The threads of a conversation with a message map (a SCAN: only for `/gemini forget` in a DM)."""
        pattern = self.keys.msgs(team, channel, "*")  # braces are not special in a SCAN pattern
        where = {"target_nodes": RedisCluster.PRIMARIES} if _client.is_cluster(self.redis) else {}
        found = [k async for k in self.redis.scan_iter(match=pattern, count=1000, **where)]
        return sorted({k.split("{", 1)[1].rsplit("}", 1)[0].split(":", 2)[2] for k in found})

    async def retention_settled(self, shard: str, tag: str, claimed: str) -> None:
        """Off retention's schedule, unless the thread moved again since the claim (`retain` moved it)."""
        await self.retention.remove_if(shard, tag, claimed)

    async def retain(self, team: str, channel: str, thread: str, seconds: float) -> None:
        """The thread is forgotten `seconds` from now unless it moves again (written before the head moves,
        so a crash in between can only forget a thread, never keep one)."""
        tag = f"{team}:{channel}:{thread}"
        await self.retention.at(self.retention.shards[shard_of(tag)], [tag], seconds)

    async def due_for_retention(self, lease: float, limit: int) -> list[tuple[str, str, str]]:
        """(shard, thread tag, leased score) of threads past their retention, leased for `lease` seconds."""
        return await self.retention.claim_scored(lease, limit)

    async def drop_journal(self, turn: str) -> None:
        """A forgotten turn's journal entry (its text) goes; every later write to it checks the owner and finds none."""
        await self.redis.delete(self.turn_keys.turn(turn))

    # --- spend ------------------------------------------------------------------------------------
    async def charge(self, scopes: list[str], day: str, tokens: int, *, team: str, week: str,
                     members: list[str], keep: int = 8 * 86400) -> None:
        """Add `tokens` to each scope's day (INCRBY is atomic across replicas) and to the week's ranks."""
        for scope in scopes:
            key = self.keys.spend(scope, day)
            await self.redis.incrby(key, tokens)
            await self.redis.expire(key, keep)
        wkey = self.keys.week(team, week)
        for member in members:
            await self.redis.zincrby(wkey, tokens, member)
        await self.redis.expire(wkey, 15 * 86400)

    async def spent(self, scopes: list[str], day: str) -> list[int]:
        return [int(await self.redis.get(self.keys.spend(s, day)) or 0) for s in scopes]

    async def top(self, team: str, week: str, n: int) -> list[tuple[str, int]]:
        return [(m, int(s)) for m, s in await self.redis.zrevrange(self.keys.week(team, week), 0, n - 1, withscores=True)]

    # --- user groups ----------------------------------------------------------------------------
    async def group_members(self, team: str, group: str) -> set[str] | None:
        """The cached members (None: not cached). A sentinel member marks an empty group as cached."""
        members = await self.redis.smembers(self.keys.group(team, group))
        return {m for m in members if m != "-"} if members else None

    async def cache_group(self, team: str, group: str, users: list[str], ttl: int) -> None:
        key = self.keys.group(team, group)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.sadd(key, "-", *users)
        pipe.expire(key, ttl)
        await pipe.execute()

    async def cached_flag(self, team: str, user: str, name: str) -> bool | None:
        value = await self.redis.get(self.keys.flag(team, user, name))
        return None if value is None else value == "1"

    async def cache_flag(self, team: str, user: str, name: str, value: bool, ttl: int) -> None:
        await self.redis.set(self.keys.flag(team, user, name), "1" if value else "0", ex=ttl)

    # --- told once ------------------------------------------------------------------------------
    async def first_telling(self, team: str, user: str, where: str, ttl: int) -> bool:
        return bool(await self.redis.set(self.keys.told(team, user, where), "1", nx=True, ex=ttl))


def _entry(ts: str, raw: str) -> Answered:
    data = json.loads(raw or "{}")
    return Answered(ts, list(data.get("ids") or []), list(data.get("bot") or []), str(data.get("user") or ""),
                    str(data.get("job") or ""), list(data.get("files") or []))
