"""Load and faults: shared budgets, first text, stream resume, Redis outages, intake.

Figures (latencies, CPU) live in `slackbot bench`; these tests assert only what must stay true.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

import aiohttp
import pytest

from conftest import RedisServer, events, eventually, free_port, idle, start_bot, stop_bot
from test_chat import MENTION, answered, head, joined, thread_bot_texts, visible_updates

from slackbot_emulators.slack import Channel
from slackbot.store import Budget, BucketId

EDITS = BucketId("chat.update", "T")
STREAM_STARTS = BucketId("chat.startStream", "T0001")  # drained: no native stream to be had


# --- 1. one budget per workspace, fair, finals first (`store`: conftest's, the bot's own Store) ---------
async def test_budget_queues_fairly_and_finals_skip_the_queue(store):
    budget = Budget(rate=20.0, capacity=3.0, reserve=1.0)
    # drain the bucket down to its reserve
    while await store.budgets.take(EDITS, budget, member="drain", priority=False) == 0:
        pass
    grants: list[str] = []

    async def answer(name: str, rounds: int):
        for _ in range(rounds):
            while (wait := await store.budgets.take(EDITS, budget, member=name, priority=False)) > 0:
                await asyncio.sleep(wait)
            grants.append(name)

    await asyncio.gather(*(answer(f"a{i}", 4) for i in range(5)))
    counts = Counter(grants)
    assert set(counts.values()) == {4}
    # round robin: within any window of 5 consecutive grants no answer appears twice (after warm-up)
    for start in range(5, len(grants) - 5):
        window = grants[start:start + 5]
        assert max(Counter(window).values()) <= 2, grants
    # the reserve is for finals: a final gets a token while intermediates wait
    while await store.budgets.take(EDITS, budget, member="x", priority=False) == 0:
        pass
    assert await store.budgets.take(EDITS, budget, member="x", priority=False) > 0
    assert await store.budgets.take(EDITS, budget, priority=True) == 0


async def test_final_edits_are_granted_in_arrival_order(store):
    budget = Budget(rate=20.0, capacity=2.0, reserve=1.0)
    while await store.budgets.take(EDITS, budget, member="drain", priority=True) == 0:
        pass
    order = ["first", "second", "third", "fourth"]
    for name in order:  # each joins the queue in this order
        assert await store.budgets.take(EDITS, budget, member=name, priority=True) > 0
    grants: list[str] = []

    async def final(name: str):
        while (wait := await store.budgets.take(EDITS, budget, member=name, priority=True)) > 0:
            await asyncio.sleep(min(wait, 0.01))  # impatient askers: order must still hold
        grants.append(name)
    await asyncio.gather(*(final(n) for n in reversed(order)))
    assert grants == order
    # while finals wait, intermediate edits get nothing
    assert await store.budgets.take(EDITS, budget, member="late", priority=True) > 0
    assert await store.budgets.take(EDITS, budget, member="mid", priority=False) > 0


async def test_429_pauses_the_whole_budget(store):
    budget = Budget(rate=10.0, capacity=10.0)
    assert await store.budgets.take(EDITS, budget) == 0
    await store.budgets.penalize(EDITS, 2.0)
    wait = await store.budgets.take(EDITS, budget)
    assert 1.5 < wait <= 2.0
    assert await store.budgets.take(EDITS, budget, member="other", priority=False) > 1.5


@pytest.mark.parametrize("replicas", [1, 2])
async def test_many_answers_share_the_budget_without_429(settings_for, slack_emu, gemini_emu, replicas):
    """At or under the emulator's chat.update limit: no 429 at all, every final text lands, nobody starves."""
    # a budget well below the demand: 12 answers want ~3 edits/s each, the workspace allows 4.5/s in all
    slack_emu.set_rate_limit("chat.update", per_minute=300, burst=6, scope="team")
    # one long run of words and no paragraph: a message grown by edits shows it from a quarter message on
    bots = [await start_bot(settings_for(edit_budget_per_minute=270, edit_budget_burst=5, edit_final_reserve=2,
                                         edit_min_interval=0.3, message_chars=400), None) for _ in range(replicas)]
    try:
        texts = {}
        deliveries = []
        for i in range(12):
            text = " ".join(f"a{i}w{j}" for j in range(60))
            texts[f"question {i}"] = text
            gemini_emu.script(match=f"question {i}", text=text, chunk_chars=10, chunk_delay=0.2)  # ~6 s each
        channels = [f"C_LOAD{n}" for n in range(4)]  # Slack allows ~1 post/s per channel: spread them
        for cid in channels:
            slack_emu.channels[cid] = Channel(cid, cid.lower(), False, {"U_ALICE", "UBOT"})
        for i in range(12):  # deliveries alternate between replicas, as a load balancer would
            slack_emu.app_url = f"{bots[i % replicas].url}/slack/events"
            deliveries.append(await slack_emu.user_message(channels[i % 4], f"{MENTION} question {i}"))

        def all_final():
            return all(joined(slack_emu, d.message.channel, d.message.ts) == "".join(texts[f"question {i}"].split())
                       for i, d in enumerate(deliveries))
        await eventually(all_final, 60, interval=0.2, message="every final text")
        assert slack_emu.ratelimited() == 0
        for d in deliveries:
            # every answer became visible before it was whole: it grew (edits, appends) or continued (posts)
            assert visible_updates(slack_emu, d.message.channel, d.message.ts) >= 2, "an answer stood still"
    finally:
        for b in bots:
            await stop_bot(b)


