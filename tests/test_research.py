"""/research end to end: signed slash commands and button clicks -> real bot -> agent emulator; Redis real.

Each test names the numbered point of the research issue it proves.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest

from conftest import (end_processes, eventually, free_port, metric, open_store, process_env, start_bot, stop_bot,
                      wait_ready as _wait_healthy)

from slackbot.research.status import CANCEL_ACTION

QUESTION = "What changed in EU AI Act enforcement in 2026?"


def status_messages(slack_emu, channel="C_GENERAL"):
    return [m for m in slack_emu.bot_messages(channel) if m.thread_ts in (None, m.ts) and "Deep Research" in m.text]


def status_text(message) -> str:
    """What a person reads in a status message: section and context texts."""
    lines = []
    for block in message.blocks or []:
        if block.get("type") == "section":
            lines.append(block["text"]["text"])
        elif block.get("type") == "context":
            lines.extend(e.get("text", "") for e in block.get("elements", []))
    return "\n".join(lines)


def has_cancel(message) -> bool:
    return any(e.get("action_id") == CANCEL_ACTION for b in message.blocks or [] if b.get("type") == "actions"
               for e in b.get("elements", []))


def report_texts(slack_emu, status):
    """The report's messages in the thread (not the uploads of its charts or Markdown file)."""
    return [m.visible_text for m in slack_emu.bot_messages("C_GENERAL", status.ts) if m.ts != status.ts and not m.files]


async def job_record(redis_url, prefix):
    store = await open_store(redis_url, prefix)
    try:
        return [await store.redis.hgetall(k) for k in await store.prefix_keys(store.keys.jobs.any_job)]
    finally:
        await store.close()


# 1 + 2 + 4 + 6: start, poll to completion, report in the thread, follow-up chains onto the agent
@pytest.mark.cluster
async def test_research_runs_to_a_report_and_follow_ups_chain_onto_it(bot, slack_emu, gemini_emu, redis_url, prefix):
    gemini_emu.script_agent(queued_for=0.2, run_for=1.5, thoughts=["Reading the AI Office's 2026 notices",
                                                                     "Comparing national enforcement"])
    ack = await slack_emu.slash_command("/research", QUESTION)
    assert ack.status == 200 and ack.latency < 3.0
    status = (await eventually(lambda: status_messages(slack_emu), message="status message"))[0]
    assert QUESTION in status_text(status) and "<@U_ALICE>" in status_text(status)
    assert has_cancel(status)
    agent_creates = await eventually(lambda: [r["body"] for r in gemini_emu.requests
                                               if r["method"] == "POST" and (r["body"] or {}).get("agent")])
    agent_create = agent_creates[0]
    assert agent_create["agent"] == "deep-research-pro-preview-12-2025"
    assert agent_create["background"] is True and agent_create["input"] == QUESTION
    [job] = await eventually(lambda: job_record(redis_url, prefix), message="job record")
    for field in ("id", "interaction_id", "team", "channel", "status_ts", "requester", "question", "created", "status"):
        assert job.get(field), field
    assert job["status_ts"] == status.ts and job["requester"] == "U_ALICE"
    # the status moves while it runs, showing progress
    await eventually(lambda: "Researching" in status_text(slack_emu.bot_messages("C_GENERAL")[0]), 5)
    await eventually(lambda: "Done" in status_text(status_messages(slack_emu)[0]), 10, message="done status")
    final_status = status_messages(slack_emu)[0]
    assert "took" in status_text(final_status) and not has_cancel(final_status)
    report = gemini_emu.interaction(job["interaction_id"])["output_text"]
    parts = report_texts(slack_emu, final_status)
    assert len(parts) >= 2, "a long report is split across messages"
    joined = "\n".join(parts)
    for heading in [line for line in report.splitlines() if line.startswith("#")]:
        assert heading in joined
    assert "http" in joined  # its sources
    assert all(len(p) <= 3500 for p in parts)
    # a reply in the report thread asks Gemini about the report
    await slack_emu.user_message("C_GENERAL", "what is the most important change?", thread_ts=status.ts)
    await eventually(lambda: "Reply 2 to: what is the most important change?" in report_texts(slack_emu, status), 10,
                     message="follow-up answer")
    follow_up = gemini_emu.model_creates()[-1]
    assert follow_up["previous_interaction_id"] == job["interaction_id"]


