"""The agent surface (issue 19), end to end: the real bot over signed HTTP, the Slack emulator's agent
surface (slack-agents.md 1-3, 5, 6, 8, 10), the Interactions emulator, real Redis.

Each test waits for what a person would see: prompts at the top of the Messages tab, a session's
status and title, task cards on the stream, feedback buttons under the answer, the Home tab.
"""

from __future__ import annotations

import json

import pytest

from conftest import bot_url, eventually, idle, metric, start_bot, stop_bot
from slackbot.slack_out.progress import FEEDBACK_ACTION


@pytest.fixture(autouse=True)
def _forget_channel_names():
    """Channel names are cached per process (chat/profiles_lookup.py): other tests count the lookups."""
    from slackbot.chat import profiles_lookup

    yield
    profiles_lookup._NAMES.clear()


def _answered(emu, channel: str, thread_ts: str, needle: str = "") -> bool:
    return any(needle in m.visible_text for m in emu.bot_messages(channel, thread_ts) if m.visible_text)


async def _settle(slack_emu) -> None:
    await eventually(lambda: idle(bot_url(slack_emu)), 15, message="the bot idle")


def _feedback(msg) -> dict | None:
    return next((b for b in msg.blocks or [] if b.get("type") == "context_actions"), None)


# --- 1. agent messaging --------------------------------------------------------------------------------
async def test_opening_the_messages_tab_sets_the_prompts_per_profile(settings_for, slack_emu, tmp_path):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  support:\n    suggested_prompts:\n"
                        "      - {title: Triage a ticket, message: Help me triage this support ticket.}\n"
                        "channels:\n  C_GENERAL: support\n")
    bot = await start_bot(settings_for(profiles_file=str(profiles)), slack_emu)
    try:
        await slack_emu.agents.open_app_home("U_ALICE", "messages")
        shown = await eventually(lambda: slack_emu.agents.suggested_prompts("D_ALICE"), 10, message="prompts")
        assert [p["title"] for p in shown["prompts"]] == [p.title for p in bot.settings.prompt_list]
        assert len(shown["prompts"]) <= 4 and shown["thread_ts"] is None
        # looking at a channel with a profile of its own: its prompts, the next time the tab opens
        await slack_emu.agents.look_at("U_ALICE", "C_GENERAL")
        await slack_emu.agents.open_app_home("U_ALICE", "messages")
        await eventually(lambda: slack_emu.agents.suggested_prompts("D_ALICE")["prompts"][0]["title"]
                         == "Triage a ticket", 10, message="the profile's prompts")
        assert all(call["shown"] for call in slack_emu.agents.prompt_calls), "never with thread_ts"
    finally:
        await stop_bot(bot)


async def test_a_message_in_the_tab_is_a_session_of_its_own(bot, slack_emu, gemini_emu):
    asked = "What changed in *Q3* for <@U_BOB>? <https://x.example|see>"
    first = (await slack_emu.user_message("D_ALICE", asked)).message
    await eventually(lambda: _answered(slack_emu, "D_ALICE", first.ts, "Reply 1"), 10, message="the answer")
    answer = slack_emu.bot_messages("D_ALICE", first.ts)[0]
    assert answer.thread_ts == first.ts, "answered in the thread of the person's message"
    await _settle(slack_emu)
    session = slack_emu.agents.session("D_ALICE", first.ts)
    assert session["title"] == "What changed in Q3 for ? see", "a short title, no Slack markup"
    assert session["history"][0] == {**session["history"][0], "status": "processing",
                                     "via": "agents.sessions.setStatus"}
    assert session["status"] == "active" and session["initiator_user_id"] == "U_ALICE"
    # a reply in the session continues its chain; a new message in the tab starts another
    await slack_emu.user_message("D_ALICE", "and Q4?", thread_ts=first.ts)
    await eventually(lambda: _answered(slack_emu, "D_ALICE", first.ts, "Reply 2 to: and Q4?"), 10, message="follow-up")
    second = (await slack_emu.user_message("D_ALICE", "new topic")).message
    await eventually(lambda: _answered(slack_emu, "D_ALICE", second.ts, "Reply 1 to: new topic"), 10,
                     message="a fresh chain")
    creates = gemini_emu.model_creates()
    assert creates[1].get("previous_interaction_id") and not creates[2].get("previous_interaction_id")


