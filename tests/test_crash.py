"""An answer survives the death of its process (real processes, SIGKILL, one shared Redis).

Each test names the point of the crash-survival issue it proves.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from conftest import end_processes, eventually, free_port, open_store, spawn_serve, wait_ready
from test_chat import MENTION, head, joined, thread_bot_texts


def _norm(text: str) -> str:
    return "".join(text.split())


async def _metric(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            page = await r.text()
    return sum(float(line.split()[-1]) for line in page.splitlines() if line.startswith(name + " "))


async def _lock_holder(redis_url: str, prefix: str, channel: str, thread: str, team: str = "T0001"):
    store = await open_store(redis_url, prefix)
    try:
        return await store.redis.get(store.turns.lock_key(team, channel, thread))
    finally:
        await store.close()


def _creates(gemini_emu) -> list:
    """Every model create Gemini received, finished or cut off by a dying client."""
    return [r for r in gemini_emu.requests if r["method"] == "POST" and r["path"].endswith("/interactions")]


async def _released(redis_url: str, prefix: str, channel: str, thread: str) -> bool:
    return await _lock_holder(redis_url, prefix, channel, thread) is None


# 1: SIGKILL mid-answer; the surviving replica finishes the same answer in the same message(s)
@pytest.mark.cluster
async def test_answer_survives_sigkill_mid_stream(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    a, b = settings_for(port=free_port(), turn_lease_seconds=2.0), settings_for(port=free_port(), turn_lease_seconds=2.0)
    procs = [spawn_serve(a), spawn_serve(b)]
    try:
        await asyncio.gather(wait_ready(a.port), wait_ready(b.port))
        slack_emu.app_url = f"http://127.0.0.1:{a.port}/slack/events"
        text = " ".join(f"Sentence {i} is here." for i in range(60))
        gemini_emu.script(text=text, chunk_chars=8, chunk_delay=0.04)  # ~6 s of streaming
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} survive this")
        root = d.message.ts
        await eventually(lambda: len(joined(slack_emu, "C_GENERAL", root)) > 40, 10, message="half-way")
        first_ts = slack_emu.bot_messages("C_GENERAL", root)[0].ts
        procs[0].kill()
        procs[0].wait()
        slack_emu.app_url = f"http://127.0.0.1:{b.port}/slack/events"
        await eventually(lambda: joined(slack_emu, "C_GENERAL", root) == _norm(text), 30,
                         message="the whole answer, exactly once")
        assert slack_emu.bot_messages("C_GENERAL", root)[0].ts == first_ts, "continued in the same message"
        assert len(_creates(gemini_emu)) == 1, "no second answer"
        new_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root), message="head moved")
        assert gemini_emu.interaction(new_head)["output_text"] == text
        assert await eventually(lambda: _released(redis_url, prefix, "C_GENERAL", root), 10, message="lock passed on")
        assert await _metric(b.port, "slackbot_turns_recovered_total") == 1
        # the thread goes on normally on the survivor
        await slack_emu.user_message("C_GENERAL", "and after?", thread_ts=root)
        await eventually(lambda: any("Reply 2 to: and after?" in t for t in thread_bot_texts(slack_emu, "C_GENERAL",
                                                                                               root)), 10)
    finally:
        end_processes(procs)


# 2: SIGKILL between the ack and the Gemini call: the turn is still answered, once
@pytest.mark.cluster
async def test_turn_killed_before_gemini_answered_is_answered_once(settings_for, slack_emu, gemini_emu, redis_url,
                                                                    prefix):
    hung: list[asyncio.StreamWriter] = []

    async def never_answers(reader, writer):  # a Gemini endpoint that takes the request and says nothing
        hung.append(writer)

    blackhole = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    dead_url = f"http://127.0.0.1:{blackhole.sockets[0].getsockname()[1]}"
    a = settings_for(port=free_port(), turn_lease_seconds=2.0, gemini_base_url=dead_url)
    procs = [spawn_serve(a)]
    try:
        await wait_ready(a.port)
        slack_emu.app_url = f"http://127.0.0.1:{a.port}/slack/events"
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} answer me anyway")
        assert all(x.status == 200 for x in d.all), "acked"
        await eventually(lambda: hung, 10, message="the Gemini call under way")
        procs[0].kill()
        procs[0].wait()
        b = settings_for(port=free_port(), turn_lease_seconds=2.0)  # the replica restarted, Gemini reachable
        procs.append(spawn_serve(b))
        await wait_ready(b.port)
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts) ==
                         ["Reply 1 to: answer me anyway"], 20, message="answered after the crash")
        assert len(gemini_emu.model_creates()) == 1, "the dead process's call never reached Gemini"
        assert len(slack_emu.bot_messages("C_GENERAL", d.message.ts)) == 1, "answered once"
    finally:
        end_processes(procs)
        for w in hung:
            w.close()
        blackhole.close()


# 3: SIGKILL after Slack accepted the first message but before the bot heard back: not posted twice
async def test_message_accepted_before_a_crash_is_not_posted_twice(settings_for, slack_emu, gemini_emu):
    a = settings_for(port=free_port(), turn_lease_seconds=2.0)
    procs = [spawn_serve(a)]
    try:
        await wait_ready(a.port)
        slack_emu.app_url = f"http://127.0.0.1:{a.port}/slack/events"
        text = " ".join(f"Part {i} of the answer." for i in range(30))
        gemini_emu.script(text=text, chunk_chars=10, chunk_delay=0.03)
        slack_emu.hold_next("chat.startStream", seconds=30)
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} careful now")
        await eventually(lambda: slack_emu.calls_to("chat.startStream"), 10, message="the first message in Slack")
        procs[0].kill()  # Slack has the message; the bot never heard the answer
        procs[0].wait()
        b = settings_for(port=free_port(), turn_lease_seconds=2.0)
        procs.append(spawn_serve(b))
        await wait_ready(b.port)
        await eventually(lambda: joined(slack_emu, "C_GENERAL", d.message.ts) == _norm(text), 30,
                         message="the whole answer once")
        assert len(slack_emu.bot_messages("C_GENERAL", d.message.ts)) == 1, "the first message was adopted"
        assert await _metric(b.port, "slackbot_turns_reconciled_total") == 1
    finally:
        end_processes(procs)


# 4: a turn found long after its process died ends with one plain line (and frees its thread)
async def test_turn_abandoned_past_its_deadline_ends_with_one_line(settings_for, slack_emu, gemini_emu):
    from slackbot.chat.outcome import ABANDONED

    a = settings_for(port=free_port(), turn_lease_seconds=1.0)
    procs = [spawn_serve(a, SLACKBOT_TURN_DEADLINE_SECONDS="3")]
    try:
        await wait_ready(a.port)
        slack_emu.app_url = f"http://127.0.0.1:{a.port}/slack/events"
        gemini_emu.script(text="Slowly. " * 100, chunk_chars=8, chunk_delay=0.2)
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} take your time")
        await eventually(lambda: thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts), 10)
        procs[0].kill()
        procs[0].wait()
        await asyncio.sleep(3.5)  # nobody was running: the turn is past its deadline when found
        b = settings_for(port=free_port(), turn_lease_seconds=1.0)
        procs.append(spawn_serve(b, SLACKBOT_TURN_DEADLINE_SECONDS="3"))
        await wait_ready(b.port)
        await eventually(lambda: any(t.endswith(f"_{ABANDONED}_") for t in
                                     thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts)), 15)
        slack_emu.app_url = f"http://127.0.0.1:{b.port}/slack/events"
        await slack_emu.user_message("C_GENERAL", "anyone?", thread_ts=d.message.ts)
        await eventually(lambda: any("anyone?" in t for t in thread_bot_texts(slack_emu, "C_GENERAL", d.message.ts)),
                         15, message="the thread is free again")
    finally:
        end_processes(procs)
