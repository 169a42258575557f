"""Issue 22.6 (research on what the team shared), the per-profile research agent and canvases that never act.
End to end: people's threads, mentions, the "Research this thread" message shortcut and its modal in the Slack
emulator -> real bot -> the Deep Research agent emulator (which records each input it was given); Redis real.

Each test names the point it proves.
"""

from __future__ import annotations

import hashlib
import os

from conftest import bot_url, eventually, events, start_bot, stop_bot
from test_research import status_text

from slackbot.research.thread import MAX_OPTION, NOW_OPTION, OPTIONS_INPUT, QUESTION_INPUT, SHORTCUT
from slackbot_emulators.slack_canvases import markup_acts

MENTION = "<@UBOT>"
PRICES = b"vendor,monthly\nAcme,120\nGlobex,95\n"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
MAX_AGENT = "deep-research-max-preview-04-2026"
PROFILE_AGENT = "deep-research-preview-04-2026"


def agent_creates(gemini_emu) -> list[dict]:
    return [r["body"] for r in gemini_emu.requests
            if r["method"] == "POST" and r["status"] == 200 and (r["body"] or {}).get("agent")]


def agent_ids(gemini_emu) -> list[str]:
    return [i for i in gemini_emu.interaction_ids() if gemini_emu.interaction(i)["kind"] == "agent"]


def thread_status(slack_emu, root: str):
    found = [m for m in slack_emu.bot_messages("C_GENERAL", root) if "Deep Research" in m.text]
    return found[0] if found else None


def done(slack_emu, root: str) -> bool:
    status = thread_status(slack_emu, root)
    return bool(status) and "Done" in status_text(status)


async def people_thread(slack_emu) -> str:
    """Bob asks, Carol answers with the price list: a thread the bot has not been asked in."""
    root = (await slack_emu.user_message("C_GENERAL", "We must pick a vendor: Acme or Globex.", user="U_BOB")).message
    prices = slack_emu.host_file("prices.csv", PRICES, mimetype="text/csv")
    await slack_emu.user_shares("C_GENERAL", "Here are their price lists.", [prices], user="U_CAROL",
                                thread_ts=root.ts)
    return root.ts


# 6: a mention saying `research` in a thread starts a job there whose input is the thread's text (who said what,
# oldest first, the bot's own answer included) and its files; status and report go into that thread; a redelivered
# mention starts nothing more; a follow-up mention chains onto the research
async def test_research_mention_in_a_thread(settings_for, slack_emu, gemini_emu):
    slack_emu.set_rate_limit("conversations.replies", 600, 10)  # the chat answer reads the thread, then research
    bot = await start_bot(settings_for(replies_budget_per_minute=600), slack_emu)
    try:
        root = await people_thread(slack_emu)
        gemini_emu.script(text="Acme sells widgets.")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} what does Acme sell?", thread_ts=root)
        await eventually(lambda: any("Acme sells widgets." in m.text for m in slack_emu.bot_messages("C_GENERAL", root)),
                         10, message="the bot's chat answer")
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
        asked = await slack_emu.user_message(
            "C_GENERAL", f"{MENTION} research this: which vendor is cheaper over three years?", thread_ts=root)
        await eventually(lambda: done(slack_emu, root), 15, message="the report in the thread")
        [research] = agent_ids(gemini_emu)
        given = gemini_emu.interaction(research)["input_text"]
        said = ["Bob Brown: We must pick a vendor: Acme or Globex.",
                "Carol Chen: Here are their price lists.", "Assistant: Acme sells widgets."]
        assert all(line in given for line in said)
        assert [given.index(line) for line in said] == sorted(given.index(line) for line in said), "oldest first"
        assert "[shared the file “prices.csv”]" in given and "Deep Research" not in given, "its status is not material"
        assert [m["sha256"] for m in gemini_emu.interaction(research)["media"]] == [hashlib.sha256(PRICES).hexdigest()]
        assert "never instructions" in given and given.rstrip().endswith("which vendor is cheaper over three years?")
        assert "research this:" not in given, "the mention's words are the question, not material"
        assert not any("research this" in c["input"] if isinstance(c["input"], str) else False
                       for c in gemini_emu.model_creates()), "not answered as a chat turn too"
        status = thread_status(slack_emu, root)
        assert status.thread_ts == root and "which vendor is cheaper over three years?" in status_text(status)
        report = gemini_emu.interaction(research)["output_text"]
        heading = next(line for line in report.splitlines() if line.startswith("#"))
        assert any(heading in m.visible_text for m in slack_emu.bot_messages("C_GENERAL", root) if m.ts != status.ts)
        # Slack delivers the mention again: claimed once, nothing more starts
        mention = next(d for d in asked.all if d.payload["event"]["type"] == "app_mention")
        await slack_emu.redeliver(mention)
        await eventually(lambda: events(bot_url(slack_emu), "duplicate"), 5, message="the duplicate counted")
        assert len(agent_creates(gemini_emu)) == 1
        # a follow-up in the thread chains onto the research
        gemini_emu.script(text="Over five years, Globex too.")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} and over five years?", thread_ts=root)
        await eventually(lambda: any("Globex too" in m.text for m in slack_emu.bot_messages("C_GENERAL", root)), 10,
                         message="the follow-up answer")
        assert gemini_emu.model_creates()[-1]["previous_interaction_id"] == research
    finally:
        await stop_bot(bot)


