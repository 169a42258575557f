"""Issue 22, /research people steer: the agent's plan first (Start / Edit plan / Cancel, requester only, a
durable wait with a timeout), the agent chosen per job. End to end: signed slash commands, clicks and modal
submissions -> real bot -> Deep Research agent emulator; Redis real.

Each test names the numbered point of issue 22 it proves.
"""

from __future__ import annotations

import copy
import signal

import aiohttp
import pytest

from conftest import end_processes, eventually, free_port, start_bot, stop_bot
from test_research import has_cancel, job_record, report_texts, status_messages, status_text

from slackbot.research.status import CANCEL_ACTION, EDIT_ACTION, EDIT_INPUT, START_ACTION

QUESTION = "How do EU countries enforce the AI Act?"
STEPS = ["Read the EU AI Act's enforcement chapter", "Compare national market surveillance authorities"]


def agent_creates(gemini_emu) -> list[dict]:
    return [r["body"] for r in gemini_emu.requests
            if r["method"] == "POST" and r["status"] == 200 and (r["body"] or {}).get("agent")]


def buttons(message) -> list[str]:
    return [e.get("action_id") for b in message.blocks or [] if b.get("type") == "actions"
            for e in b.get("elements", [])]


def status(slack_emu):
    return status_messages(slack_emu)[0]


async def plan_shown(slack_emu, *, containing: str = "1. "):
    """The status message once it shows the plan with its three buttons."""
    def ready():
        found = status_messages(slack_emu)
        return (found and "Research plan" in status_text(found[0]) and containing in status_text(found[0])
                and START_ACTION in buttons(found[0]) and found[0])
    return await eventually(ready, 10, message="the plan with Start / Edit plan / Cancel")


def done(slack_emu) -> bool:
    return bool(status_messages(slack_emu)) and "Done" in status_text(status(slack_emu))


@pytest.fixture
async def planning_bot(settings_for, slack_emu):
    running = await start_bot(settings_for(research_planning=True), slack_emu)
    yield running
    await stop_bot(running)


