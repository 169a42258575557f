"""Every Redis key and atomic script the bot uses, in one place.

Shared state between replicas lives here and only here: rate budgets (token buckets) in `budgets.py`;
chat turns (dedup, journal, thread chains and locks, quotas) in `turns.py`; research jobs in `jobs.py`;
every key spelled in `keys.py`; the client REDIS_URL asks for (one node, Cluster, Sentinel) in
`client.py`; the agent surface (what people look at, answer ratings, weekly usage) in `agent.py`. Each
multi-step decision is one Lua script so two replicas can never interleave inside it, and each script
declares every key it touches, all in one Redis Cluster slot. Scripts read the clock with Redis' TIME so
replicas with skewed clocks still agree.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from yarl import URL

from . import client as _client
from .agent import AgentStore
from .budgets import Budget, BucketId, BudgetStore
from .governance import GovernanceStore
from .jobs import JobStore
from .images import ImageStore
from .keys import Keys
from .turns import TurnRecord, TurnStore

__all__ = ["Store", "RedisError", "Budget", "BucketId", "BudgetStore", "JobStore", "Keys", "TurnRecord", "TurnStore",
           "redact"]


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


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tag_of(key) -> str:
    """The hash tag of a key (`...{tag}...`)."""
    key = _text(key)
    return key[key.index("{") + 1:key.index("}")]


class Store:
    """The bot's Redis: its client, every sub-store (`turns`, `jobs`, `images`) and every key (`keys`)."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "slackbot", *, chain_ttl: int, dedup_ttl: int,
                 journal_ttl: int = 3600):
        self.redis = redis
        self.p = prefix
        self.keys = Keys(prefix)
        self.chain_ttl = chain_ttl
        self.dedup_ttl = dedup_ttl
        self.turns = TurnStore(redis, prefix, chain_ttl=chain_ttl, dedup_ttl=dedup_ttl, journal_ttl=journal_ttl)
        self.budgets = BudgetStore(redis, prefix)
        self.jobs = JobStore(redis, prefix)
        self.agent = AgentStore(redis, prefix, session_ttl=chain_ttl)  # contexts, ratings, weekly usage
        self.images = ImageStore(redis, prefix, chain_ttl=chain_ttl)
        self.governance = GovernanceStore(redis, prefix, chain_ttl=chain_ttl)

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

    # --- one installation (an uninstall leaves nothing behind) -----------------------------------
    async def delete_team(self, team: str) -> list[str]:
        """Delete every key of one installation, on every primary of a cluster: its tagged keys and
        buckets, its research jobs, and its turns' and jobs' places in the schedules. Returns the
        interaction ids of its jobs that were still running (the caller cancels them at Gemini)."""
        if not team or not team.isalnum():
            raise ValueError("delete_team needs a Slack team or enterprise id")
        keys = {k for pattern in self.keys.team_patterns(team) for k in await self.prefix_keys(pattern)}
        running: list[str] = []
        for key in await self.prefix_keys(self.keys.jobs.any_job):
            job = await self.jobs.get(_tag_of(key))
            if job is not None and job.team == team:
                keys.add(key)
                await asyncio.gather(*(self.redis.zrem(due, job.id) for due in self.keys.jobs.all_due))
                if job.running and job.interaction_id:
                    running.append(job.interaction_id)
        for due in self.keys.turns.all_due:
            members = [m for m in await self.redis.zrange(due, 0, -1) if _text(m).startswith(f"{team}:")]
            if members:
                await self.redis.zrem(due, *members)
        keys = sorted(keys)
        for i in range(0, len(keys), 500):
            await self.redis.delete(*keys[i:i + 500])  # the cluster client splits it by slot
        return running

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

    async def adopt_for_research(self, team: str, channel: str, thread_ts: str, interaction: str,
                                 asker: str = "") -> None:
        """Follow-ups in a research report's thread chain onto the research. The status message's own thread
        has no chain before (compare-and-set from none); a people's thread it was asked in (`asker`: who
        asked) is taken over whatever it chained before (store/turns.py `_ADOPT`)."""
        if asker:
            await self.turns.adopt(team, channel, thread_ts, interaction, asker)
        else:
            await self.turns.move_head(team, channel, thread_ts, None, interaction)