# --- 2. sign of life at once, first words without waiting for the edit budget --------------------
def first_message_calls(slack_emu, thread_ts):
    return [c for c in slack_emu.calls if c.method in ("chat.postMessage", "chat.startStream") and c.ok
            and c.params.get("thread_ts") == thread_ts]


async def test_first_words_are_posted_not_edited(bot, slack_emu, gemini_emu):
    gemini_emu.script(text="Hello from Gemini, streaming now.", chunk_chars=6, chunk_delay=0.05)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} hi")
    await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts)
    first_calls = first_message_calls(slack_emu, d.message.ts)
    assert len(first_calls) == 1
    first = str(first_calls[0].params)
    assert "Hello" in first and "Thinking" not in first, "the first message carries the first words"


async def test_slow_first_token_shows_thread_status_then_text(bot, slack_emu, gemini_emu):
    """Sign of life: the thread status with loading messages; no placeholder message that costs an edit."""
    gemini_emu.script(text="Worth the wait.", first_token_delay=1.2)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} think hard")
    status = await eventually(lambda: slack_emu.calls_to("assistant.threads.setStatus"), 3, message="status")
    assert status[0].params["thread_ts"] == d.message.ts and status[0].params["status"]
    assert status[0].params["loading_messages"], "rotating loading messages"
    assert thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts) == [], "nothing posted before the words"
    await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts) == ["Worth the wait."], 5)
    first_calls = first_message_calls(slack_emu, d.message.ts)
    assert len(first_calls) == 1 and "Worth" in str(first_calls[0].params)
    await eventually(lambda: slack_emu.current_status("C_GENERAL", d.message.ts) is None, 5,
                     message="the status is gone once the answer is there")


# --- 3. Gemini stream resume ---------------------------------------------------------------------
async def test_broken_stream_resumes_in_the_same_message(bot, slack_emu, gemini_emu, redis_url, prefix):
    text = " ".join(f"token{i}" for i in range(80))
    gemini_emu.script(text=text, chunk_chars=10, chunk_delay=0.01, break_after_events=12)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} resume me")
    await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts) == [text], 10,
                     message="whole text once, in one message")
    resumes = [r for r in gemini_emu.requests if r["method"] == "GET" and "last_event_id" in (r["query"] or {})]
    assert len(resumes) == 1
    assert len(gemini_emu.model_creates()) == 1, "no second answer"
    new_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", d.message.ts))
    assert gemini_emu.interaction(new_head)["output_text"] == text


async def test_stream_that_cannot_resume_says_so_and_keeps_head(bot, slack_emu, gemini_emu, redis_url, prefix):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} first")
    await answered(slack_emu, gemini_emu, "C_GENERAL", first.message.ts)
    before = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", first.message.ts))
    gemini_emu.script(match="fragile", text="partial " * 40, chunk_chars=8, break_after_events=6, break_resume=True)
    await slack_emu.user_message("C_GENERAL", "fragile", thread_ts=first.message.ts)
    line = "_My connection to Gemini broke before the answer was complete. Please ask again._"
    texts = await eventually(lambda: (t := thread_bot_texts(slack_emu, "C_GENERAL", first.message.ts))[1:]
                             and t[1].endswith(line) and t, 10, message="the failure line")
    assert texts[1].startswith("partial partial"), "what was shown stays, followed by one plain line"
    assert await head(redis_url, prefix, "C_GENERAL", first.message.ts) == before


