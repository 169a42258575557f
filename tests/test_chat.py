"""Chat end to end: signed Slack deliveries -> real Bolt app over HTTP -> real SDK -> emulators; Redis real.

Each test names the numbered behaviour of the chat issue it proves.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from conftest import bot_url, events, eventually, idle, metric, open_store


MENTION = "<@UBOT>"


def thread_bot_texts(slack_emu, channel, thread_ts):
    return [m.visible_text for m in slack_emu.bot_messages(channel, thread_ts)]


def visible_updates(slack_emu, channel, thread_ts) -> int:
    """How many times a reader saw the answer change: messages, edits and stream appends."""
    count = 0
    for m in slack_emu.bot_messages(channel, thread_ts):
        stream = slack_emu.streams.get((channel, m.ts))
        count += 1 + len(m.edits) + (len(stream.texts) - 1 if stream else 0)
    return count


def joined(slack_emu, channel, thread_ts) -> str:
    """An answer's text as a reader sees it across its messages, whitespace aside."""
    return "".join(" ".join(thread_bot_texts(slack_emu, channel, thread_ts)).split())


async def head(redis_url, prefix, channel, thread_ts, team="T0001"):
    store = await open_store(redis_url, prefix)
    try:
        return await store.turns.chain_head(team, channel, thread_ts)
    finally:
        await store.close()


async def answered(slack_emu, gemini_emu, channel, thread_ts, count=1, timeout=10):
    """Wait until the thread holds `count` bot messages and the bot has nothing left in flight (the
    answer is final and tidied); returns the thread's bot texts."""
    url = bot_url(slack_emu)

    async def done():
        return len(thread_bot_texts(slack_emu, channel, thread_ts)) >= count and await idle(url)
    await eventually(done, timeout, message=f"{count} answers in {channel}/{thread_ts}")
    return thread_bot_texts(slack_emu, channel, thread_ts)


# 1 + 2 + 3: acked at once, streamed by edits, final text is Gemini's, chain head stored
@pytest.mark.cluster
async def test_mention_streams_answer_into_thread_and_stores_chain(bot, slack_emu, gemini_emu, redis_url, prefix):
    long_text = " ".join(f"word{i}" for i in range(120))
    gemini_emu.script(text=long_text, chunk_chars=8, chunk_delay=0.01)
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} how do I rotate a Postgres password?")
    assert all(d.status == 200 for d in delivery.all)
    assert max(d.latency for d in delivery.all) < 3.0  # the ack does not wait for the answer
    root = delivery.message.ts
    await eventually(lambda: gemini_emu.model_creates() and
                     thread_bot_texts(slack_emu, "C_GENERAL", root) == [long_text], 10, message="final text")
    created = gemini_emu.model_creates()
    assert len(created) == 1
    assert created[0]["input"].strip() == "how do I rotate a Postgres password?"
    assert created[0]["stream"] is True and created[0].get("store", True) is True
    assert created[0]["system_instruction"] == "Be brief."  # turn-scoped fields re-sent
    assert "previous_interaction_id" not in created[0]
    answer = slack_emu.bot_messages("C_GENERAL", root)[0]
    assert answer.thread_ts == root
    assert visible_updates(slack_emu, "C_GENERAL", root) >= 2  # it grew in place (stream appends or edits)
    interaction_id = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root), message="chain head")
    assert gemini_emu.interaction(interaction_id)["output_text"] == long_text