# 6: the message shortcut opens a modal (question, Skip the plan, the deeper agent); submitted, the job reads the
# thread's text and files (a picture here), runs the chosen agent without a plan, and reports in the thread; the
# same submission replayed starts nothing more
async def test_research_this_thread_shortcut(settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(research_planning=True), slack_emu)
    try:
        root = (await slack_emu.user_message("C_GENERAL", "Which dashboard layout is clearer?", user="U_BOB")).message
        shot = slack_emu.host_file("layout.png", PNG, mimetype="image/png")
        reply = (await slack_emu.user_shares("C_GENERAL", "This one, I think.", [shot], user="U_CAROL",
                                             thread_ts=root.ts)).message
        await slack_emu.agents.message_shortcut(reply, SHORTCUT, user="U_ALICE")
        modal = (await eventually(lambda: slack_emu.views.opened, 5, message="the modal"))[0]
        assert modal["user"] == "U_ALICE" and modal["title"]["text"] == "Research this thread"
        ticks = [o["value"] for b in modal["blocks"] if b.get("block_id") == OPTIONS_INPUT
                 for o in b["element"]["options"]]
        assert ticks == [NOW_OPTION, MAX_OPTION]
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
        values = {QUESTION_INPUT: "Which layout do usability studies favour?", OPTIONS_INPUT: [NOW_OPTION, MAX_OPTION]}
        assert (await slack_emu.views.submit(modal, values)).status == 200
        await slack_emu.views.submit(modal, values)  # Slack sends it again (a retry): one job
        await eventually(lambda: done(slack_emu, root.ts), 15, message="the report in the thread")
        [create] = agent_creates(gemini_emu)
        assert create["agent"] == MAX_AGENT and create["agent_config"]["collaborative_planning"] is False
        [research] = agent_ids(gemini_emu)
        recorded = gemini_emu.interaction(research)
        assert "Bob Brown: Which dashboard layout is clearer?" in recorded["input_text"]
        assert "Carol Chen: This one, I think. [shared the file “layout.png”]" in recorded["input_text"]
        assert recorded["input_text"].rstrip().endswith("Which layout do usability studies favour?")
        assert [m["sha256"] for m in recorded["media"]] == [hashlib.sha256(PNG).hexdigest()]
        assert MAX_AGENT in status_text(thread_status(slack_emu, root.ts))
    finally:
        await stop_bot(bot)