# 1 + 2: the plan is shown as a list with its buttons; only the requester may press them; Start continues the
# same chain, so the report follows the approved plan; the status says which agent ran and how long it took
@pytest.mark.cluster
async def test_plan_then_start_runs_the_research_on_the_approved_plan(planning_bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
    await slack_emu.slash_command("/research", QUESTION)
    shown = await plan_shown(slack_emu)
    text = status_text(shown)
    assert "1. Read the EU AI Act's enforcement chapter" in text
    assert "2. Compare national market surveillance authorities" in text
    assert buttons(shown) == [START_ACTION, EDIT_ACTION, CANCEL_ACTION]
    [plan_create] = agent_creates(gemini_emu)
    assert plan_create["agent_config"]["collaborative_planning"] is True and plan_create["input"] == QUESTION
    # someone else presses Start: told whose plan it is, nothing starts
    await slack_emu.click_button(shown, START_ACTION, user="U_BOB")
    await eventually(lambda: any(e["user"] == "U_BOB" and "Only <@U_ALICE>" in e["text"] for e in slack_emu.ephemerals))
    assert len(agent_creates(gemini_emu)) == 1
    await slack_emu.click_button(status(slack_emu), START_ACTION, user="U_ALICE")
    await eventually(lambda: done(slack_emu), 15, message="the report after Start")
    research = agent_creates(gemini_emu)[1]
    assert research["agent_config"]["collaborative_planning"] is False
    planned = gemini_emu.interaction(research["previous_interaction_id"])  # the same chain: the plan's turn
    assert planned["input_text"] == QUESTION and STEPS[0] in planned["research_plan"]
    report = "\n".join(report_texts(slack_emu, status(slack_emu)))
    assert "Plan followed" in report and STEPS[1] in report  # the agent researched the approved plan
    final = status_text(status(slack_emu))
    assert "deep-research-pro-preview-12-2025" in final and "took" in final and not has_cancel(status(slack_emu))


# 1: Edit plan opens a modal holding the plan; what is submitted goes to the agent as the next turn (a
# revised plan, shown again for approval), then Start researches that plan
async def test_edit_plan_sends_the_modal_text_to_the_agent(planning_bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=[*STEPS, "Add the UK for contrast"])
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
    await slack_emu.slash_command("/research", QUESTION)
    shown = await plan_shown(slack_emu)
    await slack_emu.click_button(shown, EDIT_ACTION, user="U_ALICE")
    modal = (await eventually(lambda: slack_emu.views.opened, 5, message="the Edit plan modal"))[0]
    assert modal["user"] == "U_ALICE" and STEPS[0] in str(modal["blocks"])
    submitted = await slack_emu.views.submit(modal, {EDIT_INPUT: "Add the UK for contrast"})
    assert submitted.status == 200
    revised = await plan_shown(slack_emu, containing="Revised as asked: Add the UK for contrast")
    edit_create = agent_creates(gemini_emu)[1]
    assert edit_create["input"] == "Add the UK for contrast"
    assert edit_create["agent_config"]["collaborative_planning"] is True
    assert gemini_emu.interaction(edit_create["previous_interaction_id"])["input_text"] == QUESTION
    await slack_emu.click_button(revised, START_ACTION, user="U_ALICE")
    await eventually(lambda: done(slack_emu), 15, message="the report after the edited plan")
    report = "\n".join(report_texts(slack_emu, status(slack_emu)))
    assert "Add the UK for contrast" in report


# 1: Edit plan sent back unchanged is a Start: the research runs on that plan, no revision is asked for
async def test_edit_plan_submitted_unchanged_starts_the_research(planning_bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
    await slack_emu.slash_command("/research", QUESTION)
    await slack_emu.click_button(await plan_shown(slack_emu), EDIT_ACTION, user="U_ALICE")
    modal = (await eventually(lambda: slack_emu.views.opened, 5, message="the Edit plan modal"))[0]
    [block] = [b for b in modal["blocks"] if b.get("block_id") == EDIT_INPUT]
    await slack_emu.views.submit(modal, {EDIT_INPUT: block["element"]["initial_value"]})
    await eventually(lambda: done(slack_emu), 15, message="the report after an unchanged plan")
    creates = agent_creates(gemini_emu)
    assert len(creates) == 2 and creates[1]["agent_config"]["collaborative_planning"] is False


# 1 + 7: the waiting plan is durable: the bot that showed it stops, another one starts, Start still works
# and the report is posted once
async def test_waiting_plan_survives_a_restart(settings_for, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
    first = await start_bot(settings_for(research_planning=True), slack_emu)
    try:
        await slack_emu.slash_command("/research", QUESTION)
        await plan_shown(slack_emu)
    finally:
        await stop_bot(first)
    second = await start_bot(settings_for(research_planning=True), slack_emu)
    try:
        await slack_emu.click_button(status(slack_emu), START_ACTION, user="U_ALICE")
        await eventually(lambda: done(slack_emu), 15, message="the report after a restart")
        replies = report_texts(slack_emu, status(slack_emu))
        assert sum("Plan followed" in r for r in replies) == 1
        assert len(agent_creates(gemini_emu)) == 2
    finally:
        await stop_bot(second)


# 1: nobody presses anything: the timeout cancels the job with one line (and frees the requester's slot)
async def test_unanswered_plan_times_out_with_one_line(settings_for, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    bot = await start_bot(settings_for(research_planning=True, research_plan_timeout_minutes=0.02,
                                       research_max_per_user=1), slack_emu)
    try:
        await slack_emu.slash_command("/research", QUESTION)
        await plan_shown(slack_emu)
        await eventually(lambda: "waited too long" in status_text(status(slack_emu)), 10, message="plan expired")
        assert "Nobody pressed Start" in status_text(status(slack_emu)) and not buttons(status(slack_emu))
        gemini_emu.script_agent(queued_for=0.1, run_for=0.2)
        await slack_emu.slash_command("/research", "--now a second question")
        await eventually(lambda: len(agent_creates(gemini_emu)) == 2, 5, message="the slot was freed")
    finally:
        await stop_bot(bot)


# 1 + 7: Cancel while the plan waits ends the job (nothing runs at Gemini to cancel)
@pytest.mark.cluster
async def test_cancel_while_the_plan_waits(planning_bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=STEPS)
    await slack_emu.slash_command("/research", QUESTION)
    shown = copy.deepcopy(await plan_shown(slack_emu))  # as a slow client still shows it
    await slack_emu.click_button(shown, CANCEL_ACTION, user="U_ALICE")
    await eventually(lambda: "Cancelled by <@U_ALICE>" in status_text(status(slack_emu)), 10, message="cancelled")
    assert not buttons(status(slack_emu)) and len(agent_creates(gemini_emu)) == 1
    await slack_emu.click_button(shown, START_ACTION, user="U_ALICE")  # a late Start on the old message
    await eventually(lambda: any("already been answered" in e["text"] for e in slack_emu.ephemerals))
    assert len(agent_creates(gemini_emu)) == 1


# 1 + 2: `--now` skips the plan; `--max` runs the deeper agent, and the status says so
async def test_now_and_max_flags(planning_bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
    await slack_emu.slash_command("/research", "--max --now " + QUESTION)
    await eventually(lambda: done(slack_emu), 15, message="the report")
    [create] = agent_creates(gemini_emu)
    assert create["agent"] == "deep-research-max-preview-04-2026" and create["input"] == QUESTION
    assert create["agent_config"]["collaborative_planning"] is False
    assert "deep-research-max-preview-04-2026" in status_text(status(slack_emu))


LONG = 1000  # research_file_threshold in these tests: the emulator's reports are longer


# 4: a long report becomes a canvas tab in the channel (headings, tables, sources intact); the thread holds
# one message linking to it, and follow-ups there keep chaining onto the research
async def test_long_report_becomes_a_canvas_linked_from_the_thread(settings_for, slack_emu, gemini_emu, redis_url,
                                                                   prefix):
    bot = await start_bot(settings_for(research_file_threshold=LONG), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
        await slack_emu.slash_command("/research", QUESTION)
        await eventually(lambda: done(slack_emu), 15, message="the report")
        [canvas] = slack_emu.canvases.canvases.values()
        [job] = await job_record(redis_url, prefix)
        report = gemini_emu.interaction(job["interaction_id"])["output_text"]
        assert canvas["channel"] == "C_GENERAL" and canvas["title"] == f"Research: {QUESTION}"
        for line in report.splitlines():
            if line.startswith("#") or line.startswith("|"):
                assert line in canvas["markdown"], line
        assert "http" in canvas["markdown"]
        [pointer] = [m for m in slack_emu.bot_messages("C_GENERAL", status(slack_emu).ts)
                     if m.ts != status(slack_emu).ts and not m.files]
        assert f"/docs/{canvas['team']}/{canvas['id']}|Research: {QUESTION}>" in pointer.text
        assert not uploads(slack_emu, ".md"), "a canvas replaces the Markdown file"
        await slack_emu.user_message("C_GENERAL", "what matters most?", thread_ts=status(slack_emu).ts)
        await eventually(lambda: gemini_emu.model_creates(), 10, message="the follow-up")
        assert gemini_emu.model_creates()[-1]["previous_interaction_id"] == job["interaction_id"]
    finally:
        await stop_bot(bot)


# 4: where canvases are unavailable the report falls back to messages plus the Markdown file, with one line
# saying why: a free workspace whose channel already has its canvas tab, or no canvases:write scope
@pytest.mark.parametrize("unavailable, why", [("free_tab_taken", "already has its canvas"),
                                              ("no_scope", "canvases:write")])
async def test_report_falls_back_to_messages_and_file_when_canvases_are_unavailable(
        settings_for, slack_emu, gemini_emu, unavailable, why):
    if unavailable == "free_tab_taken":
        slack_emu.workspaces[slack_emu.team_id].plan = "free"
        slack_emu.canvases._create("Team notes", "notes", slack_emu.channels["C_GENERAL"], "tab")
    else:
        slack_emu.scopes.discard("canvases:write")
    bot = await start_bot(settings_for(research_file_threshold=LONG), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
        await slack_emu.slash_command("/research", QUESTION)
        await eventually(lambda: done(slack_emu) and uploads(slack_emu, ".md"), 15, message="the report and its file")
        parts = report_texts(slack_emu, status(slack_emu))
        assert why in parts[0] and sum("rather than a canvas" in p for p in parts) == 1
        assert len(parts) >= 2  # the report itself follows, in parts
        assert len(slack_emu.canvases.canvases) == (1 if unavailable == "free_tab_taken" else 0)
    finally:
        await stop_bot(bot)


# 5: with SLACKBOT_PUBLIC_URL each job passes webhook_config; the call is a hint the bot verifies by fetching
# the interaction, so the report lands long before the next poll (the poll interval here is a minute).
# Hints for unknown jobs or another interaction are ignored.
async def test_webhook_brings_the_report_before_the_next_poll(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    port = free_port()
    bot = await start_bot(settings_for(port=port, public_url=f"http://127.0.0.1:{port}", research_poll_initial=60.0,
                                       research_poll_max=60.0), slack_emu)
    try:
        async with aiohttp.ClientSession() as http:
            for forged in ({"data": {"id": "v1_x", "user_metadata": {"job": "nosuchjob"}}}, {"data": []}, "junk"):
                async with http.post(f"{bot.url}/gemini/webhook", json=forged) as resp:
                    assert resp.status == 204
        gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
        await slack_emu.slash_command("/research", QUESTION)
        [create] = await eventually(lambda: agent_creates(gemini_emu), 5, message="the agent started")
        [job] = await eventually(lambda: job_record(redis_url, prefix), 5, message="the job")
        assert create["webhook_config"] == {"uris": [f"http://127.0.0.1:{port}/gemini/webhook"],
                                            "user_metadata": {"job": job["id"]}}
        await eventually(lambda: done(slack_emu), 15, message="the report, brought by the webhook")
        assert report_texts(slack_emu, status(slack_emu))
        delivered = [d for d in gemini_emu.webhook_deliveries if not d.get("skipped")]
        assert delivered and delivered[0]["body"]["data"]["id"] == job["interaction_id"]
        first_part = min(float(m.ts) for m in slack_emu.bot_messages("C_GENERAL", status(slack_emu).ts)
                         if m.ts != status(slack_emu).ts)
        print(f"report posted {first_part - delivered[0]['time']:.2f}s after Gemini's completion webhook")
    finally:
        await stop_bot(bot)


def uploads(slack_emu, suffix: str) -> list[dict]:
    return [f for f in slack_emu.files if f.get("filename", "").endswith(suffix)]


# 3: with visualization "auto" the report's charts are uploaded into the thread in report order, titled, and
# the text points at each; where an upload failed the text says so and still reads on
@pytest.mark.parametrize("fail_first", [False, True])
async def test_charts_are_uploaded_in_order_and_the_report_points_at_them(bot, slack_emu, gemini_emu, fail_first):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3, charts=2)
    if fail_first:
        slack_emu.fail_next("files.completeUploadExternal", "internal_error")
    await slack_emu.slash_command("/research", "--now " + QUESTION)
    await eventually(lambda: done(slack_emu), 15, message="the report")
    [create] = agent_creates(gemini_emu)
    assert create["agent_config"]["visualization"] == "auto"
    charts = uploads(slack_emu, ".png")
    assert [c["title"] for c in charts] == (["Figure 2: Share by region"] if fail_first else
                                            ["Figure 1: Trend by year", "Figure 2: Share by region"])
    assert all(c["thread_ts"] == status(slack_emu).ts and c["content"].startswith(b"\x89PNG") for c in charts)
    report = "\n".join(report_texts(slack_emu, status(slack_emu)))
    first = "Figure 1: Trend by year could not be uploaded" if fail_first else \
        "Figure 1: Trend by year is attached in this thread"
    assert first in report and "Figure 2: Share by region is attached in this thread" in report
    assert report.index("Figure 1: Trend by year") < report.index("Figure 2: Share by region")


# 7: a worker killed while Slack is creating the report's canvas: the takeover never makes a second canvas;
# it posts the report in the thread (with its one line) exactly once
async def test_killed_worker_mid_canvas_never_makes_a_second_canvas(settings_for, slack_emu, gemini_emu, redis_url,
                                                                    prefix):
    from test_research import _spawn_bot, _wait_healthy

    env = {"SLACKBOT_RESEARCH_FILE_THRESHOLD": str(LONG)}
    first, second = settings_for(port=free_port()), settings_for(port=free_port())
    procs = [_spawn_bot(first, env)]
    try:
        await _wait_healthy(first.port)
        slack_emu.app_url = f"http://127.0.0.1:{first.port}/slack/events"
        slack_emu.hold_next("canvases.create", 30)  # created in Slack, the answer never reaches the dying worker
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3, charts=0)
        await slack_emu.slash_command("/research", QUESTION)
        await eventually(lambda: slack_emu.canvases.canvases, 15, message="the canvas call under way")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        procs.append(_spawn_bot(second, env))
        await _wait_healthy(second.port)
        await eventually(lambda: done(slack_emu), 30, message="the takeover finished the report")
        assert len(slack_emu.canvases.canvases) == 1
        [job] = await job_record(redis_url, prefix)
        parts = report_texts(slack_emu, status(slack_emu))
        assert int(job["parts_posted"]) == len(parts) and len(set(parts)) == len(parts)
        assert sum("rather than a canvas" in p for p in parts) == 1
    finally:
        end_processes(procs)