# 3: a reply in the thread (no mention) continues the chain with memory
@pytest.mark.cluster
async def test_thread_reply_continues_chain(bot, slack_emu, gemini_emu, redis_url, prefix):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} remember the number 42")
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    first_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root))
    await slack_emu.user_message("C_GENERAL", "what number was it?", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
    assert texts[1] == "Reply 2 to: what number was it?"
    creates = gemini_emu.model_creates()
    assert creates[-1]["previous_interaction_id"] == first_head
    second_head = await head(redis_url, prefix, "C_GENERAL", root)
    assert second_head != first_head
    assert gemini_emu.interaction(second_head)["previous_interaction_id"] == first_head


# DMs: every message is a turn; without agent messaging, one conversation per DM answered at top level
# (with it, the default, each message is a session of its own: tests/test_agent.py)
async def test_dm_every_message_is_a_turn(settings_for, slack_emu, gemini_emu):
    from conftest import start_bot, stop_bot

    bot = await start_bot(settings_for(agent_messaging=False), slack_emu)
    try:
        await slack_emu.user_message("D_ALICE", "hello there")
        await eventually(lambda: len(slack_emu.bot_messages("D_ALICE")) == 1 and
                         slack_emu.bot_messages("D_ALICE")[0].visible_text == "Reply 1 to: hello there")
        await slack_emu.user_message("D_ALICE", "and again")
        await eventually(lambda: len(slack_emu.bot_messages("D_ALICE")) == 2 and
                         slack_emu.bot_messages("D_ALICE")[1].visible_text == "Reply 2 to: and again")
        assert slack_emu.bot_messages("D_ALICE")[0].thread_ts is None  # a DM answers at top level
    finally:
        await stop_bot(bot)


# 3: two messages at once in one thread: answered one after the other, no fork, no lost turn
@pytest.mark.cluster
async def test_concurrent_messages_in_one_thread_chain_linearly(bot, slack_emu, gemini_emu, redis_url, prefix):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} start")
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    gemini_emu.script(match="alpha", text="alpha answer " * 10, chunk_delay=0.02)
    gemini_emu.script(match="beta", text="beta answer " * 10, chunk_delay=0.02)
    await asyncio.gather(
        slack_emu.user_message("C_GENERAL", "alpha", thread_ts=root),
        slack_emu.user_message("C_GENERAL", "beta", thread_ts=root),
    )
    await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=3)
    await eventually(lambda: len(gemini_emu.model_creates()) == 3)
    async def chain():
        ids, cursor = [], await head(redis_url, prefix, "C_GENERAL", root)
        while cursor:  # walk the chain back from the head
            ids.append(cursor)
            cursor = gemini_emu.interaction(cursor).get("previous_interaction_id")
        return ids
    ids = await eventually(lambda: _len_is(chain(), 3), message="three turns on one chain")
    assert len(set(ids)) == 3, "every turn is on the one chain: no fork, no lost turn"
    inputs = [gemini_emu.interaction(i)["input_text"] for i in reversed(ids)]
    assert inputs[0] == "start" and sorted(inputs[1:]) == ["alpha", "beta"]


async def _len_is(aw, n):
    value = await aw
    return value if len(value) == n else None


# Different threads proceed concurrently
async def test_different_threads_run_concurrently(bot, slack_emu, gemini_emu):
    gemini_emu.script(match="slow-one", text="one " * 40, chunk_chars=4, chunk_delay=0.05)
    gemini_emu.script(match="slow-two", text="two " * 40, chunk_chars=4, chunk_delay=0.05)
    a, b = await asyncio.gather(slack_emu.user_message("C_GENERAL", f"{MENTION} slow-one"),
                                slack_emu.user_message("C_GENERAL", f"{MENTION} slow-two"))
    # both answers become visible before either finishes
    await eventually(lambda: slack_emu.bot_messages("C_GENERAL", a.message.ts) and
                     slack_emu.bot_messages("C_GENERAL", b.message.ts), 5)
    assert not all(m.visible_text.strip() == ("one " * 40).strip()
                   for m in slack_emu.bot_messages("C_GENERAL", a.message.ts))
    await answered(slack_emu, gemini_emu, "C_GENERAL", a.message.ts)
    await answered(slack_emu, gemini_emu, "C_GENERAL", b.message.ts)


# 4: redelivered events are answered at most once
async def test_redelivery_is_answered_once(bot, slack_emu, gemini_emu):
    before = {o: await events(bot.url, o) for o in ("accepted", "duplicate", "ignored")}
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} once please")
    for retry in (1, 2, 3):
        for d in delivery.all:
            again = await slack_emu.redeliver(d, retry_num=retry)
            assert again.status == 200
    # each delivery was decided before its ack: one became the turn, every other was dropped, so once
    # that one answer is done nothing else is coming
    after = {o: await events(bot.url, o) - before[o] for o in before}
    assert after["accepted"] == 1 and after["duplicate"] + after["ignored"] == 4 * len(delivery.all) - 1, after
    await answered(slack_emu, gemini_emu, "C_GENERAL", delivery.message.ts)
    assert len(slack_emu.bot_messages("C_GENERAL", delivery.message.ts)) == 1
    assert len(gemini_emu.model_creates()) == 1