async def _started(redis_url, prefix) -> bool:
    return any(job.get("interaction_id") for job in await job_record(redis_url, prefix))


# 4: above the size threshold the report is also attached as a Markdown file (where it cannot be a canvas:
# issue 22, test_research_plan.py)
async def test_large_report_is_attached_as_file(settings_for, slack_emu, gemini_emu):
    slack_emu.scopes.discard("canvases:write")
    bot = await start_bot(settings_for(research_file_threshold=1000), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3)
        await slack_emu.slash_command("/research", "a big question")
        await eventually(lambda: status_messages(slack_emu) and "Done" in status_text(status_messages(slack_emu)[0]), 10)
        await eventually(lambda: [f for f in slack_emu.files if f["filename"].endswith(".md")], 5)
        [upload] = [f for f in slack_emu.files if f["filename"].endswith(".md")]  # beside the report's charts
        assert upload["filename"].endswith(".md") and upload["thread_ts"] == status_messages(slack_emu)[0].ts
        assert b"#" in upload["content"]
    finally:
        await stop_bot(bot)


# 5: failures end with a clear status saying what happened and how to retry
async def test_failed_and_budget_exceeded_jobs_say_so(bot, slack_emu, gemini_emu):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3, final_status="failed")
    gemini_emu.script_agent(queued_for=0.1, run_for=0.3, final_status="budget_exceeded")
    await slack_emu.slash_command("/research", "question one")
    await slack_emu.slash_command("/research", "question two")

    def endings():
        texts = [status_text(m) for m in status_messages(slack_emu)]
        return len(texts) == 2 and all("Researching" not in t and "Queued" not in t and "Starting" not in t
                                       for t in texts) and texts
    texts = await eventually(endings, 10, message="both jobs ended")
    assert any("Failed" in t for t in texts)
    assert any("budget ran out" in t for t in texts)
    assert all("/research" in t for t in texts), "each says how to retry"


# 2: unknown / odd statuses are tolerated until a terminal one; max run time cancels and says timed out
async def test_unknown_status_then_timeout(settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(research_max_minutes=0.03), slack_emu)
    try:
        gemini_emu.script_agent(statuses=[["queued", 0.2], ["in_progress", 0.3], ["pondering", 30]])
        await slack_emu.slash_command("/research", "slow question")
        await eventually(lambda: status_messages(slack_emu) and "Timed out" in status_text(status_messages(slack_emu)[0]),
                         15, message="timed out")
        cancels = [r for r in gemini_emu.requests if r["path"].endswith("/cancel")]
        assert len(cancels) == 1
    finally:
        await stop_bot(bot)


# 5: Cancel is the requester's only; it cancels the interaction and updates the status
async def test_cancel_by_requester_only(bot, slack_emu, gemini_emu, redis_url, prefix):
    gemini_emu.script_agent(queued_for=0.1, run_for=30)
    await slack_emu.slash_command("/research", "long question", user="U_ALICE")
    status = (await eventually(lambda: status_messages(slack_emu)))[0]
    await eventually(lambda: _started(redis_url, prefix), message="the job holds its agent's interaction")
    click = await slack_emu.click_button(slack_emu.bot_messages("C_GENERAL")[0], CANCEL_ACTION, user="U_BOB")
    assert click.status == 200
    await eventually(lambda: any(e["user"] == "U_BOB" and "Only <@U_ALICE>" in e["text"] for e in slack_emu.ephemerals))
    assert not [r for r in gemini_emu.requests if r["path"].endswith("/cancel")]
    await slack_emu.click_button(status_messages(slack_emu)[0], CANCEL_ACTION, user="U_ALICE")
    await eventually(lambda: "Cancelled" in status_text(status_messages(slack_emu)[0]), 10, message="cancelled")
    assert "Cancelled by <@U_ALICE>" in status_text(status_messages(slack_emu)[0])
    assert len([r for r in gemini_emu.requests if r["path"].endswith("/cancel")]) == 1
    assert not has_cancel(status_messages(slack_emu)[0])


