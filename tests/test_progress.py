"""Pure pieces of the agent surface: task cards, feedback buttons, session titles, Messages-tab intake,
and the Home view's limits (slack_out/progress.py, chat/intake.py, agent/surface.py); the store's votes."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from slackbot.chat.intake import classify, context_channel
from slackbot.gemini import ToolActivity
from slackbot.slack_out.progress import (AnswerTag, Source, TaskUpdate, ToolCards, feedback_block, moves_forward,
                                         read_rating, session_title)
from slackbot.store.agent import AgentStore


def test_session_titles_are_short_plain_text():
    assert session_title("What changed in *Q3* for <@U1>? See <https://x.example|the doc>") == \
        "What changed in Q3 for ? See the doc"
    assert session_title("<!channel> `rm -rf` > quote") == "rm -rf quote"
    long = session_title("word " * 100)
    assert len(long) <= 60 and long.endswith("…")
    assert session_title("<@U1>") == "New question" and session_title("<unclosed " + "a" * 10) == "New question"
    start = time.perf_counter()
    session_title("<" * 100_000 + "x")
    session_title("<a" * 50_000)
    assert time.perf_counter() - start < 1.0, "linear in the question's length"


def test_task_cards_are_chunks_with_url_sources_only():
    chunk = TaskUpdate("t1", "Reading\n  pages", "complete", (Source("https://a.example/x", "A"),
                                                              Source("javascript:alert(1)", "bad"))).chunk()
    assert chunk == {"type": "task_update", "id": "t1", "title": "Reading pages", "status": "complete",
                     "sources": [{"type": "url", "url": "https://a.example/x", "text": "A"}]}
    assert moves_forward(None, "pending") and moves_forward("pending", "in_progress")
    assert not moves_forward("in_progress", "pending") and not moves_forward("complete", "complete")


def test_tool_steps_become_cards_pending_in_progress_then_complete_or_error():
    cards = ToolCards()
    first = cards.updates(ToolActivity("google_search", "google_search", "call"))
    second = cards.updates(ToolActivity("google_search", "google_search", "call"))
    assert [(u.task_id, u.status) for u in first] == [("tool-1", "pending"), ("tool-1", "in_progress")]
    assert first[0].title == "Searching the web"
    done = cards.updates(ToolActivity("google_search", "google_search", "result", (("https://r.example", "R"),)))
    assert [(u.task_id, u.status, u.sources) for u in done] == \
        [("tool-1", "complete", (Source("https://r.example", "R"),))]
    assert [(u.task_id, u.status) for u in cards.updates(ToolActivity("google_search", "google_search", "failed"))] \
        == [(second[0].task_id, "error")]
    assert cards.updates(ToolActivity("mcp_server", "crm.lookup", "result")) == []  # no open call: nothing
    assert cards.updates(ToolActivity("mcp_server", "crm.lookup", "call"))[0].title == "Calling crm.lookup"


def test_feedback_buttons_carry_what_a_rating_is_about():
    tag = AnswerTag("int-1", "gemini-3-flash-preview", "support")
    block = feedback_block(tag)
    assert block["type"] == "context_actions"
    element = block["elements"][0]
    assert element["type"] == "feedback_buttons"
    for side, rating in (("positive_button", "good"), ("negative_button", "bad")):
        button = element[side]
        assert len(button["text"]["text"]) <= 75 and len(button["value"]) <= 2000
        assert read_rating(button["value"]) == (rating, tag)
    assert read_rating("not json") is None and read_rating('{"r": "meh"}') is None and read_rating("") is None


def test_messages_tab_intake():
    dm = {"type": "message", "channel_type": "im", "user": "U1", "channel": "D1", "ts": "5.1", "text": "hi",
          "app_context": {"entities": [{"type": "slack#/types/channel_id", "value": "C9", "team_id": "T1"}]}}
    tab = classify(dm, "UB", "T1", agent_tab=True)
    assert (tab.reply_thread_ts, tab.chain_thread, tab.context_channel) == ("5.1", "5.1", "C9")
    old = classify(dm, "UB", "T1")
    assert (old.reply_thread_ts, old.chain_thread) == (None, "dm")
    reply = classify({**dm, "ts": "6.1", "thread_ts": "5.1"}, "UB", "T1", agent_tab=True)
    assert reply.chain_thread == "5.1"
    assert context_channel({}) == "" and context_channel(None) is None
    assert context_channel({"entities": [{"type": "x", "value": {"channel_id": "C2", "message_ts": "1.1"}}]}) == "C2"
    for event in ({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "messages"},
                  {"type": "app_context_changed", "user": "U1", "context": {}}):
        assert classify(event, "UB", "T1", agent_tab=True) is None


def test_home_view_stays_within_block_kit_limits():
    from types import SimpleNamespace

    from slackbot.agent.surface import home_blocks
    from slackbot.config import Settings
    from slackbot.store.agent import WeekUsage

    settings = Settings()
    jobs = [SimpleNamespace(status="completed", question="<!channel> " + "q" * 5000) for _ in range(50)]
    blocks = home_blocks(settings, research=True, jobs=jobs, usage=WeekUsage(3, 10, 20),
                         profile=settings.default_profile, where="#general")
    assert len(blocks) <= 100
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert "<!channel>" not in str(blocks) and "&lt;!channel&gt;" in str(blocks)


@pytest.fixture
async def agent_store(redis_url, prefix):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield AgentStore(client, prefix, session_ttl=60)
    await client.aclose()


async def test_one_vote_per_person_per_answer_and_the_weeks_report(agent_store):
    ts = f"{time.time():.6f}"
    rate = agent_store.rate
    assert await rate("T1", "C1", ts, "U1", "bad", "m", "p") == 1
    assert await rate("T1", "C1", ts, "U1", "bad", "m", "p") == 0
    assert await rate("T1", "C1", ts, "U1", "good", "m", "p") == 2
    assert await rate("T1", "C1", ts, "U2", "good", "m", "p") == 1
    old = f"{time.time() - 10 * 86400:.6f}"
    assert await rate("T1", "C1", old, "U1", "bad", "m", "p") == 1  # an answer from before the window
    [row] = await agent_store.ratings("T1")
    assert (row.model, row.profile, row.good, row.bad) == ("m", "p", 2, 0)
    assert await agent_store.ratings("T2") == []


async def test_context_is_bound_to_the_session(agent_store):
    await agent_store.look_at("T1", "U1", "C1")
    assert await agent_store.context("T1", "U1", "D1", "1.1", None) == "C1"  # bound on first use
    await agent_store.look_at("T1", "U1", "C2")
    assert await agent_store.context("T1", "U1", "D1", "1.1", None) == "C1"
    assert await agent_store.context("T1", "U1", "D1", "2.1", None) == "C2"
    assert await agent_store.context("T1", "U1", "D1", "1.1", "C3") == "C3"  # the message's own wins
