"""Pure parts of research: what a poll's answer means (decide.py), what a status message says
(status.py: untrusted text never becomes Slack markup), and the typed job record."""

from __future__ import annotations

import json

import pytest

from slackbot.research import decide, thread
from slackbot.research import status as view
from slackbot.store.jobs import Job

HOSTILE = "hi <!channel> <!here> <@U_BOB> <https://evil.example|Slack login> & more"
MAX = 90 * 60.0


@pytest.mark.parametrize("status", ["queued", "in_progress", "requires_continuation", "pondering", "unknown"])
def test_running_and_unknown_statuses_keep_polling(status):
    assert decide.after_snapshot(status, 10, MAX) == decide.POLL


def test_completed_posts_the_report():
    assert decide.after_snapshot("completed", 10, MAX) == decide.REPORT
    assert decide.after_snapshot("completed", MAX * 2, MAX) == decide.REPORT  # late, but it finished


@pytest.mark.parametrize("status", sorted(decide.ENDINGS))
def test_ending_statuses_finish_with_that_outcome(status):
    assert decide.after_snapshot(status, 10, MAX) == decide.Next("finish", status)


def test_running_past_the_maximum_times_out():
    assert decide.after_snapshot("in_progress", MAX + 1, MAX) == decide.TIME_OUT
    assert decide.TIME_OUT.outcome == "timed_out"


def test_poll_errors():
    assert decide.after_error("not_found", 10, MAX) == decide.Next("finish", "lost")
    assert decide.after_error("unavailable", 10, MAX) == decide.POLL
    assert decide.after_error("rate_limited", MAX + 1, MAX) == decide.Next("finish", "timed_out")


def test_poll_interval_backs_off_to_a_maximum():
    assert decide.next_interval(10, initial=10, backoff=1.5, maximum=60) == 15
    assert decide.next_interval(50, initial=10, backoff=1.5, maximum=60) == 60
    assert decide.next_interval(0, initial=10, backoff=1.5, maximum=60) == 15


def test_status_edits_on_change_or_at_a_calm_rate():
    assert decide.status_edit_due(old_status="queued", new_status="in_progress", last_update=100, now=101, every=30)
    assert not decide.status_edit_due(old_status="in_progress", new_status="in_progress", last_update=100, now=101,
                                      every=30)
    assert decide.status_edit_due(old_status="in_progress", new_status="in_progress", last_update=100, now=131,
                                  every=30)


def _job(**kw) -> Job:
    values = dict(id="j1", team="T1", channel="C1", requester="U_ALICE", question=HOSTILE, created=1000.0,
                  status="in_progress", progress=f"Reading {HOSTILE}")
    values.update(kw)
    return Job(**values)


def _mrkdwn(payload: dict) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                texts.append(element["text"])
    return texts


def test_status_message_escapes_the_question_and_progress():
    payload = view.status_message(_job(), now=1060)
    joined = "\n".join(_mrkdwn(payload))
    for token in ("<!channel>", "<!here>", "<@U_BOB>", "<https://evil"):
        assert token not in joined
    assert "&lt;!channel&gt;" in joined and "&lt;https://evil.example|Slack login&gt;" in joined
    assert "&amp; more" in joined
    assert "<@U_ALICE>" in joined  # the bot's own mention of the requester still pings
    assert "&lt;!here&gt;" in payload["text"]  # the notification fallback too


def test_escaped_text_respects_block_limits_and_never_cuts_an_entity():
    payload = view.status_message(_job(question="<" * 5000, progress=">" * 500), now=1060)
    for text in _mrkdwn(payload):
        assert len(text) <= 3000
    cut = view.plain("a" + "<" * 100, 20)
    assert cut.endswith("…") and cut.count("&lt;") * 4 + 2 == len(cut)


def test_jobs_list_and_file_title_escape_the_question():
    listing = view.jobs_list([_job(), _job(id="j2", status="completed", finished=1100.0)], now=2000)
    assert "<!channel>" not in listing and "&lt;!channel&gt;" in listing
    title = view.file_title(HOSTILE)
    assert "<" not in title and ">" not in title


def test_cancel_shows_only_while_running():
    def has_cancel(job):
        return view.CANCEL_ACTION in json.dumps(view.status_message(job, now=1060)["blocks"])
    assert has_cancel(_job())
    assert has_cancel(_job(status="pondering"))  # an unknown status is still running: Cancel stays
    assert not has_cancel(_job(status="posting"))
    assert not has_cancel(_job(status="cancelled", finished=1050.0))


def test_job_round_trips_through_its_hash_fields():
    job = _job(parts_posted=3, file_posted=True, poll_interval=2.5, finished=1200.0, owner="w-1")
    assert Job.from_fields(job.fields()) == job
    assert Job.from_fields({"owner": "w-1"}) is None  # a stray half-record is not a job


# issue 22: flags are leading words only; the plan is shown escaped, as a list, with its buttons
@pytest.mark.parametrize("text, expected", [
    ("what is new?", decide.Request("what is new?")),
    ("--now what is new?", decide.Request("what is new?", now=True)),
    ("--MAX --now  what is new?", decide.Request("what is new?", now=True, max=True)),
    ("compare --max and --now flags", decide.Request("compare --max and --now flags")),
    ("--now", decide.Request("", now=True)),
])
def test_research_request_flags(text, expected):
    assert decide.parse_request(text) == expected


def test_plan_expires_after_its_timeout():
    assert not decide.plan_expired(plan_ready=100.0, now=159.0, timeout=60.0)
    assert decide.plan_expired(plan_ready=100.0, now=160.0, timeout=60.0)