# --- 4. Redis outage ----------------------------------------------------------------------------
async def test_redis_outage_fails_readiness_and_events_are_redelivered_once(settings_for, slack_emu, gemini_emu):
    server = RedisServer().start()
    bot = await start_bot(settings_for(redis_url=server.url), slack_emu)
    restarted = None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{bot.url}/readyz") as r:
                assert r.status == 200
            server.stop()
            async with http.get(f"{bot.url}/readyz") as r:
                assert r.status == 503
            refused, duplicates = await events(bot.url, "redis_down"), await events(bot.url, "duplicate")
            d = await slack_emu.user_message("C_GENERAL", f"{MENTION} are you there?")
            mention = next(x for x in d.all if x.payload["event"]["type"] == "app_mention")
            assert mention.status == 503, "not acked: Slack will redeliver"
            assert await events(bot.url, "redis_down") - refused >= 1, "counted as refused, nothing started"
            restarted = RedisServer(server.port).start()
            await eventually(lambda: _ready(http, bot.url), 10, message="ready again")
            for retry in (1, 2):
                for x in d.all:
                    assert (await slack_emu.redeliver(x, retry_num=retry)).status == 200
            # the second round was acked as duplicates, so once the one answer is done nothing else is coming
            assert await events(bot.url, "duplicate") - duplicates >= 1
            await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts)
            assert len(slack_emu.bot_messages("C_GENERAL", d.message.ts)) == 1
            assert len(gemini_emu.model_creates()) == 1
    finally:
        await stop_bot(bot)
        if restarted:
            restarted.stop()


async def _ready(http, url):
    async with http.get(f"{url}/readyz") as r:
        return r.status == 200


async def _not_ready(http, url):
    async with http.get(f"{url}/readyz") as r:
        return r.status == 503 and (await r.json())["accepting"] is False


async def test_redis_restart_mid_answer_does_not_crash(settings_for, slack_emu, gemini_emu):
    server = RedisServer().start()
    bot = await start_bot(settings_for(redis_url=server.url), slack_emu)
    restarted = None
    try:
        text = " ".join(f"w{i}" for i in range(150))
        gemini_emu.script(text=text, chunk_chars=10, chunk_delay=0.03)
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} long one")
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts), 5)
        server.stop()
        await asyncio.sleep(0.6)
        restarted = RedisServer(server.port).start()
        await eventually(lambda: joined(slack_emu, "C_GENERAL", d.message.ts) == "".join(text.split()), 20,
                         message="final text after the restart")
        assert not bot.task.done()
        d2 = await slack_emu.user_message("C_GENERAL", f"{MENTION} still fine?")
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d2.message.ts) == ["Reply 1 to: still fine?"], 10)
    finally:
        await stop_bot(bot)
        if restarted:
            restarted.stop()


