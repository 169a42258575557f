"""Chat turns in Redis: which threads the bot is in, the turn journal, thread locks, per-user quotas.

The journal makes intake at-least-once instead of at-most-once: a turn is recorded (with its
dedup claim, in one script) before Slack gets its ack, and is leased to the process running it.
That process renews its leases in one call per tick; if it dies, the lease runs out and any
replica claims the turn (`claim_due`) and finishes it from what the journal says was delivered.
Every script checks the owner before writing, so a process that lost its lease writes nothing.
Keys are built here and nowhere else (`TurnKeys`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum

import redis.asyncio as aioredis


@dataclass(frozen=True)
class TurnKeys:
    prefix: str

    def seen(self, turn_id: str) -> str:
        return f"{self.prefix}:seen:msg:{turn_id}"

    def turn(self, turn_id: str) -> str:
        return f"{self.prefix}:turn:{turn_id}"

    @property
    def due(self) -> str:
        return f"{self.prefix}:turns:due"

    def chain(self, team: str, channel: str, thread: str) -> str:
        return f"{self.prefix}:chain:{team}:{channel}:{thread}"

    def presence(self, team: str, channel: str, thread: str) -> str:
        return f"{self.prefix}:in:{team}:{channel}:{thread}"

    def lock(self, team: str, channel: str, thread: str) -> str:
        return f"{self.prefix}:lock:thread:{team}:{channel}:{thread}"

    def user_active(self, team: str, user: str) -> str:
        return f"{self.prefix}:quota:active:{team}:{user}"

    def user_minute(self, team: str, user: str) -> str:
        return f"{self.prefix}:quota:minute:{team}:{user}"


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
    # the agent surface: the channel the person looks at (app_context; issue 20's tools read it), whether
    # the message itself carried one, and the message shortcut that made the turn (ask | summarize)
    context_channel: str = ""
    context_given: bool = False
    shortcut: str = ""
    # progress, written while the answer is delivered
    owner: str = ""
    state: str = "accepted"  # accepted | running | done
    created: float = 0.0
    interaction_id: str = ""
    head_before: str = ""
    delivery: str = ""  # JSON of the delivery state (see slack_out/delivery.py)
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


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
"""

# Intake: a reply the bot should not answer is refused before anything is written (-1); a message
# seen before is a duplicate (0); otherwise the turn is journalled and leased (1).
# Presence (the `in:` key) says how the bot stands in a thread: `own` when its answer started the
# conversation (a mention at the root, a DM, research; or its message is the root, which holds after
# Redis lost its data), so every reply is a turn; `asked:<user>` when a person mentioned it in people's
# thread, so only that person's direct follow-up is; `past` once someone else spoke after that.
# ('1', written before presence had modes, and a chain without presence count as `own`, as they did.)
# KEYS: seen, turn, due, presence, chain; ARGV: turn id, role (start | mention | reply), parent is the
# bot (1/0), dedup ttl, journal ttl, lease, chain ttl, user, field, value, ...
_ACCEPT = _NOW + """
local cur = redis.call('GET', KEYS[4])
local owned = ARGV[3] == '1' or cur == 'own' or cur == '1' or (not cur and redis.call('EXISTS', KEYS[5]) == 1)
local asker = 'asked:' .. ARGV[8]
if ARGV[2] == 'reply' and not owned and cur ~= asker then
  if cur then redis.call('SET', KEYS[4], 'past', 'KEEPTTL') end
  return -1
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[4])) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 9))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[1])
local mode = 'own'
if not owned and ARGV[2] ~= 'start' then mode = asker end
redis.call('SET', KEYS[4], mode, 'EX', tonumber(ARGV[7]))
return 1
"""

# Recovery: claim turns whose lease ran out. A turn whose record expired leaves the schedule and is
# never recreated. KEYS: due; ARGV: owner, lease, limit, turn key prefix
_CLAIM = _NOW + """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if redis.call('EXISTS', key) == 0 or redis.call('HGET', key, 'state') == 'done' then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('HSET', key, 'owner', ARGV[1])
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    table.insert(out, id)
  end
end
return out
"""