# 5: usage, status listing, per-user cap — all ephemeral
async def test_usage_status_and_per_user_cap(bot, slack_emu, gemini_emu):
    usage = await slack_emu.slash_command("/research", "")
    assert usage.status == 200 and "Usage" in usage.body
    for _ in range(2):
        gemini_emu.script_agent(queued_for=0.1, run_for=30)
    await slack_emu.slash_command("/research", "first long one")
    await slack_emu.slash_command("/research", "second long one")
    third = await slack_emu.slash_command("/research", "third one")
    assert "already have 2 research jobs running" in third.body
    await eventually(lambda: len(status_messages(slack_emu)) == 2)
    listing = await slack_emu.slash_command("/research", "status")
    assert "first long one" in listing.body and "second long one" in listing.body
    other = await slack_emu.slash_command("/research", "bob's question", user="U_BOB")
    assert "already have" not in other.body  # the cap is per user
    assert not any("Deep Research" in m.text for m in slack_emu.bot_messages("C_GENERAL") if "third one" in m.text)


# 1: where the bot cannot post, it says so ephemerally and starts nothing
async def test_research_where_bot_cannot_post(settings_for, slack_emu, gemini_emu):
    slack_emu.scopes.discard("chat:write.public")
    bot = await start_bot(settings_for(), slack_emu)
    try:
        await slack_emu.slash_command("/research", "question", channel="C_RANDOM")
        await eventually(lambda: any("can't post in this channel" in e["text"] for e in slack_emu.ephemerals), 5)
        assert not any((r["body"] or {}).get("agent") for r in gemini_emu.requests if r["method"] == "POST")
    finally:
        await stop_bot(bot)


