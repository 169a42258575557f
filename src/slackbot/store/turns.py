"""Chat turns in Redis: which threads the bot is in, the turn journal, thread locks, per-user quotas.

The journal makes intake at-least-once instead of at-most-once: a turn is recorded (with its
dedup claim, in one script) before Slack gets its ack, and is leased to the process running it.
That process renews its leases in one call per tick; if it dies, the lease runs out and any
replica claims the turn (`claim_due`) and finishes it from what the journal says was delivered.
Every script checks the owner before writing, so a process that lost its lease writes nothing.
Keys come from `keys.TurnKeys`. A turn's scripts touch its thread's slot only; the schedule (its
shard in `turns:due`) is a second step, ordered so that a crash between the two loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from enum import Enum

import redis.asyncio as aioredis

from .keys import TurnKeys, thread_of, turn_id
from .schedule import NOW, Schedule

__all__ = ["TurnKeys", "TurnRecord", "TurnStore", "thread_of", "turn_id"]


class AcceptOutcome(Enum):
    """What intake's script (`_ACCEPT`) decided about a message; the values are what the script returns."""

    NOT_OURS = -1  # a reply in a thread the bot is not answering there: nothing was written
    SEEN = 0  # the message was accepted before (a retry, the other event kind, another replica)
    RUN = 1  # journalled and leased to this process: run it now


class Admission(Enum):
    """The per-user cost guard's verdict (`_QUOTA`); the values are what the script returns."""

    TOO_FAST = -1  # more turns this minute than SLACKBOT_USER_TURNS_PER_MINUTE
    BUSY = 0  # already SLACKBOT_USER_MAX_ACTIVE_ANSWERS answers in progress
    ADMITTED = 1


@dataclass
class TurnRecord:
    """What the journal holds for one turn: the message, and how far its answer got."""

    id: str
    team: str
    channel: str
    user: str
    text: str
    ts: str
    reply_thread_ts: str
    chain_thread: str
    kind: str
    in_existing_thread: bool = False
    files: list = field(default_factory=list)
    owned_by_parent: bool = False  # a reply under the bot's own message (its thread with no stored state)
    user_team: str = ""  # the asker's own workspace (differs in Slack Connect channels)
    bot_user_id: str = ""
    action_token: str = ""  # Real-time Search's token from the event (searches as the asker; never logged)
    # the agent surface: the channel the person looks at (app_context; issue 20's tools read it), whether
    # the message itself carried one, and the message shortcut that made the turn (ask | summarize)
    context_channel: str = ""
    context_given: bool = False
    shortcut: str = ""
    # progress, written while the answer is delivered
    owner: str = ""
    state: str = "accepted"  # accepted | running | done
    created: float = 0.0
    interaction_id: str = ""  # the latest Gemini step's interaction (the head moves to the last one)
    steps: list = field(default_factory=list)  # every step's interaction id, in order (never their results)
    head_before: str = ""
    delivery: str = ""  # JSON of the delivery state (see slack_out/delivery.py)
    images: str = ""  # JSON: each image function call's progress (images/make.py), never the image
    stop_by: str = ""

    def to_fields(self) -> dict[str, str]:
        out = {}
        for k, v in asdict(self).items():
            if isinstance(v, bool):
                out[k] = "1" if v else ""
            elif isinstance(v, list):
                out[k] = json.dumps(v)
            else:
                out[k] = str(v)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "TurnRecord":
        kw: dict = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in fields:
                continue
            raw = fields[name]
            if f.type in ("bool",):
                kw[name] = raw == "1"
            elif f.type == "list":
                kw[name] = json.loads(raw or "[]")
            elif f.type == "float":
                kw[name] = float(raw or 0)
            else:
                kw[name] = raw
        return cls(**kw)


# Intake: a reply the bot should not answer is refused before anything is written (-1); a message
# seen before is a duplicate (0); otherwise the turn is journalled and leased (1). (Its schedule entry
# was written just before, in its shard's slot: see TurnStore.accept.)
# Presence (the `in:` key) says how the bot stands in a thread: `own` when its answer started the
# conversation (a mention at the root, a DM, research; or its message is the root, which holds after
# Redis lost its data), so every reply is a turn; `asked:<user>` when a person mentioned it in people's
# thread, so only that person's direct follow-up is; `past` once someone else spoke after that.
# ('1', written before presence had modes, and a chain without presence count as `own`, as they did.)
# KEYS: seen, turn, presence, chain; ARGV: role (start | mention | reply), parent is the bot (1/0),
# dedup ttl, journal ttl, chain ttl, user, field, value, ...
_ACCEPT = """
local cur = redis.call('GET', KEYS[3])
local owned = ARGV[2] == '1' or cur == 'own' or cur == '1' or (not cur and redis.call('EXISTS', KEYS[4]) == 1)
local asker = 'asked:' .. ARGV[6]
if ARGV[1] == 'reply' and not owned and cur ~= asker then
  if cur then redis.call('SET', KEYS[3], 'past', 'KEEPTTL') end
  return -1
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
local mode = 'own'
if not owned and ARGV[1] ~= 'start' then mode = asker end
redis.call('SET', KEYS[3], mode, 'EX', tonumber(ARGV[5]))
return 1
"""