def test_waiting_plan_is_an_escaped_list_with_start_edit_cancel():
    job = Job(id="j1", team="T", channel="C", requester="U_ALICE", question="q", created=1.0, status="awaiting_approval",
              plan=f"Research plan: q\n\n1. {HOSTILE}\n2. " + "x" * 5000, plan_ready=2.0)
    payload = view.status_message(job, now=3.0)
    text = json.dumps(payload["blocks"])
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    plan = payload["blocks"][1]["text"]["text"]
    assert plan.startswith("*Research plan*\n>Research plan: q\n>1. ") and len(plan) < 3000
    actions = [e["action_id"] for e in payload["blocks"][-1]["elements"]]
    assert actions == [view.START_ACTION, view.EDIT_ACTION, view.CANCEL_ACTION]
    modal = view.edit_view(job.id, job.plan, job.channel)
    assert modal["private_metadata"] == "j1 C" and len(modal["blocks"][0]["element"]["initial_value"]) == 3000


def test_canvas_pointer_and_fallback_lines_keep_the_question_inert():
    title = view.file_title(HOSTILE)
    line = view.canvas_pointer(title, "https://emulated.slack.com/docs/T1/F1")
    assert line.count("<") == 1 and "<https://emulated.slack.com/docs/T1/F1|Research: hi ‹!channel›" in line
    assert "&amp; more" in line
    assert "canvas tabs" in view.canvas_pointer(title, "") and "<" not in view.canvas_pointer(title, "")
    assert "free plan" in view.canvas_fallback("free_team_canvas_tab_already_exists")
    assert "could not create it" in view.canvas_fallback("canvas_creation_failed")


def test_webhook_hint_is_read_without_trusting_it():
    from slackbot.research import webhook
    good = json.dumps({"type": "interaction.completed", "data": {"id": "v1_a", "user_metadata": {"job": "ab12"}}})
    assert webhook.hint_of(good.encode()) == ("ab12", "v1_a")
    for bad in (b"junk", b"[]", b'{"data": []}', json.dumps({"data": {"user_metadata": {"job": "a:b*"}}}).encode()):
        assert webhook.hint_of(bad) == ("", "")
    assert webhook.config_for("", "j") is None
    assert webhook.config_for("https://bot.example.com", "j") == {
        "uris": ["https://bot.example.com/gemini/webhook"], "user_metadata": {"job": "j"}}


# --- issue 22.6: research on a thread (research/thread.py) and canvases that never act (render.canvas_markdown)
@pytest.mark.parametrize("text, question, now, deeper", [
    ("<@UBOT> research this: which vendor is cheaper?", "which vendor is cheaper?", False, False),
    ("<@UBOT> Research: --max --now pricing of <@U1>", "pricing of <@U1>", True, True),
    ("<@UBOT> research --max this thread: the pricing", "the pricing", False, True),
    ("<@UBOT> research this thread", "", False, False),
    ("<@UBOT> research", "", False, False),
    ("<@UBOT> research this vendor's pricing", "this vendor's pricing", False, False),
])
def test_a_mention_starting_with_research_asks_for_research(text, question, now, deeper):
    assert thread.mention_request(text, "UBOT") == decide.Request(question, now=now, max=deeper)


@pytest.mark.parametrize("text", ["<@UBOT> researchers say so, right?", "<@UBOT> what does research say?",
                                  "<@UBOT> forget", "<@UBOT>"])
def test_other_mentions_are_chat(text):
    assert thread.mention_request(text, "UBOT") is None


def test_the_modal_carries_where_and_reads_back_what_was_chosen():
    modal = thread.ask_view(channel="C1", thread_ts="1.5", planning=True, max_agent="deep-max", files_max=10)
    assert modal["private_metadata"] == "C1 1.5" and "up to 10 of the files" in modal["blocks"][0]["text"]["text"]
    no_plan = thread.ask_view(channel="C1", thread_ts="1.5", planning=False, max_agent="deep-max", files_max=10)
    assert [o["value"] for o in no_plan["blocks"][2]["element"]["options"]] == [thread.MAX_OPTION]
    state = {"values": {thread.QUESTION_INPUT: {thread.QUESTION_INPUT: {"value": "  Why?  "}},
                        thread.OPTIONS_INPUT: {thread.OPTIONS_INPUT: {"selected_options": [{"value": "max"}]}}}}
    assert thread.submitted({**modal, "state": state}) == ("C1", "1.5", decide.Request("Why?", max=True))
    empty = {"values": {thread.QUESTION_INPUT: {thread.QUESTION_INPUT: {"value": None}}}}
    assert thread.submitted({**modal, "state": empty}) == ("C1", "1.5", decide.Request(""))


def test_canvas_markdown_shows_embeds_and_tokens_as_typed():
    from slackbot.slack_out.render import canvas_markdown
    from slackbot_emulators.slack_canvases import markup_acts

    md = ("# Title ![](@U1)\n\n| a | ![](#C1) |\n|---|---|\n| [link](https://x.example) | <!channel> |\n\n"
          "```\n![](@U2)\n```\n`![](@U3)` ![x](https://t.slack.com/archives/C1/p1) <@U4> <https://e.example|login>")
    out = canvas_markdown(md)
    assert markup_acts(out) == {"mentions": [], "channels": [], "embeds": [], "tokens": []}
    assert "| [link](https://x.example) | &lt;!channel&gt; |" in out and out.startswith("# Title !\\[](@U1)\n")
    assert canvas_markdown("a" + "![" * 50000) == "a" + "!\\[" * 50000  # linear, whatever the input