# 5: never answers itself or bots; ignores edits/deletes; un-mentioned replies only in its own threads
async def test_ignores_bots_edits_and_foreign_threads(bot, slack_emu, gemini_emu):
    ignored, accepted = await events(bot.url, "ignored"), await events(bot.url, "accepted")
    people = await slack_emu.user_message("C_GENERAL", "a thread among people")
    await slack_emu.user_message("C_GENERAL", "no mention here", thread_ts=people.message.ts)
    await slack_emu.deliver_event({"type": "message", "subtype": "bot_message", "bot_id": "BOTHER", "text": "beep",
                                   "channel": "C_GENERAL", "ts": "1700000001.000100", "channel_type": "channel"})
    await slack_emu.deliver_event({"type": "message", "user": "UOTHERBOT", "bot_id": "BOTHER", "text": "<@UBOT> hi",
                                   "channel": "D_ALICE", "ts": "1700000001.000200", "channel_type": "im"})
    await slack_emu.deliver_event({"type": "message", "subtype": "message_changed", "channel": "D_ALICE",
                                   "channel_type": "im", "ts": "1700000001.000300",
                                   "message": {"user": "U_ALICE", "text": "edited"}})
    await slack_emu.deliver_event({"type": "message", "subtype": "message_deleted", "channel": "D_ALICE",
                                   "channel_type": "im", "ts": "1700000001.000400"})
    await slack_emu.deliver_event({"type": "app_mention", "user": "UBOT", "text": "<@UBOT> me",
                                   "channel": "C_GENERAL", "ts": "1700000001.000500"})
    # each delivery was decided before its ack and none became a turn: the intake counted six as
    # ignored (Bolt itself drops the bot's own app_mention before the intake sees it)
    assert await events(bot.url, "ignored") - ignored == 6
    assert await events(bot.url, "accepted") == accepted
    # a sentinel that is answered: after it, nothing but its answer was posted and asked
    sentinel = await slack_emu.user_message("C_GENERAL", f"{MENTION} sentinel")
    assert await answered(slack_emu, gemini_emu, "C_GENERAL", sentinel.message.ts) == ["Reply 1 to: sentinel"]
    assert [m.thread_ts for m in slack_emu.bot_messages()] == [sentinel.message.ts]
    assert [c["input"].strip() for c in gemini_emu.model_creates()] == ["sentinel"]


# 5: the bot's own posts and edits echoed back as events cause nothing
async def test_own_echoes_are_ignored(settings_for, slack_emu, gemini_emu):
    from conftest import start_bot, stop_bot

    slack_emu.echo_bot_events = True
    bot = await start_bot(settings_for(), slack_emu)
    try:
        accepted = await events(bot.url, "accepted")
        first = await slack_emu.user_message("C_GENERAL", f"{MENTION} echo test")
        await answered(slack_emu, gemini_emu, "C_GENERAL", first.message.ts)
        # the answer is done, so every echo has been sent; wait until the bot has acked each one
        echoes = await slack_emu.echoes_answered()
        assert echoes and all(e.status == 200 for e in echoes)
        assert await events(bot.url, "accepted") - accepted == 1, "only the person's message became a turn"
        assert await idle(bot.url)
        assert len(slack_emu.bot_messages("C_GENERAL")) == 1
        assert len(gemini_emu.model_creates()) == 1
    finally:
        await stop_bot(bot)


# Signed requests only; malformed payloads are logged and acked
async def test_bad_signature_rejected_and_malformed_payload_acked(bot, slack_emu, gemini_emu):
    accepted = await events(bot.url, "accepted")
    body = '{"type":"event_callback","event":{"type":"app_mention","user":"U_ALICE","text":"<@UBOT> x","channel":"C_GENERAL","ts":"1.2"}}'
    rejected = await slack_emu.send_signed(body, "application/json", bad_signature=True)
    assert rejected.status == 401
    stale = await slack_emu.send_signed(body, "application/json", timestamp="1000000000")
    assert stale.status == 401
    garbage = await slack_emu.send_signed("{not json", "application/json")
    assert garbage.status == 200
    no_event = await slack_emu.send_signed('{"type":"event_callback","event":"nonsense"}', "application/json")
    assert no_event.status == 200
    assert await events(bot.url, "accepted") == accepted, "none of them became a turn"
    # a sentinel that is answered: after it, its answer is the only one
    sentinel = await slack_emu.user_message("C_GENERAL", f"{MENTION} sentinel")
    await answered(slack_emu, gemini_emu, "C_GENERAL", sentinel.message.ts)
    assert [m.thread_ts for m in slack_emu.bot_messages()] == [sentinel.message.ts]


