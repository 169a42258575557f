"""Holding against a hostile or unlucky workspace (issue 9), end to end over real wires.

Each test names the numbered point of issue 9 it proves.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import platform
import statistics
import sys
import time
from urllib.parse import urlencode

import aiohttp
import pytest
import redis.asyncio as aioredis

from conftest import SIGNING_SECRET, RedisServer, eventually, start_bot, stop_bot
from slackbot.store import BucketId, Store

from slackbot.store.keys import turn_id

PLACEHOLDER = "_Thinking…_"  # the old design's placeholder: never shown any more

MENTION = "<@UBOT>"


def bot_texts(slack_emu, channel, thread_ts=None):
    return [m.visible_text for m in slack_emu.bot_messages(channel, thread_ts)]


# --- 9.2 pathological text is linear -------------------------------------------------------------------

# Runs in its own process: a probe sharing the bot's event loop (or its GIL) would stall with it and
# measure nothing. Each line it prints: wall-clock time a GET /healthz was sent, its latency, its status.
_PROBE = """
import sys, threading, time, urllib.request
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    sent, started = time.time(), time.perf_counter()
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=30) as resp:
            resp.read()
            status = resp.status
    except Exception:
        status = 0
    print(sent, time.perf_counter() - started, status, flush=True)
    time.sleep(0.005)