# Recovery, after the schedule leased the id to us: take the turn over, unless its record expired or
# it is over (0: the caller takes it off the schedule, and it is never recreated). KEYS: turn; ARGV: owner
_TAKE_OVER = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'state') == 'done' then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return 1
"""

# Each tick, for each of a process's turns: extend its thread lock while the turn is still ours, and
# say how it stands: 'ok', 'stop' (someone asked to stop it), 'lost' (another replica took it over) or
# 'gone' (the record is gone: Redis lost its data; nobody else can take it over, so carry on).
# KEYS: turn, lock (optional); ARGV: owner, lock ttl ms, id
_RENEW = """
local rec = redis.call('HMGET', KEYS[1], 'owner', 'stop_by')
if not rec[1] then return 'gone' end
if rec[1] ~= ARGV[1] then return 'lost' end
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2])) end
if rec[2] and rec[2] ~= '' then return 'stop' end
return 'ok'
"""

# Write journal fields only while we own the turn. KEYS: turn; ARGV: owner, field, value, ...
_WRITE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# The turn is over: its lock released, its record kept briefly (for a late Stop click); the caller
# then takes it off the schedule (were that lost, recovery finds it done and drops it).
# KEYS: turn, lock; ARGV: owner, id, keep seconds
_DONE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""

# The thread lock is held by a turn id: a survivor finishing a dead process's turn takes it over.
# KEYS: lock; ARGV: turn id, ttl ms
_LOCK = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

# Move a chain head only from the value the turn started with: never a fork. Refreshes presence,
# keeping its mode (a thread research adopts has none yet: the bot's own). KEYS: chain, presence;
# ARGV: expected, new, ttl
_SET_HEAD = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
if redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) == 0 then redis.call('SET', KEYS[2], 'own', 'EX', tonumber(ARGV[3])) end
return 1
"""

# Research on a people's thread (issue 22.6) took the thread over: its report's interaction is the head,
# whatever the thread's chats chained before (they are in the research's input). Presence keeps its mode;
# a thread the bot had no presence in becomes the requester's, as a mention would make it.
# KEYS: chain, presence; ARGV: new head, ttl, asker
_ADOPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
if redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2])) == 0 then
  redis.call('SET', KEYS[2], 'asked:' .. ARGV[3], 'EX', tonumber(ARGV[2]))