async def test_summarise_this_means_the_channel_the_person_looks_at(bot, slack_emu, gemini_emu):
    await slack_emu.agents.look_at("U_ALICE", "C_GENERAL")
    first = (await slack_emu.user_message("D_ALICE", "summarise this")).message
    await eventually(lambda: _answered(slack_emu, "D_ALICE", first.ts, "Reply 1"), 10, message="the answer")
    await _settle(slack_emu)
    assert "C_GENERAL" in json.dumps(gemini_emu.model_creates()[-1]["input"])
    # later in the same session, having looked elsewhere meanwhile (app_context off this time): still that channel
    await slack_emu.agents.look_at("U_ALICE", None)
    slack_emu.subscriptions.discard("app_context_changed")
    await slack_emu.user_message("D_ALICE", "and the decisions?", thread_ts=first.ts)
    await eventually(lambda: _answered(slack_emu, "D_ALICE", first.ts, "Reply 2"), 10, message="the follow-up")
    await _settle(slack_emu)
    assert "C_GENERAL" in json.dumps(gemini_emu.model_creates()[-1]["input"])
    turn = await bot_turn(bot, slack_emu, first.ts)
    assert turn.context_channel == "C_GENERAL"


async def bot_turn(bot, slack_emu, thread_ts: str):
    """The journal record of the latest turn in a DM session (what issue 20's tools read)."""
    import redis.asyncio as aioredis

    from slackbot.store.turns import TurnRecord, TurnKeys

    client = aioredis.from_url(bot.settings.redis_url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=TurnKeys(bot.settings.redis_prefix).turn("*"))]
        records = [TurnRecord.from_fields(await client.hgetall(k)) for k in keys]
    finally:
        await client.aclose()
    return max((r for r in records if r.chain_thread == thread_ts), key=lambda r: r.created)


# --- 2. agent sessions: Slack's own Stop ------------------------------------------------------------------
async def test_slacks_stop_on_a_session_ends_the_answer_like_the_stop_button(bot, slack_emu, gemini_emu,
                                                                              redis_url, prefix):
    from test_chat import head, thread_bot_texts

    from slackbot.chat.outcome import STOPPED

    gemini_emu.script(match="endless", text="More and more. " * 300, chunk_chars=10, chunk_delay=0.05)
    ask = (await slack_emu.user_message("D_ALICE", "endless")).message
    await eventually(lambda: [s for s in slack_emu.streams.values() if s.thread_ts == ask.ts and "More" in s.markdown],
                     10, message="the answer streaming")
    session = slack_emu.agents.session("D_ALICE", ask.ts)
    assert session["status"] == "processing" and session["stop_button"], "Slack shows its Stop"
    with pytest.raises(ValueError):
        await slack_emu.agents.stop_session("D_ALICE", ask.ts, "U_BOB")  # Slack offers Stop to the asker only
    await slack_emu.agents.stop_session("D_ALICE", ask.ts, "U_ALICE")
    await eventually(lambda: any(t.endswith(f"_{STOPPED}_") for t in thread_bot_texts(slack_emu, "D_ALICE", ask.ts)),
                     10, message="the stopped note")
    shown = " ".join(thread_bot_texts(slack_emu, "D_ALICE", ask.ts))
    assert "More and more." in shown and len(shown) < len("More and more. " * 300), "partial text kept"
    await _settle(slack_emu)
    assert slack_emu.agents.session("D_ALICE", ask.ts)["status"] == "active", "the app left processing"
    assert await head(redis_url, prefix, "D_ALICE", ask.ts) is None, "a stopped answer leaves the head"
    interaction = gemini_emu.interaction(gemini_emu.interaction_ids()[-1])
    ending = interaction["output_text"][-40:]
    assert ending and not _answered(slack_emu, "D_ALICE", ask.ts, ending), "Gemini's stream was closed early"