# --- 5. sustained intake: acked, answered once, nothing left behind ------------------------------
@pytest.mark.cluster
async def test_sustained_intake_acks_everything_and_leaves_nothing_behind(bot, slack_emu, gemini_emu, store):
    rng = random.Random(7)
    gemini_emu.config["chunk_delay"] = 0.0
    channels = [f"C_LOAD{n}" for n in range(6)]
    for cid in channels:
        slack_emu.channels[cid] = Channel(cid, cid.lower(), False, {"U_ALICE", "U_BOB", "UBOT"})
    threads = []
    for cid in channels[:3]:
        d = await slack_emu.user_message(cid, f"{MENTION} seed {cid}")
        threads.append((cid, d.message.ts))
    for cid, ts in threads:
        await answered(slack_emu, gemini_emu, cid, ts)
    deliveries = []

    async def one(i: int):
        roll, cid = rng.random(), rng.choice(channels)
        if roll < 0.02:
            return await slack_emu.user_message(cid, f"{MENTION} burst {i}")
        if roll < 0.06:
            tcid, ts = rng.choice(threads)
            return await slack_emu.user_message(tcid, f"reply {i}", thread_ts=ts)
        if roll < 0.10:  # a people's thread the bot was never asked into
            return await slack_emu.user_message(cid, f"aside {i}", thread_ts="1600000000.000100")
        if roll < 0.5:
            return await slack_emu.user_message(cid, f"chatter {i}")
        return await slack_emu.deliver_event({"type": "message", "subtype": "message_changed", "channel": cid,
                                              "ts": f"1700000{i}.000100", "channel_type": "channel",
                                              "message": {"text": "x", "user": "U_BOB"}})
    for second in range(3):  # ~100 events a second for 3 seconds (the benchmark runs 200/s for 30 s)
        batch = [asyncio.create_task(one(second * 100 + i)) for i in range(100)]
        deliveries += await asyncio.gather(*batch)
        await asyncio.sleep(0.2)
    statuses = Counter(x.status for d in deliveries for x in (d.all or [d]))
    assert set(statuses) == {200}, statuses
    for d in deliveries[:60]:  # replayed deliveries change nothing
        for x in d.all or [d]:
            await slack_emu.redeliver(x, retry_num=1)
    await eventually(lambda: idle(bot.url), 60, interval=0.2, message="all answers finished")
    inputs = Counter(c["input"] for c in gemini_emu.model_creates())
    assert inputs and all(n == 1 for n in inputs.values()), "a message was answered twice"
    assert not any(k.startswith("aside") or k.startswith("chatter") for k in inputs)
    for d in deliveries:
        if d.message is not None and "burst" in d.message.text:
            question = d.message.text.removeprefix(f"{MENTION} ")
            assert joined(slack_emu, d.message.channel, d.message.ts) == "".join(f"Reply 1 to: {question}".split())
    # no per-event state in Redis without a TTL
    keys = await store.prefix_keys()
    assert keys
    assert [k for k in keys if await store.redis.ttl(k) == -1] == []


# Graceful shutdown (deploy issue): stop taking events, let answers in flight finish
async def test_shutdown_refuses_new_events_and_finishes_answers_in_flight(settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(shutdown_grace_seconds=15), slack_emu)
    text = " ".join(f"w{i}" for i in range(60))
    gemini_emu.script(text=text, chunk_chars=10, chunk_delay=0.3)  # ~2 s
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} long answer")
    await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts), 5)
    bot.stop.set()
    async with aiohttp.ClientSession() as http:
        await eventually(lambda: _not_ready(http, bot.url), 5, message="the bot says it is shutting down")
    late = await slack_emu.user_message("C_GENERAL", f"{MENTION} too late")
    mention = next(x for x in late.all if x.payload["event"]["type"] == "app_mention")
    assert mention.status == 503, "Slack redelivers it to another replica"
    await asyncio.wait_for(bot.task, 20)
    assert joined(slack_emu, "C_GENERAL", d.message.ts) == "".join(text.split()), "the whole answer landed"


async def test_final_text_lands_by_post_when_the_edit_budget_is_spent(settings_for, slack_emu, gemini_emu, store):
    """Finals never wait behind an edit queue: with the edit budget spent, the rest is posted at once."""
    settings = settings_for(edit_budget_per_minute=1, edit_budget_burst=2, edit_final_reserve=0, stall_seconds=1.0)
    bot = await start_bot(settings, slack_emu)
    try:
        while await store.budgets.take_now(STREAM_STARTS, Budget(18 / 60, 3)) == 0:
            pass
        text = "First paragraph arrives.\n\n" + " ".join(f"w{i}" for i in range(40)) + ". The end."
        gemini_emu.script(text=text, chunk_chars=12, chunk_delay=0.05)
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} go on")
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts), 5)
        budget = Budget(1 / 60, 2, 0)
        while await store.budgets.take_now(BucketId("chat.update", "T0001"), budget) == 0:  # another answer spent it
            pass
        await eventually(lambda: joined(slack_emu, "C_GENERAL", d.message.ts) == "".join(text.split()), 15,
                         message="the whole answer")
        assert len(slack_emu.bot_messages("C_GENERAL", d.message.ts)) >= 2, "the rest came as a new message"
        assert slack_emu.ratelimited() == 0
    finally:
        await stop_bot(bot)


# --- 6. one Slack error never loses an answer silently (issue 25, point 2) ----------------------
BAD_GATEWAY = {"status": 502, "content_type": "text/html"}  # a proxy's error page: no JSON at all
PLAIN_500 = {"status": 500, "content_type": "text/plain"}  # "500 Internal Server Error", as a str
SLACK_DOWN_LINE = "_Slack didn't take my answer just now, so it isn't shown. Please ask again._"


