"""Every Redis key and atomic script the bot uses, in one place.

Shared state between replicas lives here and only here: rate budgets (token buckets) in `budgets.py`;
chat turns (dedup, journal, thread chains and locks, quotas) in `turns.py`; research jobs in `jobs.py`;
the agent surface (what people look at, answer ratings, weekly usage) in `agent.py`. Each multi-step
decision is one Lua script so two replicas can never interleave inside it. Scripts read the
clock with Redis' TIME so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from yarl import URL

from .agent import AgentStore
from .budgets import Budget, BucketId, BudgetStore
from .turns import TurnRecord, TurnStore

__all__ = ["Store", "RedisError", "Budget", "BucketId", "BudgetStore", "TurnRecord", "TurnStore", "redact"]


def redact(url: str) -> str:
    """A Redis URL fit for a log line or an error: its password masked."""
    try:
        parsed = URL(url)
    except ValueError:
        return "redis://…"
    return str(parsed.with_password("***")) if parsed.password else str(parsed)

class Store:
    def __init__(self, redis: aioredis.Redis, prefix: str = "slackbot", *, chain_ttl: int, dedup_ttl: int,
                 journal_ttl: int = 3600):
        self.redis = redis
        self.p = prefix
        self.chain_ttl = chain_ttl
        self.dedup_ttl = dedup_ttl
        self.turns = TurnStore(redis, prefix, chain_ttl=chain_ttl, dedup_ttl=dedup_ttl, journal_ttl=journal_ttl)
        self.budgets = BudgetStore(redis, prefix)
        self.agent = AgentStore(redis, prefix, session_ttl=chain_ttl)  # contexts, ratings, weekly usage

    @classmethod
    def from_url(cls, url: str, prefix: str, *, chain_ttl: int, dedup_ttl: int, journal_ttl: int = 3600,
                 max_connections: int = 50, pool_timeout: float = 10.0) -> "Store":
        # A blocking pool: under a burst, callers wait (bounded) for a connection instead of failing
        # at once with MaxConnectionsError, as the default pool does past its cap.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            max_connections=max_connections,
            timeout=pool_timeout,
            # a pooled connection that died with a Redis restart is replaced, not reported
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        client = aioredis.Redis(connection_pool=pool)
        return cls(client, prefix, chain_ttl=chain_ttl, dedup_ttl=dedup_ttl, journal_ttl=journal_ttl)

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
        """Whether Redis takes writes now: reachable is not enough (out of memory with noeviction, or a
        read-only replica, answer reads and refuse every claim). Writes one short-lived key."""
        try:
            return bool(await self.redis.set(f"{self.p}:probe:writable", "1", ex=10))
        except (RedisError, OSError):
            return False

    # --- thread chains (kept here for research, which links a report thread to its chain) ------
    async def move_head(self, team: str, channel: str, thread_ts: str, expected: str | None, new: str) -> bool:
        """Compare-and-set the chain head; refreshes the TTL to Gemini's retention (and the bot's presence)."""
        return await self.turns.move_head(team, channel, thread_ts, expected, new)