# --- 3. progress in the stream ----------------------------------------------------------------------------
async def test_tool_calls_are_task_cards_with_sources_and_thoughts_never_in_the_text(settings_for, slack_emu,
                                                                                     gemini_emu):
    from test_chat import MENTION

    bot = await start_bot(settings_for(tools="google_search,url_context"), slack_emu)
    try:
        gemini_emu.script(match="compare", text="Both pages agree on the date.", first_token_delay=0.3,
                          thought="Planning the lookups\nChecking both pages\n", tool_steps=[
                              {"tool": "google_search", "queries": ["launch date"], "seconds": 0.3},
                              {"tool": "url_context", "urls": ["https://example.com/a", "https://example.org/b"],
                               "seconds": 0.3}])
        ask = (await slack_emu.user_message("C_GENERAL", f"{MENTION} compare the pages")).message
        await eventually(lambda: _answered(slack_emu, "C_GENERAL", ask.ts, "agree on the date"), 10, message="answer")
        await _settle(slack_emu)
        stream = next(s for s in slack_emu.streams.values() if s.thread_ts == ask.ts)
        history = {}
        for update in stream.task_history:
            history.setdefault(update["id"], []).append(update["status"])
        cards = {t["title"]: t for t in stream.tasks.values()}
        assert history[cards["Searching the web"]["id"]] == ["pending", "in_progress", "complete"]
        reading = cards["Reading the linked pages"]
        assert history[reading["id"]] == ["pending", "in_progress", "complete"]
        assert [s["url"] for s in reading["sources"]] == ["https://example.com/a", "https://example.org/b"]
        assert all(s["type"] == "url" for s in reading["sources"])
        thinking = cards["Thinking"]
        assert thinking["status"] == "complete"
        assert any("Checking both pages" in (u.get("details") or "") or "Planning" in (u.get("details") or "")
                   for u in stream.task_history if u["id"] == thinking["id"])
        for never in ("Searching the web", "Reading the linked pages", "Checking both pages", "Planning"):
            assert never not in stream.markdown, "cards and thoughts never enter the answer's text"
        assert stream.state == "stopped"
    finally:
        await stop_bot(bot)


async def test_posts_and_edits_carry_the_same_progress_in_the_status(settings_for, slack_emu, gemini_emu,
                                                                     redis_url, prefix):
    import redis.asyncio as aioredis

    from test_chat import MENTION

    from slackbot.store import Budget, BucketId, Store

    bot = await start_bot(settings_for(tools="google_search"), slack_emu)
    store = Store(aioredis.from_url(redis_url, decode_responses=True), prefix, chain_ttl=60, dedup_ttl=60)
    try:
        while await store.budgets.take_now(BucketId("chat.startStream", "T0001"), Budget(18 / 60, 3)) == 0:
            pass  # no native stream to be had: the planner posts and edits
        gemini_emu.script(match="search", text="Found it.", tool_steps=[{"tool": "google_search", "seconds": 0.3}],
                          thought="Thinking about where to look\n")
        ask = (await slack_emu.user_message("C_GENERAL", f"{MENTION} search please")).message
        await eventually(lambda: _answered(slack_emu, "C_GENERAL", ask.ts, "Found it."), 10, message="answer")
        shown = [s["status"] for s in slack_emu.status_history("C_GENERAL", ask.ts)]
        assert "Searching the web…" in shown
        assert not slack_emu.calls_to("chat.startStream"), "no native stream to be had"
    finally:
        await store.close()
        await stop_bot(bot)


