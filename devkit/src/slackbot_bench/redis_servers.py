"""Throwaway Redis servers on loopback for the bench and the tests: one node, a Redis Cluster, or a
primary with a replica watched by Sentinels. Real `redis-server` processes (Sentinel is the same binary
with `--sentinel`), no persistence, deleted when stopped. Blocking calls: start them before the load.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


class RedisMissing(RuntimeError):
    """redis-server or redis-cli is not installed."""


def binary(name: str = "redis-server") -> str:
    found = shutil.which(name)
    if not found:
        raise RedisMissing(f"{name} is not installed (Debian: the redis-server package)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(check, what: str, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


class RedisServer:
    """A redis-server process of our own, with any extra options."""

    def __init__(self, port: int | None = None, *args: str, cwd: str | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = args
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "RedisServer":
        self.proc = subprocess.Popen([binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", *self.args], cwd=self.cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            wait_for(lambda: answers(self.url), "redis-server")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_connect_timeout=1)

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _cluster_port() -> int:
    """A port free with its cluster bus port (port + 10000), so below the ephemeral range's top."""
    while True:
        port = random.randint(20000, 29999)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


class RedisClusterServers:
    """A real Redis Cluster of `masters` redis-servers on loopback, made with `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3):
        self.dir = tempfile.mkdtemp(prefix="slackbot-cluster-")
        self.nodes = [RedisServer(_cluster_port(), "--cluster-enabled", "yes", "--cluster-config-file",
                                  f"nodes-{i}.conf", "--cluster-node-timeout", "2000", cwd=self.dir)
                      for i in range(masters)]
        self.url = self.nodes[-1].url  # any node will do: the bot finds the others

    def start(self) -> "RedisClusterServers":
        try:
            for node in self.nodes:
                node.start()
            subprocess.run([binary("redis-cli"), "--cluster", "create",
                            *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            wait_for(lambda: all(n.client().cluster("info").get("cluster_state") == "ok" for n in self.nodes),
                     "the Redis Cluster")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServers:
    """A primary, a replica of it, and `sentinels` Sentinels watching them as `service`, which fail over
    within about `down_after_ms` plus an election once the primary dies. `url` is the bot's REDIS_URL."""

    def __init__(self, sentinels: int = 3, service: str = "slackbot", down_after_ms: int = 1000):
        self.dir = tempfile.mkdtemp(prefix="slackbot-sentinel-")
        self.service = service
        self.down_after_ms = down_after_ms
        self.primary = RedisServer()
        self.replica = RedisServer()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen] = []
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{service}"

    def start(self) -> "SentinelServers":
        try:
            self.primary.start()
            self.replica.args = ("--replicaof", "127.0.0.1", str(self.primary.port))
            self.replica.start()
            wait_for(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
                     "the replica's link")
            quorum = len(self.sentinel_ports) // 2 + 1
            for port in self.sentinel_ports:
                conf = Path(self.dir, f"sentinel-{port}.conf")
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} {quorum}\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} 10000\n"
                    f"sentinel parallel-syncs {self.service} 1\n")
                self.sentinels.append(subprocess.Popen([binary(), str(conf), "--sentinel"],
                                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda: all(self.sentinel_sees_replica(p) for p in self.sentinel_ports), "the Sentinels", 20)
        except BaseException:
            self.stop()
            raise
        return self

    def sentinel_sees_replica(self, port: int) -> bool:
        try:
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_connect_timeout=1)
            return bool(client.sentinel_slaves(self.service)) and \
                int(client.sentinel_master(self.service).get("num-other-sentinels", 0)) >= len(self.sentinel_ports) - 1
        except redis.RedisError:
            return False

    def primary_port(self) -> int | None:
        """The port Sentinels now name as the primary (None while they name none that answers)."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_connect_timeout=1)
                _, found = client.sentinel_get_master_addr_by_name(self.service)
                return int(found)
            except (redis.RedisError, TypeError):
                continue
        return None

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait()
        self.sentinels = []
        self.primary.stop()
        self.replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