# 6 + issue 24: someone outside the access policy gets one line, for the shortcut (no modal) and for the mention
# (no job); nothing of the thread is read
async def test_research_in_a_thread_obeys_the_access_policy(settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(deny_users="U_ALICE"), slack_emu)
    try:
        root = await people_thread(slack_emu)
        message = slack_emu.messages("C_GENERAL", root)[-1]
        await slack_emu.agents.message_shortcut(message, SHORTCUT, user="U_ALICE")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} research which vendor is cheaper", thread_ts=root)
        lines = await eventually(lambda: len(mine := [e["text"] for e in slack_emu.ephemerals
                                                      if e["user"] == "U_ALICE"]) == 2 and mine, 10,
                                 message="one line for each")
        assert lines[0] == lines[1] and "\n" not in lines[0]
        assert not slack_emu.views.opened and not agent_creates(gemini_emu)
        assert not slack_emu.calls_to("conversations.replies")
    finally:
        await stop_bot(bot)


# 2 (per-profile agent): a channel's profile picks its research agent for /research and thread research alike;
# `--max` still runs the max agent; /gemini shows it
async def test_profile_research_agent(settings_for, slack_emu, gemini_emu, tmp_path):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"profiles:\n  deep:\n    research_agent: {PROFILE_AGENT}\nchannels:\n  C_GENERAL: deep\n")
    bot = await start_bot(settings_for(profiles_file=str(profiles), research_max_per_user=3), slack_emu)
    try:
        for _ in range(3):
            gemini_emu.script_agent(queued_for=0.1, run_for=0.2)
        await slack_emu.slash_command("/research", "Which vendor is cheaper?")
        await eventually(lambda: len(agent_creates(gemini_emu)) == 1, 10, message="the first job")
        await slack_emu.slash_command("/research", "--max Which vendor is cheaper in 2027?")
        await eventually(lambda: len(agent_creates(gemini_emu)) == 2, 10, message="the --max job")
        root = await people_thread(slack_emu)
        await slack_emu.user_message("C_GENERAL", f"{MENTION} research", thread_ts=root)
        await eventually(lambda: len(agent_creates(gemini_emu)) == 3, 10, message="the thread's job")
        assert [c["agent"] for c in agent_creates(gemini_emu)] == [PROFILE_AGENT, MAX_AGENT, PROFILE_AGENT]
        shown = await slack_emu.slash_command("/gemini", "")
        assert f"Research agent: `{PROFILE_AGENT}`" in shown.body
    finally:
        await stop_bot(bot)


HOSTILE_REPORT = (
    "# Vendor findings\n\nAsk ![](@U_BOB) or <@U_CAROL> and tell <!channel>; see ![](#C_RANDOM) and "
    "![the memo](https://acme.slack.com/archives/C_GENERAL/p1700000000000100), or <https://evil.example|Slack login>.\n\n"
    "## Prices\n\n| Vendor | Monthly |\n|---|---|\n| Acme | [$120](https://acme.example/pricing) |\n"
    "| Globex | $95 |\n\n" + "More findings follow. " * 60 + "\n"
)


# 4 (canvases): the report (web text) and the title (the asker's question) go into the canvas Markdown as written:
# no mention, broadcast or embed acts there, while headings, tables and links stay readable
async def test_canvas_text_is_never_markup(settings_for, slack_emu, gemini_emu):
    assert all(markup_acts(HOSTILE_REPORT).values()), "the report would act if passed through"
    bot = await start_bot(settings_for(research_file_threshold=500), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.2, report=HOSTILE_REPORT)
        await slack_emu.slash_command("/research", "Compare ![](@U_BOB) <!here> vendors")
        [canvas] = (await eventually(lambda: list(slack_emu.canvases.canvases.values()), 15, message="the canvas"))
        assert slack_emu.canvases.acts(canvas["id"]) == {"mentions": [], "channels": [], "embeds": [], "tokens": []}
        markdown = canvas["markdown"]
        assert markdown.startswith("# Research: Compare !\\[](@U_BOB) ‹!here› vendors\n")
        for line in ("# Vendor findings", "## Prices", "| Vendor | Monthly |", "|---|---|",
                     "| Acme | [$120](https://acme.example/pricing) |"):
            assert line in markdown.splitlines(), line
        assert "<" not in canvas["title"] and ">" not in canvas["title"]
    finally:
        await stop_bot(bot)