# --- 4. feedback --------------------------------------------------------------------------------------------
async def test_feedback_buttons_click_vote_and_report(settings_for, slack_emu, gemini_emu):
    from test_chat import MENTION

    bot = await start_bot(settings_for(operators="U_CAROL"), slack_emu)
    url = bot_url(slack_emu)
    try:
        ask = (await slack_emu.user_message("C_GENERAL", f"{MENTION} rate me")).message
        await eventually(lambda: _answered(slack_emu, "C_GENERAL", ask.ts, "Reply 1"), 10, message="answer")
        last = await eventually(lambda: [m for m in slack_emu.bot_messages("C_GENERAL", ask.ts) if _feedback(m)],
                                10, message="feedback buttons on the answer")
        answer = last[-1]
        assert answer is slack_emu.bot_messages("C_GENERAL", ask.ts)[-1], "on the answer's last message"
        element = _feedback(answer)["elements"][0]
        assert element["type"] == "feedback_buttons" and element["action_id"] == FEEDBACK_ACTION
        d = await slack_emu.agents.click_feedback(answer, "negative", user="U_BOB")
        assert d.status == 200 and d.latency < 3, "acked within 3 s"
        await eventually(lambda: any(e["user"] == "U_BOB" and "Thanks for the feedback" in e["text"]
                                     for e in slack_emu.ephemerals), 10, message="thanks")
        labels = {"model": bot.settings.gemini_model, "profile": "default"}
        assert await metric(url, "slackbot_feedback_total", rating="negative", **labels) == 1
        await slack_emu.agents.click_feedback(answer, "negative", user="U_BOB")  # the same again: one vote
        await eventually(lambda: any("already" in e["text"] for e in slack_emu.ephemerals), 10, message="same vote")
        await slack_emu.agents.click_feedback(answer, "positive", user="U_BOB")  # changed
        await eventually(lambda: any("is now 👍" in e["text"] for e in slack_emu.ephemerals), 10, message="changed")
        await slack_emu.agents.click_feedback(answer, "positive", user="U_ALICE")
        await eventually(lambda: metric(url, "slackbot_feedback_total", rating="positive", **labels), 10)
        await eventually(lambda: len([e for e in slack_emu.ephemerals if e["user"] == "U_ALICE"]) == 1, 10)
        d = await slack_emu.slash_command("/gemini", "feedback", user="U_CAROL")
        text = d.body
        assert f"`{bot.settings.gemini_model}` · default: 👍 2 · 👎 0 (100 % helpful)" in text
        refused = await slack_emu.slash_command("/gemini", "feedback", user="U_ALICE")
        assert "Only the people who run this bot" in str(refused.body)
    finally:
        await stop_bot(bot)


async def test_an_answer_posted_by_the_planner_carries_the_buttons_on_its_last_message(settings_for, slack_emu,
                                                                                       gemini_emu):
    from test_chat import MENTION

    bot = await start_bot(settings_for(message_chars=400, edit_budget_per_minute=600, stream_starts_per_minute=0.01),
                          slack_emu)
    try:
        gemini_emu.script(match="long", text="A sentence that goes on for a while. " * 30)
        ask = (await slack_emu.user_message("C_GENERAL", f"{MENTION} long please")).message
        await eventually(lambda: len(slack_emu.bot_messages("C_GENERAL", ask.ts)) >= 2 and
                         _feedback(slack_emu.bot_messages("C_GENERAL", ask.ts)[-1]), 15, message="buttons")
        await _settle(slack_emu)
        messages = slack_emu.bot_messages("C_GENERAL", ask.ts)
        assert [bool(_feedback(m)) for m in messages] == [False] * (len(messages) - 1) + [True]
    finally:
        await stop_bot(bot)