"""


class HealthProbe:
    """GETs /healthz back to back from another process while the bot handles something."""

    def __init__(self, url: str):
        self.url = f"{url}/healthz"
        self.samples: list[tuple[float, float, int]] = []  # (sent at, latency s, status)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROBE, self.url, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.reader = asyncio.create_task(self._read())
        await eventually(lambda: len(self.samples) >= 3, message="probe running")

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            sent, latency, status = line.split()
            self.samples.append((float(sent), float(latency), int(status)))

    def between(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if start <= s[0] <= end]

    async def stop(self) -> None:
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 60)
        await self.reader


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


async def test_pathological_messages_are_answered_while_healthz_keeps_answering(bot, slack_emu, gemini_emu):
    # 9.2: a mention of 40,000 spaces, a DM of 40,000 tabs and a 100,000-character text are each answered
    # while /healthz keeps answering (the quadratic mention stripping stalled the loop 3.8-6.1 s).
    gemini_emu.script(match="lorem", text="Read it all.")
    probe = HealthProbe(bot.url)
    await probe.start()
    cases = [
        ("mention of 40,000 spaces", "C_GENERAL", f"{MENTION} hi" + " " * 40_000 + "?"),
        ("mention of 40,000 tabs", "C_GENERAL", f"hi {MENTION}" + "\t" * 40_000 + "?"),
        ("DM of 40,000 spaces", "D_ALICE", " " * 40_000 + "?"),
        ("DM of 40,000 tabs", "D_ALICE", "\t" * 40_000 + "?"),
        ("100,000-char mention", "C_GENERAL", MENTION + " lorem" * 20_000),
    ]
    figures = []
    try:
        for name, channel, text in cases:
            started = time.time()
            before = len(slack_emu.bot_messages(channel))
            delivery = await slack_emu.user_message(channel, text)
            assert all(d.status == 200 for d in delivery.all), name
            thread = delivery.message.ts if channel.startswith("C") else None
            await eventually(lambda: len(slack_emu.bot_messages(channel, thread)) > (0 if thread else before)
                             and PLACEHOLDER not in slack_emu.bot_messages(channel, thread)[-1].visible_text,
                             30, message=f"answer to the {name}")
            answered = time.time()
            # every probe sent while the message was handled has come back
            await eventually(lambda: probe.samples[-1][0] > answered, message="a probe after the answer")
            window = probe.between(started, answered)
            assert window and all(status == 200 for *_, status in window), name
            latencies = [latency * 1000 for _, latency, _ in window]
            figures.append((name, len(window), statistics.median(latencies), max(latencies), answered - started))
    finally:
        await probe.stop()
    print(f"\n/healthz from another process while the bot handled each message ({_machine()}):")
    for name, n, p50, worst, took in figures:
        print(f"  {name:26s} answered in {took:5.2f} s; /healthz probes={n:3d} p50={p50:6.1f} ms max={worst:7.1f} ms")
    # A guard against the absurd only (the quadratic version stalled seconds); the figures are printed.
    assert max(worst for _, _, _, worst, _ in figures) < 2000
    creates = gemini_emu.model_creates()
    assert any(c["input"].startswith("lorem lorem") and len(c["input"]) > 99_000 for c in creates)


# --- 9.3 nobody else's text becomes Slack markup --------------------------------------------------------

HOSTILE = "<!channel> <!here> <@U_BOB> <https://evil.example/login|Slack login> <!subteam^S1|@devs>"


async def test_gemini_text_never_pings_or_disguises_links(bot, slack_emu, gemini_emu):
    # 9.3: text Gemini was fed (a web page, a user's question echoed back) reaches Slack as typed, not as
    # markup: the markdown block and the notification fallback both carry it escaped.
    gemini_emu.script(match="summarise", text=f"The page says: {HOSTILE} and `List<String>` is fine.")
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} summarise that page")
    root = delivery.message.ts
    await eventually(lambda: any("page says" in t and PLACEHOLDER not in t
                                 for t in bot_texts(slack_emu, "C_GENERAL", root)), message="answer")
    # what a reader sees: every bot message of the answer (posted, edited or streamed), joined
    await eventually(lambda: "is fine." in " ".join(bot_texts(slack_emu, "C_GENERAL", root)), message="whole")
    block_text = " ".join(bot_texts(slack_emu, "C_GENERAL", root))
    fallbacks = " ".join(str(c.params.get("text", "")) for c in slack_emu.calls
                         if c.method in ("chat.postMessage", "chat.update") and c.ok)
    for token in ("<!channel>", "<!here>", "<@U_BOB>", "<https://evil.example/login|Slack login>",
                  "<!subteam^S1|@devs>"):
        assert token not in block_text and token not in fallbacks
        assert token.replace("<", "&lt;").replace(">", "&gt;") in block_text
    assert "`List<String>`" in block_text  # code keeps its brackets


# --- 9.7 bad requests get 4xx, never a traceback -------------------------------------------------------

def _signed_headers(body: bytes, timestamp: str, content_type: str = "application/json") -> dict:
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def _payload(**odd) -> str:
    """A signed Cancel click (form-encoded `payload`) with some field in a shape Slack never sends."""
    payload = {"type": "block_actions", "user": {"id": "U_ALICE"}, "team": {"id": "T0001"},
               "channel": {"id": "C_GENERAL"}, "actions": [{"action_id": "research_cancel", "value": "j1"}],
               "container": {"type": "message", "message_ts": "1.1", "channel_id": "C_GENERAL"}, **odd}
    return urlencode({"payload": json.dumps(payload)})


def _tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or r.name.startswith("aiohttp")]


async def test_bad_requests_get_4xx_and_one_line_never_a_traceback(bot, slack_emu, gemini_emu, caplog):
    # 9.7: found 500 + an aiohttp.server traceback, from anyone, unauthenticated.
    caplog.set_level(logging.INFO)
    event = {"type": "event_callback", "team_id": "T0001", "event": {
        "type": "app_mention", "user": "U_ALICE", "text": f"{MENTION} hi", "channel": "C_GENERAL", "ts": "5.1"}}
    body = json.dumps(event).encode()
    now = int(time.time())
    cases = [
        ("float timestamp", body, _signed_headers(body, f"{now}.5"), 401),
        ("malformed timestamp", body, _signed_headers(body, "yesterday"), 401),
        ("non-ASCII digits", body, _signed_headers(body, "١٢٣٤٥٦٧٨٩٠"), 401),
        ("huge timestamp", body, _signed_headers(body, "9" * 400), 401),
        ("no timestamp", body, {"Content-Type": "application/json", "X-Slack-Signature": "v0=00"}, 401),
        ("non-ASCII signature", body, {**_signed_headers(body, str(now)), "X-Slack-Signature": "v0=é"}, 401),
        ("invalid UTF-8, signed", b"\xff\xfe" + body, _signed_headers(b"\xff\xfe" + body, str(now)), 400),
        ("invalid UTF-8, unsigned", b"\xff\xfe", {"Content-Type": "application/json"}, 401),
        ("bogus charset, unsigned", body, {"Content-Type": "application/json; charset=bogus-8"}, 401),
    ]
    async with aiohttp.ClientSession() as http:
        for name, data, headers, expected in cases:
            caplog.clear()
            async with http.post(f"{bot.url}/slack/events", data=data, headers=headers) as resp:
                assert resp.status == expected, (name, resp.status, await resp.text())
                assert "Traceback" not in await resp.text()
            refused = [r for r in caplog.records if r.getMessage() == "Slack request refused"]
            assert len(refused) == 1, name
            assert _tracebacks(caplog) == [], (name, [r.getMessage() for r in _tracebacks(caplog)])
    # Signed but malformed: acked (a retry would fail the same way) or Bolt's own 404, never a traceback.
    for name, data in [("not JSON", "{not json"), ("event not an object", '{"type":"event_callback","event":"x"}'),
                       ("form without payload", "a=1&b=2"), ("payload not JSON", "payload=%7Bnope"),
                       ("actions not a list", _payload(actions="x")), ("no actions", _payload(actions=[])),
                       ("actions of strings", _payload(actions=["x"]))]:
        caplog.clear()
        content_type = "application/json" if data.startswith("{") else "application/x-www-form-urlencoded"
        delivery = await slack_emu.send_signed(data, content_type)
        assert delivery.status in (200, 404), (name, delivery.status)
        assert _tracebacks(caplog) == [], (name, [r.getMessage() for r in _tracebacks(caplog)])
    # A correctly signed request is Slack's, whatever charset it claims (Slack sends UTF-8): answered.
    caplog.clear()
    delivery = await slack_emu.send_signed(body, "application/json; charset=bogus-8")
    assert delivery.status == 200
    await eventually(lambda: bot_texts(slack_emu, "C_GENERAL", "5.1") == ["Reply 1 to: hi"], message="answer")
    assert _tracebacks(caplog) == []


# --- 9.8 readiness tells the truth ----------------------------------------------------------------------

async def _ready(http, url) -> tuple[int, dict]:
    async with http.get(f"{url}/readyz") as resp:
        return resp.status, await resp.json()


async def test_readyz_fails_while_redis_refuses_writes(settings_for, slack_emu):
    # 9.8: found 200 from /readyz while every event got 503 (Redis out of memory).
    server = RedisServer().start()
    admin = aioredis.from_url(server.url, decode_responses=True)
    bot = await start_bot(settings_for(redis_url=server.url), slack_emu)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _ready(http, bot.url))[0] == 200
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # out of memory: reads and PING work, writes fail
            assert await admin.ping()
            status, body = await _ready(http, bot.url)
            assert status == 503 and body["redis"] is False
            delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} are you there?")
            assert 503 in [d.status for d in delivery.all]  # the mention is refused: /readyz now agrees
            await admin.config_set("maxmemory", "0")
            assert (await _ready(http, bot.url))[0] == 200

            # A read-only replica (its master is unreachable): also not ready.
            await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
            status, body = await _ready(http, bot.url)
            assert status == 503 and body["redis"] is False
            await admin.execute_command("REPLICAOF", "NO", "ONE")
            assert (await _ready(http, bot.url))[0] == 200
    finally:
        await stop_bot(bot)
        await admin.aclose()
        server.stop()


# --- issue 25.11: readiness means it can work -----------------------------------------------------------
async def test_readyz_is_red_until_slack_took_the_bot_token(settings_for, slack_emu):
    slack_emu.fail_next("auth.test", "ratelimited", times=2, retry_after=1)  # Slack busy at start-up
    bot = await start_bot(settings_for(), slack_emu, ready=False)
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await _ready(http, bot.url)
            assert status == 503 and body["slack"] is False and body["redis"] is True
            await eventually(async_ready(http, bot.url), 10, message="200 once auth.test answered")
        assert [c.ok for c in slack_emu.calls_to("auth.test")][:3] == [False, False, True]
    finally:
        await stop_bot(bot)


async def test_socket_mode_readyz_is_red_until_the_connection_is_up(settings_for, slack_emu):
    slack_emu.fail_next("apps.connections.open", "ratelimited", times=2, retry_after=1)
    settings = settings_for(slack_app_token=slack_emu.app_token, slack_signing_secret="")
    bot = await start_bot(settings, ready=False)
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await _ready(http, bot.url)
            assert status == 503 and body["slack"] is False
            await eventually(async_ready(http, bot.url), 10, message="200 once the socket is up")
        assert len(slack_emu.sockets) == 1
        assert [c.ok for c in slack_emu.calls_to("apps.connections.open")] == [False, False, True]
    finally:
        await stop_bot(bot)
    await eventually(lambda: not slack_emu.sockets, 5, message="the socket closed at shutdown")


def async_ready(http, url):
    async def check() -> bool:
        return (await _ready(http, url))[0] == 200
    return check


# --- 9.10 Slack Connect ---------------------------------------------------------------------------------

async def test_partner_org_reply_continues_the_thread_under_the_installing_workspace(
        bot, slack_emu, gemini_emu, store):
    # 9.10: found the reply ignored and keys written under the partner's team id.
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} remember the word teal")
    root = first.message.ts
    await eventually(lambda: bot_texts(slack_emu, "C_GENERAL", root) == ["Reply 1 to: remember the word teal"],
                     message="first answer")
    head = await eventually(lambda: store.turns.chain_head("T0001", "C_GENERAL", root), message="head")
    answer = "It was teal. " * 30  # streamed by edits, so the edit budget is spent
    gemini_emu.script(match="which word", text=answer, chunk_chars=10, chunk_delay=0.02)
    reply = await slack_emu.user_message("C_GENERAL", "which word was it?", thread_ts=root,
                                         user="U_PARTNER", user_team="T_PARTNER")
    assert reply.status == 200 and reply.payload["event"]["team"] == "T_PARTNER"
    assert reply.payload["authorizations"][0]["team_id"] == "T0001"
    await eventually(lambda: "".join(" ".join(bot_texts(slack_emu, "C_GENERAL", root)[1:]).split())
                     == "".join(answer.split()), message="the partner's reply answered in the thread")
    assert gemini_emu.model_creates()[-1]["previous_interaction_id"] == head
    keys = await store.prefix_keys()
    assert not [k for k in keys if "T_PARTNER" in k], keys
    # the budgets spent are the installation's
    assert any(k.startswith(f"{store.p}:bucket:") and "T0001" in k for k in keys)
    assert store.keys.turns.seen(turn_id("T0001", "C_GENERAL", root, reply.message.ts)) in keys


# --- 25.10 name look-ups are bounded --------------------------------------------------------------------

async def test_a_message_mentioning_1500_people_costs_a_bounded_number_of_name_lookups(
        bot, slack_emu, gemini_emu, redis_url, prefix):
    # 25.10: found 1,501 users.info calls for one message (1,399 of them answered 429).
    ids = [f"U{n:05d}X" for n in range(1500)]
    gemini_emu.script(match="who are", text="A crowd.")
    await slack_emu.user_message("D_ALICE", "who are <@U_BOB> and " + " ".join(f"<@{u}>" for u in ids) + "?")
    await eventually(lambda: bot_texts(slack_emu, "D_ALICE") == ["A crowd."], message="the answer")
    lookups = [c for c in slack_emu.calls if c.method == "users.info"]
    assert 1 <= len(lookups) <= 20  # SLACKBOT_NAME_LOOKUPS_PER_TURN's default
    assert not [c for c in lookups if c.status == 429]
    sent = gemini_emu.model_creates()[-1]["input"]
    assert sent.startswith("who are @Bob Brown and ")  # names within the cap, the rest stay ids
    assert f"@{ids[-1]}?" in sent and sent.count("@U") >= 1500 - 20
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:  # spent through the workspace's bucket, shared by every replica
        names = Store(client, prefix, chain_ttl=60, dedup_ttl=60).budgets.key(BucketId("users.info", "T0001"))
        assert await client.exists(names)
    finally:
        await client.aclose()


# --- issue 25.3: streamed pieces never cut a Slack token -------------------------------------------------

LONG_LINK = "<https://evil.example/" + "a" * 400 + "|Slack login page, sign in again>"


def _raw_links(slack_emu) -> list[str]:
    """Every place a raw `<https://evil…` reached Slack: any string of any call, and each native stream's
    whole text (appends are concatenated by Slack, so a token split across them would be live there)."""
    sent = [str(v) for c in slack_emu.calls for v in c.params.values()]
    sent += [s.markdown for s in slack_emu.streams.values()]
    return [s for s in sent if "<https://evil" in s]


@pytest.mark.parametrize("chars", [3500, 300])  # the token fits in a message; it is longer than one
@pytest.mark.parametrize("where", ["C_GENERAL", "D_ALICE"])  # a thread's native stream; a DM's posts and edits
async def test_a_long_labelled_link_is_neutralised_in_every_piece(where, chars, settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(message_chars=chars), slack_emu)
    try:
        text = f"Your session expired. {LONG_LINK} and then carry on as before."
        gemini_emu.script(match="session", text=text, chunk_chars=5, chunk_delay=0.01)
        d = await slack_emu.user_message(where, f"{MENTION} session" if where == "C_GENERAL" else "session")
        thread = d.message.ts if where == "C_GENERAL" else None
        await eventually(lambda: "carry on as before." in " ".join(bot_texts(slack_emu, where, thread)), 20,
                         message="the whole answer")
        if where == "C_GENERAL":
            assert slack_emu.calls_to("chat.appendStream"), "the answer streamed natively"
        assert _raw_links(slack_emu) == []
        assert "&lt;https://evil.example/" in " ".join(bot_texts(slack_emu, where, thread))
    finally:
        await stop_bot(bot)