# 6: a final Gemini failure leaves one plain line, keeps the head, and the next message works
async def test_gemini_failure_is_plain_and_conversation_stays_usable(bot, slack_emu, gemini_emu, redis_url, prefix):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} first")
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    head_before = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root))
    gemini_emu.script(match="doomed", fail_status=503, fail_times=10)
    await slack_emu.user_message("C_GENERAL", "doomed question", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
    assert texts[1] == "_I couldn't reach Gemini just now. Please try again in a moment._"
    assert "Traceback" not in texts[1]
    assert await head(redis_url, prefix, "C_GENERAL", root) == head_before
    await slack_emu.user_message("C_GENERAL", "are you back?", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=3)
    assert texts[2] == "Reply 2 to: are you back?"
    assert gemini_emu.model_creates()[-1]["previous_interaction_id"] == head_before


# 6: transient errors are retried (by the SDK, not multiplied by ours)
async def test_transient_gemini_errors_are_retried(bot, slack_emu, gemini_emu):
    gemini_emu.script(match="flaky", fail_status=500, fail_times=2, text="made it")
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} flaky")
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", delivery.message.ts)
    assert texts == ["made it"]
    attempts = [r for r in gemini_emu.requests if r["method"] == "POST" and r["path"].endswith("/interactions")]
    assert len(attempts) == 3


# 6: Gemini forgot the head (404): rebuilt from the Slack thread as a stateless turn, new chain
async def test_forgotten_chain_is_rebuilt_from_slack(bot, slack_emu, gemini_emu, redis_url, prefix):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} my cat is called Miso")
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    old_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root))
    gemini_emu.forget(old_head)
    await slack_emu.user_message("C_GENERAL", "what is my cat called?", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
    rebuilt = gemini_emu.model_creates()[-1]
    assert "previous_interaction_id" not in rebuilt
    assert "my cat is called Miso" in rebuilt["input"] and "what is my cat called?" in rebuilt["input"]
    assert "Traceback" not in texts[1] and "error" not in texts[1].lower()
    new_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root))
    assert new_head not in (None, old_head)
    assert len(slack_emu.calls_to("conversations.replies")) == 1


# 6: when the shared replies budget is spent, a fresh chain starts and says so in one line
async def test_forgotten_chain_without_budget_starts_fresh(bot, slack_emu, gemini_emu, redis_url, prefix):
    threads = []
    for name in ("one", "two"):
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} thread {name}")
        await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts)
        threads.append(d.message.ts)
        gemini_emu.forget(await eventually(lambda: head(redis_url, prefix, "C_GENERAL", d.message.ts)))
    await slack_emu.user_message("C_GENERAL", "still there?", thread_ts=threads[0])
    await answered(slack_emu, gemini_emu, "C_GENERAL", threads[0], count=2)
    await slack_emu.user_message("C_GENERAL", "hello?", thread_ts=threads[1])
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", threads[1], count=2)
    assert texts[1].startswith("Reply 1 to: hello?")
    assert texts[1].endswith("_I no longer remember this thread's earlier conversation, so I'm starting fresh._")
    assert len(slack_emu.calls_to("conversations.replies")) == 1  # the budget held: 1 a minute
    assert slack_emu.ratelimited("conversations.replies") == 0


# 7: a 429 from Slack pauses that method's budget; the final text still lands (by another budget)
async def test_slack_429_is_honoured_and_final_text_lands(bot, slack_emu, gemini_emu):
    gemini_emu.script(text="steady. " * 40, chunk_chars=10, chunk_delay=0.05)
    slack_emu.fail_next("chat.appendStream", "ratelimited", times=1, retry_after=1)
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} go")
    await eventually(lambda: joined(slack_emu, "C_GENERAL", delivery.message.ts) == "steady." * 40, 15,
                     message="the whole answer")
    assert slack_emu.ratelimited("chat.appendStream") == 1
    appends = slack_emu.calls_to("chat.appendStream")
    limited = next(i for i, c in enumerate(appends) if c.error == "ratelimited")
    # the method's budget paused for Retry-After: no append until the second had passed
    assert all(c.time >= appends[limited].time + 0.9 for c in appends[limited + 1:])