def answers_done(caplog) -> list:
    return [r for r in caplog.records if r.getMessage() == "answer done"]


@pytest.mark.parametrize("method, where, fault", [
    ("chat.postMessage", "dm", BAD_GATEWAY),
    ("chat.postMessage", "dm", PLAIN_500),
    ("chat.postMessage", "thread", BAD_GATEWAY),  # native streams' budget spent: the first words are posted
    # Slack posted it, then its gateway timed out: the message is found in the thread, not posted twice
    ("chat.postMessage", "thread", {"status": 504, "content_type": "text/html", "applied": True}),
    ("chat.startStream", "thread", BAD_GATEWAY),
    ("chat.appendStream", "thread", BAD_GATEWAY),
    ("chat.update", "dm", {"status": 503, "error": "service_unavailable"}),
], ids=["post-dm-502", "post-dm-text500", "post-thread-502", "post-thread-504-applied", "start-502", "append-502",
        "update-503"])
async def test_one_slack_5xx_still_shows_the_whole_answer_once(settings_for, slack_emu, gemini_emu, store, caplog,
                                                               method, where, fault):
    caplog.set_level(logging.INFO)
    # "dm": a DM answered at the top level, by posts and edits (without agent messaging: no thread, no stream)
    bot = await start_bot(settings_for(agent_messaging=where != "dm"), slack_emu)
    try:
        if where == "thread" and method == "chat.postMessage":
            while await store.budgets.take_now(STREAM_STARTS, Budget(18 / 60, 3)) == 0:
                pass
        text = "Here is the answer.\n\n" + " ".join(f"w{i}" for i in range(60)) + ". The end."
        gemini_emu.script(text=text, chunk_chars=12, chunk_delay=0.05)  # long enough to grow by appends and edits
        slack_emu.fail_next(method, fault.get("error", "server_error"), status=fault["status"],
                            content_type=fault.get("content_type", "application/json"),
                            applied=fault.get("applied", False))
        channel = "D_ALICE" if where == "dm" else "C_GENERAL"
        d = await slack_emu.user_message(channel, "a question" if where == "dm" else f"{MENTION} a question")
        thread = None if where == "dm" else d.message.ts
        done = await eventually(lambda: answers_done(caplog), 20, message="the answer's log line")
        assert [c.status for c in slack_emu.calls_to(method)][:1] == [fault["status"]], "the fault was met"
        assert joined(slack_emu, channel, thread) == "".join(text.split()), "the whole answer, exactly once"
        assert done[0].outcome == "completed"
        assert not [r for r in caplog.records if r.exc_info], "no traceback"
    finally:
        await stop_bot(bot)


@pytest.mark.parametrize("fault", [BAD_GATEWAY, PLAIN_500], ids=["502", "text500"])
async def test_slack_down_for_an_answer_says_one_plain_line_and_the_conversation_goes_on(
        settings_for, slack_emu, gemini_emu, caplog, fault):
    caplog.set_level(logging.INFO)
    bot = await start_bot(settings_for(slack_retry_attempts=3), slack_emu)
    try:
        # every try of the answer's message fails; the one plain line then gets through
        slack_emu.fail_next("chat.postMessage", status=fault["status"], content_type=fault["content_type"], times=3)
        await slack_emu.user_message("D_ALICE", "first question")
        await eventually(lambda: thread_bot_texts(slack_emu, "D_ALICE", None) == [SLACK_DOWN_LINE], 20,
                         message="the one plain line")
        assert [r.outcome for r in answers_done(caplog)] == ["failed"]
        # Slack refuses even the line: nobody sees anything, but the log says so
        slack_emu.fail_next("chat.postMessage", status=fault["status"], content_type=fault["content_type"], times=99)
        await slack_emu.user_message("D_ALICE", "second question")
        await eventually(lambda: len(answers_done(caplog)) == 2, 30, message="the second answer's log line")
        assert answers_done(caplog)[1].outcome == "failed"
        assert thread_bot_texts(slack_emu, "D_ALICE", None) == [SLACK_DOWN_LINE]
        assert not [r for r in caplog.records if r.exc_info], "no traceback"
        slack_emu.heal()
        await slack_emu.user_message("D_ALICE", "third question")
        await eventually(lambda: thread_bot_texts(slack_emu, "D_ALICE", None)[-1:] == ["Reply 1 to: third question"],
                         10, message="the next message is answered")
    finally:
        await stop_bot(bot)