# 3: durable — SIGKILL the bot mid-research, start it again: polling resumes, report posted once.
#    Shared — two bot processes on one Redis: each job polled by one at a time, report posted once.
def _spawn_bot(settings, extra_env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env={**_spawn_env(settings), **(extra_env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_research_survives_sigkill_and_two_processes_post_once(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    first = settings_for(port=free_port())
    proc = _spawn_bot(first)
    procs = [proc]
    try:
        await _wait_healthy(first.port)
        slack_emu.app_url = f"http://127.0.0.1:{first.port}/slack/events"
        gemini_emu.script_agent(queued_for=0.2, run_for=3.0)
        gemini_emu.script_agent(queued_for=0.2, run_for=3.0)
        await slack_emu.slash_command("/research", "survive a crash")
        await slack_emu.slash_command("/research", "second job", user="U_BOB")
        await eventually(lambda: len(status_messages(slack_emu)) == 2, 10)
        await eventually(lambda: all("Researching" in status_text(m) for m in status_messages(slack_emu)), 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # two fresh processes share the one Redis
        for _ in range(2):
            s = settings_for(port=free_port())
            procs.append(_spawn_bot(s))
            await _wait_healthy(s.port)
        await eventually(lambda: all("Done" in status_text(m) for m in status_messages(slack_emu)), 20,
                         message="both jobs done after the crash")
        end_processes(procs)  # a graceful stop lets every step in flight finish: whatever they post has landed
        assert [p.returncode for p in procs[1:]] == [0, 0]
        jobs = await job_record(redis_url, prefix)
        for status in status_messages(slack_emu):
            job = next(j for j in jobs if j["status_ts"] == status.ts)
            expected = gemini_emu.interaction(job["interaction_id"])["output_text"]
            parts = report_texts(slack_emu, status)
            assert int(job["parts_posted"]) == len(parts), "every part posted exactly once"
            assert len(set(parts)) == len(parts)
            assert parts[0].split("\n")[0] in expected
    finally:
        end_processes(procs)


# 7: `slackbot worker` runs only the worker: a job started by a web process without one gets done
async def test_separate_worker_process_polls_jobs(settings_for, slack_emu, gemini_emu):
    web = await start_bot(settings_for(research_worker=False), slack_emu)
    worker_settings = settings_for(port=free_port())
    env = {"SLACKBOT_RESEARCH_WORKER": "true"}
    proc = None
    jobs = "slackbot_research_jobs_total"
    try:
        started, completed = await metric(web.url, jobs, status="started"), await metric(web.url, jobs, status="completed")
        gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
        await slack_emu.slash_command("/research", "worker question")
        await eventually(lambda: status_messages(slack_emu), 5)
        proc = subprocess.Popen([sys.executable, "-m", "slackbot", "worker"],
                                env={**_spawn_env(worker_settings), **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await eventually(lambda: "Done" in status_text(status_messages(slack_emu)[0]), 15, message="worker finished it")
        # the web process started the job and the worker process finished it: the web process polls nothing
        worker_url = f"http://127.0.0.1:{worker_settings.port}"
        await eventually(lambda: _counted(metric(worker_url, jobs, status="completed"), 1), 5, message="counted")
        assert await metric(web.url, jobs, status="started") - started == 1
        assert await metric(web.url, jobs, status="completed") == completed
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        await stop_bot(web)


async def _counted(value, wanted: float) -> bool:
    return await value == wanted


def _spawn_env(settings) -> dict:
    """A real bot process's environment (conftest.process_env) with research's test-sized timings."""
    return process_env(settings, SLACKBOT_RESEARCH_WORKER="true", SLACKBOT_RESEARCH_POLL_INITIAL="0.2",
                       SLACKBOT_RESEARCH_POLL_MAX="0.4", SLACKBOT_RESEARCH_STATUS_EVERY="0.3",
                       SLACKBOT_RESEARCH_LEASE_SECONDS="2")


# 9.3: nobody's text becomes Slack markup: the question and Gemini's progress line are shown as typed
HOSTILE = "Is this safe? <!channel> <!here> <@U_BOB> <https://evil.example/login|Slack login>"


async def test_status_message_escapes_question_and_progress(settings_for, slack_emu, gemini_emu):
    slack_emu.scopes.discard("canvases:write")  # the file's title is checked (the canvas's: test_research_rules)
    bot = await start_bot(settings_for(research_file_threshold=100), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=2.0, thoughts=[f"Reading a page that says {HOSTILE}"] * 3)
        await slack_emu.slash_command("/research", HOSTILE)

        def shows_progress():
            msgs = status_messages(slack_emu)
            return msgs and "Reading a page" in status_text(msgs[0]) and copy.deepcopy(msgs[0])  # as it was then
        running = await eventually(shows_progress, 10, message="progress line shown")
        listing = await slack_emu.slash_command("/research", "status")
        await eventually(lambda: "Done" in status_text(status_messages(slack_emu)[0]), 15, message="done")
        upload = (await eventually(lambda: [f for f in slack_emu.files if f["filename"].endswith(".md")], 10,
                                   message="report file"))[0]
        for text in (status_text(running), running.text, status_text(status_messages(slack_emu)[0]),
                     status_messages(slack_emu)[0].text, listing.body, upload["title"]):
            for markup in ("<!channel>", "<!here>", "<@U_BOB>", "<https://evil"):
                assert markup not in text, (markup, text)
        assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U_BOB&gt; &lt;https://evil.example/login|Slack login&gt;" \
            in status_text(running)
        assert "Reading a page that says Is this safe? &lt;!channel&gt;" in status_text(running)
        assert "&lt;!here&gt;" in running.text and "&lt;!channel&gt;" in listing.body
    finally:
        await stop_bot(bot)


# 9.5: a job whose record vanished (expired, or Redis lost it) leaves the schedule; nothing recreates it
@pytest.mark.cluster
async def test_vanished_job_leaves_the_schedule_and_is_never_recreated(bot, slack_emu, gemini_emu, redis_url, prefix,
                                                                       store):
    gemini_emu.script_agent(queued_for=0.1, run_for=30)
    await slack_emu.slash_command("/research", "a job that will vanish")
    [job] = await eventually(lambda: job_record(redis_url, prefix), message="job record")
    keys, client = store.keys.jobs, store.redis
    await eventually(lambda: client.zscore(keys.due(job["id"]), job["id"]), 5, message="scheduled")
    await client.delete(keys.job(job["id"]))
    await eventually(lambda: _none(client.zscore(keys.due(job["id"]), job["id"])), 10, message="unscheduled")
    assert not await client.exists(keys.job(job["id"]))


async def _none(awaitable) -> bool:
    return await awaitable is None


# 9.5: Cancel on a job that just finished does not put it back on the schedule; every key but the
#      schedule has a TTL once a job has run
async def test_cancel_after_finish_is_answered_and_never_reschedules(bot, slack_emu, gemini_emu, redis_url, prefix,
                                                                     store):
    gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
    await slack_emu.slash_command("/research", "quick one")
    status = (await eventually(lambda: status_messages(slack_emu), message="status"))[0]
    with_cancel = copy.deepcopy(status)  # the message as a slow client still shows it, Cancel and all
    await eventually(lambda: "Done" in status_text(status_messages(slack_emu)[0]), 10, message="done")
    click = await slack_emu.click_button(with_cancel, CANCEL_ACTION, user="U_ALICE")
    assert click.status == 200
    await eventually(lambda: any("already finished" in e["text"] for e in slack_emu.ephemerals), 5)
    [job] = await job_record(redis_url, prefix)
    assert job["status"] == "completed"
    assert await store.redis.zscore(store.keys.jobs.due(job["id"]), job["id"]) is None
    schedules = set(store.keys.jobs.all_due + store.keys.turns.all_due)
    no_ttl = [k for k in await store.prefix_keys() if await store.redis.ttl(k) == -1 and k not in schedules]
    assert not no_ttl
    assert not [r for r in gemini_emu.requests if r["path"].endswith("/cancel")]


# 9.9: Cancel on an orphaned status message (its record is gone) answers the clicker plainly
async def test_cancel_on_an_orphaned_status_message_is_answered(bot, slack_emu, gemini_emu, redis_url, prefix, store):
    gemini_emu.script_agent(queued_for=0.1, run_for=30)
    await slack_emu.slash_command("/research", "orphan me")
    status = (await eventually(lambda: status_messages(slack_emu), message="status"))[0]
    await eventually(lambda: job_record(redis_url, prefix), message="job record")
    await store.delete_prefix()  # Redis restarted without persistence: every key is gone
    click = await slack_emu.click_button(status, CANCEL_ACTION, user="U_ALICE")
    assert click.status == 200
    whisper = await eventually(lambda: [e for e in slack_emu.ephemerals if e["user"] == "U_ALICE"], 5,
                               message="ephemeral answer")
    assert "can't find this research" in whisper[0]["text"]


# 9.7: a signed /research replayed inside Slack's 5-minute window starts one job, not two
async def test_replayed_slash_command_starts_one_job(bot, slack_emu, gemini_emu, redis_url, prefix):
    gemini_emu.script_agent(queued_for=0.1, run_for=30)
    fields = {"token": slack_emu.verification_token, "team_id": slack_emu.team_id, "team_domain": "emulated",
              "channel_id": "C_GENERAL", "channel_name": "general", "user_id": "U_ALICE", "user_name": "alice",
              "command": "/research", "text": "replay me", "api_app_id": slack_emu.app_id,
              "is_enterprise_install": "false", "trigger_id": "13345224609.738474920.8088930838d88f008e0"}
    body, sent_at = urlencode(fields), int(time.time())
    first = await slack_emu.send_signed(body, "application/x-www-form-urlencoded", timestamp=sent_at)
    replay = await slack_emu.send_signed(body, "application/x-www-form-urlencoded", timestamp=sent_at)
    assert first.status == 200 and replay.status == 200
    assert replay.body == ""  # acked quietly: the requester already got their job
    # a job is recorded before its command is acked, so by now both would be in Redis
    assert len(await job_record(redis_url, prefix)) == 1
    await eventually(lambda: status_messages(slack_emu), message="status message")
    listing = await slack_emu.slash_command("/research", "status")
    assert listing.body.count("replay me") == 1
    assert len([r for r in gemini_emu.requests if r["method"] == "POST" and (r["body"] or {}).get("agent")]) == 1


# 9.5: `slackbot serve` and `slackbot worker` share Redis; SIGKILL serve while it holds a job's lease
#      (mid-report): the worker takes the job over after the lease and posts the report exactly once
async def test_worker_takes_over_after_serve_is_killed_holding_the_lease(settings_for, slack_emu, gemini_emu,
                                                                        redis_url, prefix):
    web_settings, worker_settings = settings_for(port=free_port()), settings_for(port=free_port())
    lease = {"SLACKBOT_RESEARCH_LEASE_SECONDS": "4"}
    web = _spawn_bot(web_settings, lease)
    worker = subprocess.Popen([sys.executable, "-m", "slackbot", "worker"], env={**_spawn_env(worker_settings), **lease},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _wait_healthy(web_settings.port)
        await _wait_healthy(worker_settings.port)
        worker.send_signal(signal.SIGSTOP)  # so the job is surely serve's when it dies
        slack_emu.app_url = f"http://127.0.0.1:{web_settings.port}/slack/events"
        gemini_emu.script_agent(queued_for=0.2, run_for=2.0)
        await slack_emu.slash_command("/research", "survive a kill")
        await eventually(lambda: status_messages(slack_emu), 10, message="status message")
        # serve's first report post is answered 429: it holds the lease (status "posting") while it waits
        slack_emu.fail_next("chat.postMessage", "ratelimited", retry_after=3)
        await eventually(lambda: slack_emu.ratelimited("chat.postMessage"), 15, message="serve is posting the report")
        [job] = await job_record(redis_url, prefix)
        assert job["status"] == "posting"
        web.send_signal(signal.SIGKILL)
        web.wait()
        worker.send_signal(signal.SIGCONT)
        status = (await eventually(lambda: [m for m in status_messages(slack_emu) if "Done" in status_text(m)], 30,
                                   message="the worker finished the report"))[0]
        [job] = await job_record(redis_url, prefix)
        expected = gemini_emu.interaction(job["interaction_id"])["output_text"]
        parts = report_texts(slack_emu, status)
        assert int(job["parts_posted"]) == len(parts) and len(set(parts)) == len(parts)
        assert parts[0].split("\n")[0] in expected
    finally:
        for p in (web, worker):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in (web, worker):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


# 9.5, why the worker posted nothing in the report: beside `serve` on one host with the same PORT, the
#      worker died at start-up with a traceback nobody saw. It now stops with one line naming PORT.
def test_worker_on_a_taken_port_stops_with_one_line_naming_it(settings_for):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = settings_for(port=taken.getsockname()[1])
        done = subprocess.run([sys.executable, "-m", "slackbot", "worker"], env=_spawn_env(settings),
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("slackbot: configuration error: PORT:") and "Traceback" not in done.stderr


# 9.5: a live worker held up by Slack (a Retry-After longer than the lease) keeps its lease, so nobody
#      (its own next claim included) posts the report a second time
async def test_step_outliving_its_lease_does_not_post_the_report_twice(settings_for, slack_emu, gemini_emu,
                                                                        redis_url, prefix):
    bot = await start_bot(settings_for(research_lease_seconds=1.5), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
        await slack_emu.slash_command("/research", "a long report")
        await eventually(lambda: status_messages(slack_emu), 10, message="status message")
        slack_emu.fail_next("chat.postMessage", "ratelimited", retry_after=4)
        status = (await eventually(lambda: [m for m in status_messages(slack_emu) if "Done" in status_text(m)], 30,
                                   message="done"))[0]
        [job] = await job_record(redis_url, prefix)
        parts = report_texts(slack_emu, status)
        assert slack_emu.ratelimited("chat.postMessage") == 1
        assert int(job["parts_posted"]) == len(parts) >= 2
        assert len(set(parts)) == len(parts), "every part posted exactly once"
    finally:
        await stop_bot(bot)


# 9.5: a job whose starter died before its agent started is not stuck "Starting" for ever: after the start
#      grace a worker ends it, says so on its status message (no Cancel left) and frees the user's slot
async def test_job_whose_starter_died_is_ended_by_a_worker(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    web_settings, worker_settings = settings_for(port=free_port()), settings_for(port=free_port())
    quick = {"SLACKBOT_GEMINI_TIMEOUT_SECONDS": "1", "SLACKBOT_GEMINI_RETRY_ATTEMPTS": "2",
             "SLACKBOT_GEMINI_CONNECT_RETRIES": "0", "SLACKBOT_RESEARCH_LEASE_SECONDS": "2"}  # start grace: 4 s
    web = _spawn_bot(web_settings, quick)
    worker = subprocess.Popen([sys.executable, "-m", "slackbot", "worker"], env={**_spawn_env(worker_settings), **quick},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _wait_healthy(web_settings.port)
        await _wait_healthy(worker_settings.port)
        slack_emu.app_url = f"http://127.0.0.1:{web_settings.port}/slack/events"
        # Gemini asks the first create to come back in 20 s: serve is inside the start when it dies
        gemini_emu.script_agent(fail_status=503, fail_times=1, retry_after=20, run_for=1)
        await slack_emu.slash_command("/research", "started by a doomed process")
        await eventually(lambda: status_messages(slack_emu), 10, message="status message")
        await eventually(lambda: any((r["body"] or {}).get("agent") for r in gemini_emu.requests), 10)
        web.send_signal(signal.SIGKILL)
        web.wait()
        ended = await eventually(lambda: [m for m in status_messages(slack_emu) if "restarted" in status_text(m)], 20,
                                 message="status message says the research never began")
        assert not has_cancel(ended[0]) and "/research" in status_text(ended[0])
        [job] = await job_record(redis_url, prefix)
        assert job["status"] == "not_started"
        store = await open_store(redis_url, prefix)
        try:
            assert not await store.redis.sismember(store.keys.jobs.slots(job["team"], "U_ALICE"), job["id"])
            assert await store.redis.zscore(store.keys.jobs.due(job["id"]), job["id"]) is None
        finally:
            await store.close()
    finally:
        for p in (web, worker):
            if p.poll() is None:
                p.terminate()
        for p in (web, worker):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


# issue 25.8: Slack breaking on the last status edit still ends with the outcome shown, no Cancel button
async def test_final_status_edit_is_retried_until_slack_takes_it(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    bot = await start_bot(settings_for(slack_retry_attempts=2, research_status_every=60), slack_emu)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
        await slack_emu.slash_command("/research", "quick one")
        status = (await eventually(lambda: status_messages(slack_emu), message="status"))[0]
        # Slack breaks for every edit from here: more tries than one worker step makes
        slack_emu.fail_next("chat.update", "service_unavailable", status=503, times=8)
        await eventually(lambda: report_texts(slack_emu, status), 10, message="the report")
        shown = await eventually(lambda: (m := status_messages(slack_emu)[0]) and "Done" in status_text(m) and m,
                                 15, message="the final status")
        assert not has_cancel(shown)
        assert [c.status for c in slack_emu.calls_to("chat.update")][:8] == [503] * 8
        store = await open_store(redis_url, prefix)
        try:
            [job] = await job_record(redis_url, prefix)
            await eventually(lambda: _none(store.redis.zscore(store.keys.jobs.due(job["id"]), job["id"])), 5,
                             message="off the schedule once shown")
        finally:
            await store.close()
    finally:
        await stop_bot(bot)
