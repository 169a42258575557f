"""Issue 26: an answer reads as one message while Slack allows it, and as few, full messages when it
does not. Real bot, real Redis, both emulators; native streams' budget drained, so the answer grows by
edits (the scarce budget) or goes on in new messages."""

from __future__ import annotations

from conftest import eventually, start_bot, stop_bot
from test_chat import MENTION, answered, joined
from test_load_and_faults import STREAM_STARTS

from slackbot.store import Budget

WRITING = "is writing…"


def posts(slack_emu, thread_ts) -> list:
    """The answer's chat.postMessage calls Slack took, in order: when, and the markdown each began with."""
    return [(c.time, c.params["blocks"][0].get("text", "")) for c in slack_emu.calls_to("chat.postMessage")
            if c.ok and c.params.get("thread_ts") == thread_ts]


async def drain_stream_starts(store) -> None:  # noqa: F811
    while await store.budgets.take_now(STREAM_STARTS, Budget(18 / 60, 3)) == 0:
        pass


async def test_an_answer_of_one_messages_length_is_one_message_while_its_edits_are_short(
        settings_for, slack_emu, gemini_emu, store):  # noqa: F811
    """One intermediate edit, then none for 10 s, and Gemini trickling for ~7 s: the message waits for its
    budget (the thread status saying the answer is being written) instead of going on in new messages."""
    bot = await start_bot(settings_for(edit_budget_per_minute=6, edit_budget_burst=2, edit_final_reserve=1),
                          slack_emu)
    try:
        await drain_stream_starts(store)
        text = ("Here is what changed this week, in short.\n\n"
                + "The deploy pipeline now runs the migrations before the web pods start. " * 2
                + "\n\n- faster rollbacks\n- one config map\n\n"
                + "The old cron jobs are gone; their work moved into the worker. " * 4).strip()
        gemini_emu.script(text=text, chunk_chars=10, chunk_delay=0.12)
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} what changed?")
        await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts, timeout=30)
        await eventually(lambda: joined(slack_emu, "C_GENERAL", d.message.ts) == "".join(text.split()), 10,
                         message="the whole answer")
        msgs = slack_emu.bot_messages("C_GENERAL", d.message.ts)
        assert len(msgs) == 1, [m.visible_text[:40] for m in msgs]
        posted_at = posts(slack_emu, d.message.ts)[0][0]
        writing = [s for s in slack_emu.status_history("C_GENERAL", d.message.ts)
                   if s["status"] == WRITING and s["time"] > posted_at]
        assert writing, "while the message waited, the thread status said the answer was being written"
        assert slack_emu.current_status("C_GENERAL", d.message.ts) is None, "cleared at the end"
        assert slack_emu.ratelimited() == 0
    finally:
        await stop_bot(bot)


# the answer's blocks; a continuation may begin only where one of them begins
BLOCKS = [
    "Here is the plan for the migration, step by step, with what each step costs.",
    "First we freeze writes for a short while. The freeze is announced a day ahead. Nobody should notice it.",
    "- copy the tables to the new cluster\n- replay the changes made meanwhile\n- switch the readers over\n"
    "- switch the writers over last",
    "| step | downtime | owner |\n|---|---|---|\n| copy | none | data |\n| replay | none | data |\n"
    "| switch | 30 s | infra |",
    "Then we watch the error rates for an hour. If anything looks wrong we switch back, which takes a minute.",
    "That is all; the runbook has the commands.",
]


async def test_continuations_under_a_squeezed_budget_begin_at_paragraph_list_and_table_boundaries(
        settings_for, slack_emu, gemini_emu, store):  # noqa: F811
    """One edit every 3 s and a stall bound of 0.6 s: the answer goes on in new messages, each beginning
    a paragraph, the list or the table."""
    bot = await start_bot(settings_for(edit_budget_per_minute=20, edit_budget_burst=1, edit_final_reserve=0,
                                       stall_seconds=0.6, continue_chars=60), slack_emu)
    try:
        await drain_stream_starts(store)
        text = "\n\n".join(BLOCKS)
        gemini_emu.script(text=text, chunk_chars=7, chunk_delay=0.05)  # ~3.5 s, cut anywhere
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} how do we migrate?")
        await answered(slack_emu, gemini_emu, "C_GENERAL", d.message.ts, timeout=30)
        made = posts(slack_emu, d.message.ts)
        assert len(made) >= 3, "the squeeze made it go on in new messages"
        firsts = [b.split("\n")[0] for b in BLOCKS]
        for _, shown in made[1:]:
            began = shown.lstrip().split("\n")[0]
            assert began in firsts, f"a continuation began mid-block: {began[:50]!r}"
        msgs = slack_emu.bot_messages("C_GENERAL", d.message.ts)  # the final layout, the table as a table
        table = [m for m in msgs if any(b.get("type") == "table" for b in m.blocks or [])]
        assert len(table) == 1, "the table shows whole, as a table, in one message"
        assert slack_emu.ratelimited() == 0
    finally:
        await stop_bot(bot)