# 7: not_in_channel is logged and the process lives on
async def test_not_in_channel_does_not_kill_the_process(settings_for, slack_emu, gemini_emu):
    from conftest import start_bot, stop_bot

    slack_emu.fail_next("chat.startStream", "not_in_channel", times=1)
    slack_emu.fail_next("chat.postMessage", "not_in_channel", times=1)
    bot = await start_bot(settings_for(), slack_emu)
    try:
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} can you hear me")
        await eventually(lambda: slack_emu.calls_to("chat.postMessage"))
        await eventually(lambda: idle(bot.url), 10, message="the turn ended")
        assert slack_emu.bot_messages("C_GENERAL", d.message.ts) == []
        d2 = await slack_emu.user_message("C_GENERAL", f"{MENTION} and now?")
        await answered(slack_emu, gemini_emu, "C_GENERAL", d2.message.ts)
        assert not bot.task.done()
    finally:
        await stop_bot(bot)


# 2: long answers continue in further messages, split at paragraphs/fences, never msg_too_long
async def test_long_answer_splits_across_messages(settings_for, slack_emu, gemini_emu):
    from conftest import start_bot, stop_bot

    paragraphs = [f"Paragraph {i}: " + ("lorem ipsum " * 40) for i in range(12)]
    code = "```python\n" + "\n".join(f"print({i})" for i in range(150)) + "\n```"
    text = "\n\n".join(paragraphs[:6] + [code] + paragraphs[6:])
    gemini_emu.script(text=text, chunk_chars=200, chunk_delay=0.005)
    bot = await start_bot(settings_for(message_chars=1500), slack_emu)
    try:
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} write a lot")
        texts = await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts, timeout=20)
        assert "".join(texts).count("Paragraph 11") == 1 and len(gemini_emu.model_creates()) == 1
        assert len(texts) >= 4
        for t in texts:
            assert len(t) <= 1500
            assert t.count("```") % 2 == 0, "every message renders with balanced code fences"
        joined = "".join(t.replace("```python\n", "").replace("\n```", "") for t in texts)
        for p in paragraphs:
            assert p.strip() in joined
        assert all(c.ok for c in slack_emu.calls_to("chat.update"))
        assert all(c.error != "msg_too_long" for c in slack_emu.calls)
    finally:
        await stop_bot(bot)


# 8: a mention in a people's thread starts the chain with the thread as context; mentions readable
async def test_mention_in_people_thread_uses_thread_context(bot, slack_emu, gemini_emu):
    root = await slack_emu.user_message("C_GENERAL", "Deploy of v2 failed on <https://ci.example.com/42|build 42>",
                                        user="U_BOB")
    await slack_emu.user_message("C_GENERAL", "I think <@U_CAROL> changed the config", thread_ts=root.message.ts)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} summarize this thread", thread_ts=root.message.ts)
    await answered(slack_emu, gemini_emu, "C_GENERAL", root.message.ts)
    sent = gemini_emu.model_creates()[-1]["input"]
    assert "[build 42](https://ci.example.com/42)" in sent
    assert "@Carol Chen" in sent or "Carol" in sent
    assert "<@" not in sent
    assert "summarize this thread" in sent
    assert len(slack_emu.calls_to("conversations.replies")) == 1
    assert d.message.ts  # the mention itself


# 6: a connection that cannot be made (the SDK does not retry it; we do, then say so plainly)
async def test_unreachable_gemini_is_one_plain_line(settings_for, slack_emu, gemini_emu):
    from conftest import free_port, start_bot, stop_bot

    bot = await start_bot(settings_for(gemini_base_url=f"http://127.0.0.1:{free_port()}", gemini_connect_retries=1),
                          slack_emu)
    try:
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} anyone home?")
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts) ==
                         ["_I couldn't reach Gemini just now. Please try again in a moment._"], 15)
    finally:
        await stop_bot(bot)


async def _counted(url: str, kind: str, outcome: str) -> float:
    return await metric(url, "slackbot_events_total", kind=kind, outcome=outcome)


def async_at_least(read, floor: float):
    async def check() -> bool:
        return await read() >= floor
    return check


