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
    first = (await slack_emu.user_message("D_ALICE", "What changed in *Q3* for <@U_BOB>? <https://x.example|see>")).message
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