# One call per tick for all of a process's turns: extend the leases (and thread locks) still ours;
# report turns someone asked to stop and turns another replica took over. KEYS: due; ARGV: owner, lease, lock ttl ms,
# turn key prefix, id, lock key, id, lock key, ...  Returns {stopped ids..., '|', lost ids...}.
_RENEW = _NOW + """
local stopped, lost = {}, {}
for i = 5, #ARGV, 2 do
  local id, lock = ARGV[i], ARGV[i + 1]
  local key = ARGV[4] .. id
  local rec = redis.call('HMGET', key, 'owner', 'stop_by')
  if not rec[1] then
    -- the record is gone (Redis lost its data): nobody else can take the turn over; carry on
  elseif rec[1] ~= ARGV[1] then
    table.insert(lost, id)
  else
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
    if lock ~= '' and redis.call('GET', lock) == id then redis.call('PEXPIRE', lock, tonumber(ARGV[3])) end
    if rec[2] and rec[2] ~= '' then table.insert(stopped, id) end
  end
end
table.insert(stopped, '|')
for _, id in ipairs(lost) do table.insert(stopped, id) end
return stopped
"""

# Write journal fields only while we own the turn. KEYS: turn; ARGV: owner, field, value, ...
_WRITE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# The turn is over: off the schedule, its lock released, its record kept briefly (for a late Stop click).
# KEYS: turn, due, lock; ARGV: owner, id, keep seconds
_DONE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
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

# Per-user cost guard: at most N answers at once and M turns a minute. Entries carry their own
# expiry (a dead process's answer stops counting). KEYS: active zset, minute counter;
# ARGV: turn id, max active, max per minute, active hold seconds. Returns 1, or 0 / -1 (which cap).
_QUOTA = _NOW + """
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
        self.chain_ttl = chain_ttl
        self.dedup_ttl = dedup_ttl
        self.journal_ttl = journal_ttl
        self._accept = redis.register_script(_ACCEPT)
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._write = redis.register_script(_WRITE)
        self._done = redis.register_script(_DONE)
        self._lock = redis.register_script(_LOCK)
        self._set_head = redis.register_script(_SET_HEAD)
        self._quota = redis.register_script(_QUOTA)

    # --- intake ------------------------------------------------------------------------------
    async def accept(self, record: TurnRecord, *, role: str, lease: float) -> AcceptOutcome:
        """RUN: journalled and leased to `record.owner`; SEEN: a duplicate; NOT_OURS: a reply not for the bot.
        `role`: start | mention | reply (chat.intake.Incoming.role)."""
        k = self.keys
        flat = [x for pair in record.to_fields().items() for x in pair]
        return AcceptOutcome(int(await self._accept(
            keys=[k.seen(record.id), k.turn(record.id), k.due,
                  k.presence(record.team, record.channel, record.chain_thread),
                  k.chain(record.team, record.channel, record.chain_thread)],
            args=[record.id, role, "1" if record.owned_by_parent else "0", self.dedup_ttl,
                  self.journal_ttl, lease, self.chain_ttl, record.user, *flat])))

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
        return list(await self._claim(keys=[self.keys.due], args=[owner, lease, limit, self.keys.turn("")]))

    async def renew(self, owner: str, lease: float, lock_ttl: float,
                    turns: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Extend leases and locks of (turn id, lock key) pairs; returns (stop requested, lost) ids."""
        if not turns:
            return [], []
        flat = [x for pair in turns for x in pair]
        out = list(await self._renew(keys=[self.keys.due],
                                     args=[owner, lease, int(lock_ttl * 1000), self.keys.turn(""), *flat]))
        cut = out.index("|")
        return out[:cut], out[cut + 1:]

    async def done(self, turn_id: str, owner: str, lock_key: str, keep: int = 600) -> None:
        await self._done(keys=[self.keys.turn(turn_id), self.keys.due, lock_key], args=[owner, turn_id, keep])

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

    # --- cost guard -------------------------------------------------------------------------------
    async def admit_user(self, team: str, user: str, turn_id: str, *, max_active: int, per_minute: int,
                         hold: float) -> Admission:
        return Admission(int(await self._quota(keys=[self.keys.user_active(team, user),
                                                     self.keys.user_minute(team, user)],
                                               args=[turn_id, max_active, per_minute, int(hold) + 1])))

    async def release_user(self, team: str, user: str, turn_id: str) -> None:
        await self.redis.zrem(self.keys.user_active(team, user), turn_id)
