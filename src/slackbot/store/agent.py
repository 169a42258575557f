"""The agent surface's state in Redis: what each person looks at, answer ratings, weekly usage.

Keys (built here only), each with a hash tag so one script or transaction touches one Redis Cluster slot:
* `{ctx:<team>:<user>}:now` — the channel the person looks at now (app_context_changed), a day;
  `{ctx:<team>:<user>}:session:<channel>:<thread>` — the channel a session was started from, as long
  as the conversation's chain lives: "summarise this" asked later in that session still means it.
* `{fb:<team>}:vote:<channel>:<ts>` — one rating per person for the answer whose last message is
  `ts`; `{fb:<team>}:day:<YYYYMMDD>` — counts per model, profile and rating of the answers of that
  day (UTC, from the rated message's ts), so a report reads seven small hashes.
* `{use:<team>:<user>}:week:<YYYY-Www>` — a person's answers and tokens this ISO week (App Home).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis.asyncio as aioredis

from .keys import AgentKeys

FEEDBACK_DAYS_KEPT = 35  # ratings outlive the report's 7-day window comfortably
_CONTEXT_SECONDS = 86400
_USAGE_SECONDS = 15 * 86400

# KEYS: vote hash, day counts. ARGV: user, rating, "model\tprofile", ttl seconds.
# 0 = the same rating again (nothing changes), 1 = a first rating, 2 = a changed one.
_VOTE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if old then redis.call('HINCRBY', KEYS[2], ARGV[3] .. '\\t' .. old, -1) end
redis.call('HINCRBY', KEYS[2], ARGV[3] .. '\\t' .. ARGV[2], 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
if old then return 2 end
return 1
"""


@dataclass(frozen=True)
class Ratings:
    model: str
    profile: str
    good: int
    bad: int


@dataclass(frozen=True)
class WeekUsage:
    answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%d")


def _week(now: float) -> str:
    year, week, _ = datetime.fromtimestamp(now, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


class AgentStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, session_ttl: int):
        self.redis = redis
        self.keys = AgentKeys(prefix)
        self.session_ttl = session_ttl
        self._vote = redis.register_script(_VOTE)

    # --- what people look at ---------------------------------------------------------------------
    async def look_at(self, team: str, user: str, channel: str) -> None:
        """The person's current context ("" = nothing in particular)."""
        await self.redis.set(self.keys.context_now(team, user), channel, ex=_CONTEXT_SECONDS)

    async def context(self, team: str, user: str, channel: str, thread: str, given: str | None) -> str:
        """The channel a turn in this session is about: the one its message carried (`given`, bound to
        the session when it starts), else the session's, else what the person looks at now."""
        session = self.keys.context_session(team, user, channel, thread)
        if given is not None:
            await self.redis.set(session, given, ex=self.session_ttl)
            return given
        bound, now = await self.redis.mget(session, self.keys.context_now(team, user))
        if bound is not None:
            return bound
        if now:
            await self.redis.set(session, now, ex=self.session_ttl)
        return now or ""

    async def current(self, team: str, user: str) -> str:
        return await self.redis.get(self.keys.context_now(team, user)) or ""

    # --- feedback ----------------------------------------------------------------------------------
    async def rate(self, team: str, channel: str, ts: str, user: str, rating: str, model: str, profile: str) -> int:
        """Store one person's rating of an answer: 0 unchanged, 1 first, 2 changed (the old one uncounted)."""
        day = _day(float(ts) if ts.replace(".", "", 1).isdigit() else time.time())
        label = f"{model.replace(chr(9), ' ')}\t{profile.replace(chr(9), ' ')}"
        return int(await self._vote(keys=[self.keys.votes(team, channel, ts), self.keys.counts(team, day)],
                                    args=[user, rating, label, FEEDBACK_DAYS_KEPT * 86400]))

    async def ratings(self, team: str, days: int = 7, now: float | None = None) -> list[Ratings]:
        """Ratings of the answers of the last `days` days, per model and profile (most rated first)."""
        now = time.time() if now is None else now
        keys = [self.keys.counts(team, _day(now - n * 86400)) for n in range(days)]
        totals: dict[tuple[str, str], list[int]] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            pages = await pipe.execute()
        for page in pages:
            for field, count in (page or {}).items():
                model, profile, rating = (field.split("\t") + ["", "", ""])[:3]
                pair = totals.setdefault((model, profile), [0, 0])
                pair[0 if rating == "good" else 1] += int(count)
        rows = [Ratings(m, p, good, bad) for (m, p), (good, bad) in totals.items() if good or bad]
        return sorted(rows, key=lambda r: (-(r.good + r.bad), r.model, r.profile))

    # --- usage ---------------------------------------------------------------------------------
    async def count_answer(self, team: str, user: str, input_tokens: int, output_tokens: int,
                           now: float | None = None) -> None:
        key = self.keys.usage(team, user, _week(time.time() if now is None else now))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "answers", 1)
            pipe.hincrby(key, "input", input_tokens)
            pipe.hincrby(key, "output", output_tokens)
            pipe.expire(key, _USAGE_SECONDS)
            await pipe.execute()

    async def week_usage(self, team: str, user: str, now: float | None = None) -> WeekUsage:
        got = await self.redis.hgetall(self.keys.usage(team, user, _week(time.time() if now is None else now)))
        return WeekUsage(int(got.get("answers", 0)), int(got.get("input", 0)), int(got.get("output", 0)))