end
return 1
"""

# Per-user cost guard: at most N answers at once and M turns a minute. Entries carry their own
# expiry (a dead process's answer stops counting). KEYS: active zset, minute counter;
# ARGV: turn id, max active, max per minute, active hold seconds. Returns 1, or 0 / -1 (which cap).
_QUOTA = NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], 60) end
if n > tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


class TurnStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, chain_ttl: int, dedup_ttl: int, journal_ttl: int):
        self.redis = redis
        self.keys = TurnKeys(prefix)
        self.schedule = Schedule(redis, self.keys.all_due)
        self.chain_ttl = chain_ttl
        self.dedup_ttl = dedup_ttl
        self.journal_ttl = journal_ttl
        self._accept = redis.register_script(_ACCEPT)
        self._take_over = redis.register_script(_TAKE_OVER)
        self._renew = redis.register_script(_RENEW)
        self._write = redis.register_script(_WRITE)
        self._done = redis.register_script(_DONE)
        self._lock = redis.register_script(_LOCK)
        self._set_head = redis.register_script(_SET_HEAD)
        self._adopt = redis.register_script(_ADOPT)
        self._quota = redis.register_script(_QUOTA)

    # --- intake ------------------------------------------------------------------------------
    async def accept(self, record: TurnRecord, *, role: str, lease: float) -> AcceptOutcome:
        """RUN: journalled and leased to `record.owner`; SEEN: a duplicate; NOT_OURS: a reply not for the bot.
        `role`: start | mention | reply (chat.intake.Incoming.role). `record.id` is keys.turn_id(...)."""
        k = self.keys
        flat = [x for pair in record.to_fields().items() for x in pair]
        # on the schedule first: a crash before the journal leaves only an entry that recovery drops
        scheduled = await self.schedule.at(k.due(record.id), [record.id], lease, only="NX")
        outcome = int(await self._accept(
            keys=[k.seen(record.id), k.turn(record.id),
                  k.presence(record.team, record.channel, record.chain_thread),
                  k.chain(record.team, record.channel, record.chain_thread)],
            args=[role, "1" if record.owned_by_parent else "0", self.dedup_ttl,
                  self.journal_ttl, self.chain_ttl, record.user, *flat]))
        if outcome != 1 and scheduled:
            await self.schedule.remove(k.due(record.id), record.id)
        return AcceptOutcome(outcome)

    async def claim(self, team: str, channel: str, thread: str, ts: str) -> bool:
        """True once per message, false for a message accepted (or claimed) before: for a mention that
        is not a chat turn (research in a thread), the same claim `accept` makes."""
        key = self.keys.seen(turn_id(team, channel, thread, ts))
        return bool(await self.redis.set(key, "1", nx=True, ex=self.dedup_ttl))

    # --- the journal ----------------------------------------------------------------------------
    async def load(self, turn_id: str) -> TurnRecord | None:
        fields = await self.redis.hgetall(self.keys.turn(turn_id))
        return TurnRecord.from_fields(fields) if fields else None

    async def write(self, turn_id: str, owner: str, fields: dict[str, str]) -> bool:
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, value]
        return bool(await self._write(keys=[self.keys.turn(turn_id)], args=[owner, *flat]))

    async def claim_due(self, owner: str, lease: float, limit: int) -> list[str]:
        """Turns whose lease ran out (their process died), now leased to `owner`."""
        pairs = await self.schedule.claim(lease, limit)
        taken = await asyncio.gather(*(self._take_over(keys=[self.keys.turn(t)], args=[owner]) for _, t in pairs))
        for (shard, turn), ok in zip(pairs, taken):
            if not int(ok):
                await self.schedule.remove(shard, turn)
        return [turn for (_, turn), ok in zip(pairs, taken) if int(ok)]

    async def renew(self, owner: str, lease: float, lock_ttl: float,
                    turns: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Extend leases and locks of (turn id, lock key) pairs; returns (stop requested, lost) ids."""
        states = await asyncio.gather(*(
            self._renew(keys=[self.keys.turn(t), lock] if lock else [self.keys.turn(t)],
                        args=[owner, int(lock_ttl * 1000), t]) for t, lock in turns))
        ours = [(self.keys.due(t), t) for (t, _), state in zip(turns, states) if state in ("ok", "stop")]
        await asyncio.gather(*(self.schedule.at(shard, ids, lease, only="XX")
                               for shard, ids in self.schedule.group(ours).items()))
        stopped = [t for (t, _), state in zip(turns, states) if state == "stop"]
        return stopped, [t for (t, _), state in zip(turns, states) if state == "lost"]

    async def done(self, turn_id: str, owner: str, lock_key: str, keep: int = 600) -> None:
        if await self._done(keys=[self.keys.turn(turn_id), lock_key], args=[owner, turn_id, keep]):
            await self.schedule.remove(self.keys.due(turn_id), turn_id)

    async def request_stop(self, turn_id: str, user: str) -> TurnRecord | None:
        """Mark a running turn as stopped by `user`; returns its record (None if unknown or over)."""
        record = await self.load(turn_id)
        if record is None or record.state == "done":
            return record
        if user == record.user:
            await self.redis.hset(self.keys.turn(turn_id), "stop_by", user)
        return record

    # --- threads ----------------------------------------------------------------------------------
    def lock_key(self, team: str, channel: str, thread: str) -> str:
        return self.keys.lock(team, channel, thread)

    async def lock_holder(self, team: str, channel: str, thread: str) -> str | None:
        """The id of the turn holding a thread (Slack's own Stop names a thread, not a turn)."""
        return await self.redis.get(self.keys.lock(team, channel, thread))

    async def try_lock(self, lock_key: str, turn_id: str, ttl: float) -> bool:
        return bool(await self._lock(keys=[lock_key], args=[turn_id, int(ttl * 1000)]))

    async def chain_head(self, team: str, channel: str, thread: str) -> str | None:
        return await self.redis.get(self.keys.chain(team, channel, thread))

    async def move_head(self, team: str, channel: str, thread: str, expected: str | None, new: str) -> bool:
        return bool(await self._set_head(keys=[self.keys.chain(team, channel, thread),
                                               self.keys.presence(team, channel, thread)],
                                         args=[expected or "", new, self.chain_ttl]))

    async def adopt(self, team: str, channel: str, thread: str, new: str, asker: str) -> None:
        """Research's report in a people's thread: `new` is its head from now on (_ADOPT)."""
        await self._adopt(keys=[self.keys.chain(team, channel, thread), self.keys.presence(team, channel, thread)],
                          args=[new, self.chain_ttl, asker])

    # --- cost guard -------------------------------------------------------------------------------
    async def admit_user(self, team: str, user: str, turn_id: str, *, max_active: int, per_minute: int,
                         hold: float) -> Admission:
        return Admission(int(await self._quota(keys=[self.keys.user_active(team, user),
                                                     self.keys.user_minute(team, user)],
                                               args=[turn_id, max_active, per_minute, int(hold) + 1])))

    async def release_user(self, team: str, user: str, turn_id: str) -> None:
        await self.redis.zrem(self.keys.user_active(team, user), turn_id)
