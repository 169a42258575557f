"""Past one Redis node (issue 18): a real 3-master Redis Cluster and a real Sentinel failover on loopback.

The core scenarios (chat, crash survival, research, load, the 200-message burst) run on the cluster
too (they are marked `cluster`); here is what only a cluster or a failover shows.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from conftest import bot_url, eventually, idle, open_store, start_bot, stop_bot
from test_chat import MENTION, joined

from slackbot_bench import redis_servers
from slackbot_emulators.slack import Channel


async def _ready(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"{url}/readyz") as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0


def _channels(slack_emu, n: int, prefix: str = "C_SPREAD") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for cid in ids:
        slack_emu.channels[cid] = Channel(cid, cid.lower(), False, {"U_ALICE", "UBOT"})
    return ids


# 18.1: REDIS_URL naming any node of a cluster is enough; the store finds out which kind it talks to
async def test_the_store_finds_out_it_talks_to_a_cluster(redis_cluster, redis_single, prefix):
    for node in redis_cluster.nodes:
        store = await open_store(node.url, prefix)
        try:
            assert store.cluster and len(await store.keys_per_node()) == 3
        finally:
            await store.close()
    store = await open_store(redis_single, prefix)
    try:
        assert not store.cluster
    finally:
        await store.close()


# 18.2: the keys of many threads spread over every master (a hash tag per thread, not one for all)
@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
async def test_keys_of_many_threads_spread_over_every_master(bot, slack_emu, gemini_emu, store):
    channels = _channels(slack_emu, 24)
    deliveries = await asyncio.gather(*(slack_emu.user_message(c, f"{MENTION} hello {c}") for c in channels))
    assert {x.status for d in deliveries for x in d.all} == {200}
    for d, c in zip(deliveries, channels):
        await eventually(lambda: joined(slack_emu, c, d.message.ts) == f"Reply1to:hello{c}", 20, message=c)
    await eventually(lambda: idle(bot_url(slack_emu)), 10, message="idle")
    heads = await store.keys_per_node(store.keys.turns.chain("*", "*", "*"))
    assert len(heads) == 3 and all(n > 0 for n in heads.values()), heads
    assert sum(heads.values()) == len(channels)
    every = await store.keys_per_node()
    print(f"\nkeys per master after {len(channels)} answers: {every}; chain heads: {heads}")


# 18.6: readiness writes one key in every schedule shard's slot: one master refusing writes is not ready
@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
async def test_readyz_is_red_while_any_master_refuses_writes(bot, redis_cluster):
    assert await _ready(bot.url) == 200
    for node in redis_cluster.nodes:  # whichever master it is, /readyz sees it
        admin = node.client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # out of memory: reads and PING work, writes fail
        try:
            assert await _ready(bot.url) == 503, f"node {node.port} refuses writes"
        finally:
            admin.config_set("maxmemory", "0")
        assert await _ready(bot.url) == 200


@pytest.fixture
def sentinel_servers():
    servers = redis_servers.SentinelServers().start()
    yield servers
    servers.stop()


# 18.5: Sentinel: the primary dies in the middle of answers; every accepted message is answered once
# after the replica's promotion, and /readyz is red while no primary answers, green again after
async def test_sentinel_failover_mid_answers_loses_no_accepted_message(settings_for, slack_emu, gemini_emu,
                                                                       sentinel_servers):
    s = sentinel_servers
    bot = await start_bot(settings_for(redis_url=s.url, redis_prefix="slackbot-failover"), slack_emu)
    try:
        channels = _channels(slack_emu, 6, "C_FO")
        texts = {c: " ".join(f"{c.lower()}w{j}" for j in range(40)) for c in channels}
        for c, text in texts.items():
            gemini_emu.script(match=f"tell {c}", text=text, chunk_chars=8, chunk_delay=0.1)  # ~2 s each
        before = [await slack_emu.user_message(c, f"{MENTION} tell {c}") for c in channels[:4]]
        assert {x.status for d in before for x in d.all} == {200}
        await eventually(lambda: all(joined(slack_emu, d.message.channel, d.message.ts) for d in before), 10,
                         message="every answer under way")
        start = time.monotonic()
        timeline = {"kill": 0.0}
        s.primary.stop()  # SIGKILL: no goodbye to anyone
        async def red() -> bool:
            return await _ready(bot.url) == 503
        await eventually(red, 20, interval=0.05, message="/readyz red")
        timeline["readyz red"] = time.monotonic() - start
        await eventually(lambda: s.primary_port() == s.replica.port, 30, interval=0.1, message="promotion")
        timeline["promotion"] = time.monotonic() - start

        async def green() -> bool:
            return await _ready(bot.url) == 200
        await eventually(green, 20, interval=0.05, message="/readyz green again")
        timeline["readyz green"] = time.monotonic() - start
        after = [await slack_emu.user_message(c, f"{MENTION} tell {c}") for c in channels[4:]]
        accepted = [d for d in before + after if 200 in [x.status for x in d.all]]
        assert len(accepted) == len(channels)

        def finished() -> list[str]:
            return [d.message.channel for d in accepted
                    if joined(slack_emu, d.message.channel, d.message.ts) == "".join(texts[d.message.channel].split())]
        await eventually(lambda: finished(), 30, interval=0.05, message="a first answer after the promotion")
        timeline["first answer after"] = time.monotonic() - start
        await eventually(lambda: len(finished()) == len(accepted), 40, interval=0.1, message="every answer, whole")
        await eventually(lambda: idle(bot.url), 20, message="idle")
        creates = [c["input"] for c in gemini_emu.model_creates()]
        for c in channels:
            assert sum(f"tell {c}" in str(i) for i in creates) == 1, f"{c} answered once"
            assert len(slack_emu.bot_messages(c)) >= 1
        print("\nfailover timeline (s after the kill): "
              + ", ".join(f"{name} {at:.2f}" for name, at in timeline.items()))
    finally:
        await stop_bot(bot)
        store = await open_store(s.url, "slackbot-failover")
        await store.delete_prefix()
        await store.close()


class _Name:
    """What a DNS name is to clients: new connections go to where it points now; open ones stay put."""

    def __init__(self, target: int):
        self.target = target
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> "_Name":
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _connection(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        self.server.close()


# 18.5: a managed service's DNS failover: the name moves to the promoted replica and the old primary
# turns read-only; connections already open to it (READONLY on every write) are made again
async def test_dns_failover_reaches_the_new_primary(settings_for, slack_emu, gemini_emu):
    old = redis_servers.RedisServer().start()
    new = redis_servers.RedisServer(None, "--replicaof", "127.0.0.1", str(old.port)).start()
    name = await _Name(old.port).start()
    bot = await start_bot(settings_for(redis_url=f"redis://127.0.0.1:{name.port}/0",
                                       redis_prefix="slackbot-dns"), slack_emu)
    try:
        first = await slack_emu.user_message("C_GENERAL", f"{MENTION} before")
        await eventually(lambda: joined(slack_emu, "C_GENERAL", first.message.ts) == "Reply1to:before", 10)
        await eventually(lambda: idle(bot.url), 10, message="idle")
        await eventually(lambda: new.client().info("replication").get("master_link_status") == "up", 10)
        new.client().execute_command("REPLICAOF", "NO", "ONE")  # the service promotes the replica,
        name.target = new.port  # moves the name to it,
        old.client().execute_command("REPLICAOF", "127.0.0.1", str(new.port))  # and the old primary follows it
        after = await slack_emu.user_message("C_GENERAL", f"{MENTION} after")
        assert [x.status for x in after.all] == [200] * len(after.all)
        await eventually(lambda: joined(slack_emu, "C_GENERAL", after.message.ts) == "Reply1to:after", 10)
        assert await _ready(bot.url) == 200
    finally:
        await stop_bot(bot)
        await name.stop()
        new.stop()
        old.stop()
