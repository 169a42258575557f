"""The Redis client REDIS_URL asks for: one node, a Redis Cluster (found out on connect), or Sentinel.

- `redis://host:port/0` naming a plain node: a client with a blocking pool.
- the same URL naming any node of a Redis Cluster (`INFO cluster` says `cluster_enabled:1`): the
  cluster client, which learns the other nodes from that one. No other setting.
- `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`: the primary Sentinel names
  for `service` (the password is the primary's; `?sentinel_password=` the Sentinels', if they have one).
A managed service that fails over by moving a DNS name needs nothing more than the plain URL: a
connection that meets a demoted primary (READONLY) or a dead one is dropped and made again, and a new
connection resolves the name again.

Every kind waits (up to `pool_timeout`) for a free connection in a burst instead of failing at once.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

SENTINEL_SCHEMES = ("redis+sentinel",)

# a pooled connection that died with a Redis restart, or reaches a primary demoted by a failover
# (READONLY), is dropped and made again (resolving the host name again), not reported
_RETRY = {"retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
          "retry_on_error": [RedisConnectionError, RedisTimeoutError, ReadOnlyError]}
_SOCKET = {"socket_connect_timeout": 2, "socket_timeout": 5, "decode_responses": True}


async def connect(url: str, *, max_connections: int, pool_timeout: float):
    """The client for `url`. A node that does not answer yields the plain client (start-up then says
    REDIS_URL does not answer)."""
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        return sentinel_client(url, max_connections=max_connections, pool_timeout=pool_timeout)
    plain = _plain(url, max_connections, pool_timeout)
    try:
        cluster = int((await plain.info("cluster")).get("cluster_enabled", 0)) == 1
    except (RedisError, OSError, ValueError):
        return plain
    if not cluster:
        return plain
    await plain.aclose()
    client = GatedCluster.from_url(url, max_connections=max_connections, pool_timeout=pool_timeout,
                                   health_check_interval=15, **_SOCKET)
    await client.initialize()
    return client


def is_cluster(client) -> bool:
    return isinstance(client, RedisCluster)


def _plain(url: str, max_connections: int, pool_timeout: float) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=pool_timeout,
                                                   health_check_interval=15, **_SOCKET, **_RETRY)
    return aioredis.Redis(connection_pool=pool)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool, asking the Sentinels for the primary, with the blocking pool's bounded wait."""


def sentinel_client(url: str, *, max_connections: int, pool_timeout: float) -> aioredis.Redis:
    parsed = urlsplit(url)  # not yarl: a netloc of several hosts is no URL authority it accepts
    parts = [p for p in parsed.path.split("/") if p]
    if not parts:
        raise ValueError("a redis+sentinel:// URL names the service: redis+sentinel://host:26379/mymaster")
    service, db = unquote(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    userinfo, _, hostlist = parsed.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if port.isdigit() else 26379))
    sentinel_kwargs: dict = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if sentinel_password := parse_qs(parsed.query).get("sentinel_password"):
        sentinel_kwargs["password"] = sentinel_password[0]
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(service, connection_pool_class=_BlockingSentinelPool, db=db,
                               username=unquote(user) or None, password=unquote(password) or None,
                               max_connections=max_connections, timeout=pool_timeout, health_check_interval=15,
                               **_SOCKET, **_RETRY)


class GatedCluster(RedisCluster):
    """The cluster client with a bounded wait for a connection. Its per-node pools are not blocking:
    past `max_connections` a command fails at once with MaxConnectionsError (a 200-message burst did, 202
    times). A semaphore in front admits at most `max_connections` commands (or pipelines, which take one
    connection per node) at a time, so no node's pool overflows; the rest wait up to `pool_timeout`."""

    def __init__(self, *args, pool_timeout: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(kwargs.get("max_connections", 100))
        self._gate_timeout = pool_timeout

    @asynccontextmanager
    async def gate(self):
        try:
            await asyncio.wait_for(self._gate.acquire(), self._gate_timeout)
        except asyncio.TimeoutError:
            raise RedisConnectionError(f"no Redis connection free within {self._gate_timeout:g}s") from None
        try:
            yield
        finally:
            self._gate.release()

    async def execute_command(self, *args, **kwargs):
        async with self.gate():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction=None, shard_hint=None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _GatedPipeline(self, transaction)


class _GatedPipeline(ClusterPipeline):
    async def execute(self, *args, **kwargs):
        async with self.cluster_client.gate():
            return await super().execute(*args, **kwargs)