# issue 25.9: a mention in a thread people started answers that mention and the asker's direct follow-up;
# it does not enrol the bot in the people's conversation that goes on after it
async def test_mid_thread_mention_does_not_enrol_the_bot_in_peoples_conversation(bot, slack_emu, gemini_emu):
    root = await slack_emu.user_message("C_GENERAL", "release plan for Friday?", user="U_BOB")
    thread = root.message.ts
    await slack_emu.user_message("C_GENERAL", f"{MENTION} what changed since v1?", thread_ts=thread, user="U_ALICE")
    await answered(slack_emu, gemini_emu, "C_GENERAL", thread, count=1)
    await slack_emu.user_message("C_GENERAL", "and the migrations?", thread_ts=thread, user="U_ALICE")
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", thread, count=2)
    assert texts[1] == "Reply 2 to: and the migrations?", "the asker's direct follow-up is answered"
    ignored = await _counted(bot.url, "message", "ignored")
    for i in range(20):
        await slack_emu.user_message("C_GENERAL", f"people talk {i}", thread_ts=thread,
                                     user="U_BOB" if i % 2 == 0 else "U_CAROL")
    await eventually(async_at_least(lambda: _counted(bot.url, "message", "ignored"), ignored + 20), 10,
                     message="20 replies among people ignored")
    # a later mention (the sentinel) is answered: the replies before it were refused, not slow
    await slack_emu.user_message("C_GENERAL", f"{MENTION} sum it up", thread_ts=thread, user="U_CAROL")
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", thread, count=3)
    assert len(texts) == 3 and len(gemini_emu.model_creates()) == 3
    assert "sum it up" in gemini_emu.model_creates()[2]["input"]


# issue 25.9: in a thread the bot's answer started, anyone's reply without a mention stays a turn
async def test_replies_in_the_bots_own_thread_stay_answered_whoever_writes(bot, slack_emu, gemini_emu):
    root = await slack_emu.user_message("C_GENERAL", f"{MENTION} start here", user="U_ALICE")
    await answered(slack_emu, gemini_emu, "C_GENERAL", root.message.ts)
    await slack_emu.user_message("C_GENERAL", "me too", thread_ts=root.message.ts, user="U_BOB")
    await slack_emu.user_message("C_GENERAL", "and me", thread_ts=root.message.ts, user="U_CAROL")
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root.message.ts, count=3)
    assert texts[1:] == ["Reply 2 to: me too", "Reply 3 to: and me"]


# issue 25.9: the presence rules themselves, on real Redis (the script decides atomically at intake)
async def test_presence_modes_of_a_thread(redis_url, prefix):
    from slackbot.store.turns import AcceptOutcome, TurnRecord, TurnStore

    client = aioredis.from_url(redis_url, decode_responses=True)
    store = TurnStore(client, prefix, chain_ttl=600, dedup_ttl=600, journal_ttl=600)
    from slackbot.store.keys import turn_id
    n = iter(range(100))
    NOT_OURS, RUN = AcceptOutcome.NOT_OURS, AcceptOutcome.RUN

    async def accept(user: str, role: str, *, thread: str = "1.0", parent_is_bot: bool = False) -> AcceptOutcome:
        ts = f"2.{next(n)}"
        record = TurnRecord(id=turn_id("T1", "C1", thread, ts), team="T1", channel="C1", user=user, text="x", ts=ts,
                            reply_thread_ts=thread, chain_thread=thread, kind=role, owned_by_parent=parent_is_bot)
        return await store.accept(record, role=role, lease=5)

    async def presence(thread: str = "1.0") -> str | None:
        return await client.get(store.keys.presence("T1", "C1", thread))
    try:
        assert await accept("U_BOB", "reply") is NOT_OURS and await presence() is None  # never asked: nothing written
        assert await accept("U_ALICE", "mention") is RUN and await presence() == "asked:U_ALICE"
        assert await accept("U_ALICE", "reply") is RUN, "the asker's direct follow-up"
        assert await accept("U_BOB", "reply") is NOT_OURS and await presence() == "past"
        assert await accept("U_ALICE", "reply") is NOT_OURS, "someone else spoke: no longer a direct follow-up"
        assert await accept("U_CAROL", "mention") is RUN and await presence() == "asked:U_CAROL"
        # the bot's own threads: a root mention / DM, or (after Redis lost its data) a reply under its message
        assert await accept("U_ALICE", "start", thread="3.0") is RUN and await presence("3.0") == "own"
        assert await accept("U_BOB", "reply", thread="3.0") is RUN
        assert await accept("U_BOB", "mention", thread="3.0") is RUN and await presence("3.0") == "own"
        assert await accept("U_BOB", "reply", thread="4.0", parent_is_bot=True) is RUN and await presence("4.0") == "own"
        assert await store.move_head("T1", "C1", "5.0", None, "i1") and await presence("5.0") == "own"  # research
        assert await store.move_head("T1", "C1", "1.0", None, "i2") and await presence() == "asked:U_CAROL"
    finally:
        await client.aclose()