# --- 5. App Home --------------------------------------------------------------------------------------------
async def test_home_tab_shows_the_persons_own_jobs_usage_and_channel_profile(bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=30)
    await slack_emu.slash_command("/research", "the history of tidal power", user="U_ALICE")
    ask = (await slack_emu.user_message("D_ALICE", "hello")).message
    await eventually(lambda: _answered(slack_emu, "D_ALICE", ask.ts, "Reply 1"), 10, message="the answer")
    await _settle(slack_emu)
    await slack_emu.agents.look_at("U_ALICE", "C_GENERAL")
    await slack_emu.agents.open_app_home("U_ALICE", "home")
    view = await eventually(lambda: slack_emu.agents.home_view("U_ALICE"), 10, message="Alice's Home")
    text = json.dumps(view["blocks"], ensure_ascii=False)
    assert "the history of tidal power" in text and "1 answer ·" in text and "#general" in text
    assert "Ask me anything" in text and len(view["blocks"]) <= 100
    slack_emu.add_channel("D_BOB", "bob", {"U_BOB", slack_emu.bot_user_id}, im=True)
    await slack_emu.agents.open_app_home("U_BOB", "home")
    bobs = await eventually(lambda: slack_emu.agents.home_view("U_BOB"), 10, message="Bob's Home")
    bobs = json.dumps(bobs["blocks"], ensure_ascii=False)
    assert "tidal" not in bobs and "0 answers ·" in bobs, "never another person's data"


# --- 6. message shortcuts -------------------------------------------------------------------------------------
async def test_ask_gemini_about_a_message_answers_under_it_or_in_a_dm(bot, slack_emu, gemini_emu):
    said = (await slack_emu.user_message("C_GENERAL", "the launch moves to Friday", user="U_BOB",
                                         deliver=False)).message
    d = await slack_emu.agents.message_shortcut(said, "ask_gemini", user="U_ALICE")
    assert d.status == 200 and d.latency < 3
    await eventually(lambda: slack_emu.bot_messages("C_GENERAL", said.ts), 10, message="an answer under the message")
    await _settle(slack_emu)
    assert "the launch moves to Friday" in json.dumps(gemini_emu.model_creates()[-1]["input"])
    # where the bot is not a member, the answer goes to the person's DM with it
    elsewhere = (await slack_emu.user_message("C_RANDOM", "budget is frozen", user="U_BOB", deliver=False)).message
    await slack_emu.agents.message_shortcut(elsewhere, "ask_gemini", user="U_ALICE")
    await eventually(lambda: [m for m in slack_emu.bot_messages("D_ALICE") if m.thread_ts], 10, message="DM answer")
    assert not slack_emu.bot_messages("C_RANDOM")
    await _settle(slack_emu)
    assert "budget is frozen" in json.dumps(gemini_emu.model_creates()[-1]["input"])


async def test_summarize_thread_reads_it_once_and_answers_there(bot, slack_emu, gemini_emu):
    root = (await slack_emu.user_message("C_GENERAL", "Where do we stand on the launch?", user="U_BOB",
                                         deliver=False)).message
    await slack_emu.user_message("C_GENERAL", "QA signed off yesterday", user="U_CAROL", thread_ts=root.ts,
                                 deliver=False)
    reads = len(slack_emu.calls_to("conversations.replies"))
    await slack_emu.agents.message_shortcut(root, "summarize_thread", user="U_ALICE")
    await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root.ts), 10, message="the summary")
    await _settle(slack_emu)
    assert len(slack_emu.calls_to("conversations.replies")) == reads + 1, "one read, through the shared budget"
    sent = json.dumps(gemini_emu.model_creates()[-1]["input"])
    assert "QA signed off yesterday" in sent and "Summarize this Slack thread" in sent
    # not a member: one plain ephemeral line
    there = (await slack_emu.user_message("C_RANDOM", "a thread", user="U_BOB", deliver=False)).message
    await slack_emu.agents.message_shortcut(there, "summarize_thread", user="U_ALICE")
    await eventually(lambda: any(e["user"] == "U_ALICE" and "I'm not in this conversation" in e["text"]
                                 for e in slack_emu.ephemerals), 10, message="the ephemeral line")
