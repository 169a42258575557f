"""Issue 24: operators stay in control. Access policy, spend budgets, the audit trail, and deleting in
Slack deleting at Gemini and in Redis; end to end against the emulators and a real Redis."""

from __future__ import annotations

import json

from conftest import bot_url, eventually, idle, metric, open_store, start_bot, stop_bot
from test_chat import answered, head

from slackbot.governance.forget import deleted_message
from slackbot.governance.policy import NO_CONNECT, NO_DMS, NO_GUESTS, NOT_HERE, NOT_YOU, Rules, Who, refusal
from slackbot.governance.spend import SPENT, over
from slackbot.config import Settings

MENTION = "<@UBOT>"


async def redis_dump(redis_url, prefix) -> str:
    """Everything Redis holds under the prefix, as one string (keys and values of every type)."""
    store = await open_store(redis_url, prefix)
    try:
        out = []
        for key in await store.prefix_keys():
            kind = await store.redis.type(key)
            if kind == "string":
                value = await store.redis.get(key)
            elif kind == "hash":
                value = await store.redis.hgetall(key)
            elif kind == "zset":
                value = await store.redis.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await store.redis.smembers(key)
            else:
                value = await store.redis.lrange(key, 0, -1)
            out.append(f"{key}={value!r}")
        return "\n".join(out)
    finally:
        await store.close()


async def gov_bot(settings_for, slack_emu, **overrides):
    return await start_bot(settings_for(**overrides), slack_emu)


# ------------------------------------------------------------------ 4 + 7: deleting in Slack deletes at Gemini
async def test_deleting_a_reply_deletes_its_interactions_answers_and_cuts_the_chain(
        settings_for, slack_emu, gemini_emu, redis_url, prefix):
    bot = await gov_bot(settings_for, slack_emu)
    try:
        gemini_emu.script(text="Falcon launches in May.", match="Project Falcon")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} when does Project Falcon launch?")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        first = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root), message="head")
        gemini_emu.script(text="The Heron budget is 3M.", match="Heron budget")
        reply = (await slack_emu.user_message("C_GENERAL", "and the secret Heron budget?", thread_ts=root)).message
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 2)
        second = await eventually(lambda: _moved(redis_url, prefix, root, first), message="head moved")
        assert gemini_emu.contains_text("secret Heron budget")

        await slack_emu.user_deletes("C_GENERAL", reply.ts)

        await eventually(lambda: second in [d["id"] for d in gemini_emu.deleted], message="deleted at Gemini")
        await eventually(lambda: len(slack_emu.bot_messages("C_GENERAL", root)) == 1, message="answer deleted")
        assert [m.visible_text for m in slack_emu.bot_messages("C_GENERAL", root)] == ["Falcon launches in May."]
        assert second not in gemini_emu.stored_ids() and first in gemini_emu.stored_ids()
        assert not gemini_emu.contains_text("Heron") and gemini_emu.contains_text("Project Falcon")
        assert await head(redis_url, prefix, "C_GENERAL", root) is None  # the chain is cut there
        assert "Heron" not in await redis_dump(redis_url, prefix)

        # the next message starts fresh, rebuilt from what is left in Slack
        gemini_emu.script(text="Still May.")
        await slack_emu.user_message("C_GENERAL", "is it still on?", thread_ts=root)
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 2)
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        last = gemini_emu.model_creates()[-1]
        assert "previous_interaction_id" not in last
        assert "Project Falcon" in json.dumps(last["input"]) and "Heron" not in json.dumps(last["input"])
    finally:
        await stop_bot(bot)


async def _moved(redis_url, prefix, root, first):
    now = await head(redis_url, prefix, "C_GENERAL", root)
    return now if now and now != first else None


async def test_deleting_the_thread_parent_forgets_the_whole_thread(settings_for, slack_emu, gemini_emu,
                                                                 redis_url, prefix):
    bot = await gov_bot(settings_for, slack_emu)
    try:
        gemini_emu.script(text="Osprey answer one.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} tell me about Osprey merger")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        gemini_emu.script(text="Osprey answer two.")
        await slack_emu.user_message("C_GENERAL", "more on the Osprey merger terms", thread_ts=root)
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 2)
        await eventually(lambda: len(gemini_emu.stored_ids()) == 2, message="two interactions")

        [tomb] = await slack_emu.user_deletes("C_GENERAL", root)  # replies remain: a tombstone
        assert tomb.payload["event"]["message"]["subtype"] == "tombstone"

        await eventually(lambda: gemini_emu.stored_ids() == [], message="every interaction deleted")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="answers deleted")
        assert not gemini_emu.contains_text("Osprey")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        assert "Osprey" not in await redis_dump(redis_url, prefix)
        assert await head(redis_url, prefix, "C_GENERAL", root) is None
    finally:
        await stop_bot(bot)


async def test_a_deletion_during_an_answer_cannot_bring_it_back(settings_for, slack_emu, gemini_emu,
                                                               redis_url, prefix):
    """The message is deleted while its answer streams: the head never moves to it and what the
    turn made is deleted too (a running turn, a retry or a replica cannot resurrect it)."""
    bot = await gov_bot(settings_for, slack_emu)
    try:
        gemini_emu.script(text="Kestrel " * 60, chunk_chars=8, chunk_delay=0.03)
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Kestrel payroll numbers?")).message.ts
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root), message="answer started")
        await slack_emu.user_deletes("C_GENERAL", root)
        await eventually(lambda: idle(bot_url(slack_emu)), 15, message="idle")
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Kestrel payroll"),
                         message="deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="answer deleted")
        assert await head(redis_url, prefix, "C_GENERAL", root) is None
        assert "Kestrel" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 5: forget on request
async def test_a_forget_mention_forgets_the_thread_for_the_asker_not_for_others(settings_for, slack_emu,
                                                                                gemini_emu, redis_url, prefix):
    bot = await gov_bot(settings_for, slack_emu)
    try:
        gemini_emu.script(text="Plover answer.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Plover roadmap?")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        await slack_emu.user_message("C_GENERAL", f"{MENTION} forget", thread_ts=root, user="U_BOB")
        await eventually(lambda: any(e["user"] == "U_BOB" for e in slack_emu.ephemerals), message="refusal")
        assert gemini_emu.stored_ids() != []
        await slack_emu.user_message("C_GENERAL", f"{MENTION} forget", thread_ts=root)
        line = await eventually(lambda: [e["text"] for e in slack_emu.ephemerals if e["user"] == "U_ALICE"],
                                message="forgotten line")
        assert line == ["Forgotten: 1 answered message of this conversation, deleted at Gemini and here."]
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Plover"),
                         message="deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="answer deleted")
        assert "Plover" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 1: access policy
def test_policy_rules():
    s = Settings(deny_channels="C_BAD", allow_users="U_A", allow_groups="S_ONCALL", allow_dms=False,
                 allow_connect=False)
    rules = Rules.of(s)
    who = Who("T1", "U_A", "T1", "C_OK", False)
    assert refusal(rules, who, set()) == ""
    assert refusal(rules, Who("T1", "U_A", "T1", "C_BAD", False), set()) == NOT_HERE
    assert refusal(rules, Who("T1", "U_B", "T1", "C_OK", False), set()) == NOT_YOU
    assert refusal(rules, Who("T1", "U_B", "T1", "C_OK", False), {"S_ONCALL"}) == ""
    assert refusal(rules, Who("T1", "U_A", "T1", "D1", True), set()) == NO_DMS
    assert refusal(rules, Who("T1", "U_A", "T_PARTNER", "C_OK", False), set()) == NO_CONNECT
    assert refusal(Rules.of(Settings(deny_groups="S_X")), who, {"S_X"}) == NOT_YOU


async def test_outside_the_policy_nothing_in_the_thread_and_one_line_once(settings_for, slack_emu, gemini_emu):
    slack_emu.directory.add_usergroup("S_PILOT", "pilot", "Pilot", ["U_ALICE"])
    bot = await gov_bot(settings_for, slack_emu, allow_groups="S_PILOT")
    try:
        gemini_emu.script(text="Hello Alice.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} hi")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        for n in range(2):
            await slack_emu.user_message("C_GENERAL", f"{MENTION} hi from bob {n}", user="U_BOB")
        url = bot_url(slack_emu)
        await eventually(lambda: _refused(url, 2), message="both refused")
        # a sentinel: Bob's group membership changes (Slack sends subteam_members_changed); then he is answered
        await slack_emu.directory.set_usergroup_users("S_PILOT", ["U_ALICE", "U_BOB"])
        gemini_emu.script(text="Hello Bob.")
        bob = (await slack_emu.user_message("C_GENERAL", f"{MENTION} now?", user="U_BOB")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", bob, 1)
        told = [e["text"] for e in slack_emu.ephemerals if e["user"] == "U_BOB"]
        assert told == [NOT_YOU]
        assert len(gemini_emu.model_creates()) == 2
        assert slack_emu.bot_messages("C_GENERAL") and all(m.thread_ts in (root, bob)
                                                           for m in slack_emu.bot_messages("C_GENERAL"))
    finally:
        await stop_bot(bot)


async def _refused(url, n):
    return await metric(url, "slackbot_events_total", kind="turn", outcome="refused") >= n


# ------------------------------------------------------------------ 2: spend budgets
def test_over_is_per_cap():
    assert over([10, 0, 0], [10, 0, 0]) and not over([9, 100, 100], [10, 0, 0]) and over([0, 0, 5], [0, 0, 5])


async def test_a_spent_budget_refuses_the_next_turn_with_one_plain_line(settings_for, slack_emu, gemini_emu,
                                                                        redis_url, prefix):
    bot = await gov_bot(settings_for, slack_emu, daily_tokens_per_user=1)
    try:
        gemini_emu.script(text="A whole answer, never cut.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} first")).message.ts
        assert (await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)) == ["A whole answer, never cut."]
        store = await open_store(redis_url, prefix)
        try:
            from slackbot.governance.spend import day
            spent = await eventually(lambda: _spent(store, day()), message="charged")
        finally:
            await store.close()
        assert spent > 0
        await slack_emu.user_message("C_GENERAL", f"{MENTION} second")
        await eventually(lambda: [e["text"] for e in slack_emu.ephemerals] == [SPENT], message="spent line")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} bob asks", user="U_BOB")  # Bob's budget is his
        await eventually(lambda: len(gemini_emu.model_creates()) == 2, message="bob answered")
    finally:
        await stop_bot(bot)


async def _spent(store, day):
    return (await store.governance.spent(["T0001:u:U_ALICE"], day))[0]


# ------------------------------------------------------------------ 3: audit trail
async def test_one_audit_line_per_turn_in_the_sink_without_the_text(settings_for, slack_emu, gemini_emu, tmp_path):
    sink = tmp_path / "audit.jsonl"
    bot = await gov_bot(settings_for, slack_emu, audit_file=str(sink))
    try:
        gemini_emu.script(text="Audited answer.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} secret Ibis question")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        lines = await eventually(lambda: sink.exists() and sink.read_text().splitlines(), message="audit line")
        [line] = [json.loads(x) for x in lines]
        assert (line["audit"], line["user"], line["channel"], line["outcome"]) == \
            ("turn", "U_ALICE", "C_GENERAL", "completed")
        assert line["interactions"] == gemini_emu.stored_ids() and line["model"] == "gemini-3-flash-preview"
        assert line["tokens_output"] > 0 and "Ibis" not in sink.read_text()
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ pure: which events are deletions
def test_deleted_message_reads_deletes_and_tombstones():
    assert deleted_message({"type": "message", "subtype": "message_deleted", "channel": "C1", "deleted_ts": "2.0",
                            "previous_message": {"thread_ts": "1.0"}}).thread == "1.0"
    whole = deleted_message({"type": "message", "subtype": "message_deleted", "channel": "C1", "deleted_ts": "1.0",
                             "previous_message": {}})
    assert whole.whole_thread and whole.thread == "1.0"
    tomb = deleted_message({"type": "message", "subtype": "message_changed", "channel": "C1",
                            "message": {"subtype": "tombstone", "ts": "1.0"}})
    assert tomb.whole_thread
    dm = deleted_message({"type": "message", "subtype": "message_deleted", "channel": "D1", "channel_type": "im",
                          "deleted_ts": "3.0", "previous_message": {}})
    assert (dm.thread, dm.whole_thread) == ("dm", False)
    assert deleted_message({"type": "message", "channel": "C1", "text": "hi"}) is None


# ------------------------------------------------------------------ 1 + 2 + 3: /research obeys the policy and budgets
async def test_research_obeys_the_policy_is_reserved_then_settled_and_audited(settings_for, slack_emu, gemini_emu,
                                                                             redis_url, prefix, tmp_path):
    from slackbot.governance.spend import day

    sink = tmp_path / "audit.jsonl"
    bot = await gov_bot(settings_for, slack_emu, deny_channels="C_RANDOM", research_estimate_tokens=1000000,
                        audit_file=str(sink))
    store = await open_store(redis_url, prefix)
    try:
        refused = await slack_emu.slash_command("/research", "anything", channel="C_RANDOM")
        assert refused.body == "I'm not enabled in this conversation, so I won't answer here."
        gemini_emu.script_agent(queued_for=0.1, run_for=0.5)
        await slack_emu.slash_command("/research", "Shrike market sizing")
        assert await _spent(store, day()) == 1000000  # reserved before it starts
        line = json.loads((await eventually(lambda: sink.exists() and sink.read_text(), message="audit"))
                          .splitlines()[0])
        assert (line["audit"], line["outcome"], line["user"]) == ("research", "completed", "U_ALICE")
        assert "Shrike" not in sink.read_text()
        used = await _spent(store, day())
        assert used == line["tokens_total"] and 0 < used < 1000000  # settled to what it used
        assert len([r for r in gemini_emu.requests if (r["body"] or {}).get("agent")]) == 1
    finally:
        await store.close()
        await stop_bot(bot)


async def test_research_that_never_runs_gives_its_reservation_back(settings_for, slack_emu, gemini_emu,
                                                                    redis_url, prefix):
    """The estimate charged at admission comes back when the person is at the job cap or Gemini refuses
    to start the agent: only research that ran is paid for."""
    from slackbot.governance.spend import day
    from slackbot.research.status import CANCEL_ACTION
    from test_research import status_messages, status_text

    bot = await gov_bot(settings_for, slack_emu, research_estimate_tokens=1000, research_max_per_user=1)
    store = await open_store(redis_url, prefix)
    try:
        gemini_emu.script_agent(queued_for=30, run_for=30)
        await slack_emu.slash_command("/research", "--now Skua pricing")
        running = await eventually(lambda: status_messages(slack_emu), message="the first job's status")
        capped = await slack_emu.slash_command("/research", "--now Skua margins")
        assert capped.body.startswith("You already have 1 research jobs running")
        assert await _spent(store, day()) == 1000  # the capped one was given back
        await slack_emu.click_button(running[0], CANCEL_ACTION, user="U_ALICE")
        await eventually(lambda: "Cancelled" in status_text(status_messages(slack_emu)[0]), message="cancelled")

        gemini_emu.script_agent(fail_status=400)
        await slack_emu.slash_command("/research", "--now Skua suppliers")
        await eventually(lambda: any("could not start" in status_text(m) for m in status_messages(slack_emu)),
                         message="Gemini refused the agent")
        await eventually(lambda: _spent_is(store, 1000), message="the refused job's estimate given back")
    finally:
        await store.close()
        await stop_bot(bot)


async def _spent_is(store, tokens: int) -> bool:
    from slackbot.governance.spend import day

    return await _spent(store, day()) == tokens


async def test_message_shortcuts_obey_the_policy_before_reading_anything(settings_for, slack_emu, gemini_emu):
    bot = await gov_bot(settings_for, slack_emu, deny_users="U_ALICE")
    try:
        root = (await slack_emu.user_message("C_GENERAL", "Where do we stand?", user="U_BOB", deliver=False)).message
        reads = len(slack_emu.calls_to("conversations.replies"))
        for shortcut in ("summarize_thread", "ask_gemini"):
            await slack_emu.agents.message_shortcut(root, shortcut, user="U_ALICE")
        await eventually(lambda: len([e for e in slack_emu.ephemerals if e["user"] == "U_ALICE"]) == 2, 10,
                         message="one refusal line per shortcut")
        # a later click by someone the policy allows is answered: the refused ones read and asked nothing
        await slack_emu.agents.message_shortcut(root, "ask_gemini", user="U_BOB")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root.ts), 10, message="Bob's answer")
        assert len(slack_emu.calls_to("conversations.replies")) == reads
        assert [m.text for m in slack_emu.bot_messages("C_GENERAL", root.ts)] == \
            ["Reply 1 to: Help me with this Slack message: "], "only Bob's click reached Gemini"
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 5: the shortcut and /gemini forget; 2: /gemini usage
async def test_forget_shortcut_and_gemini_forget_in_a_dm_and_usage(settings_for, slack_emu, gemini_emu, redis_url,
                                                                  prefix):
    bot = await gov_bot(settings_for, slack_emu, admins="U_CAROL")
    try:
        gemini_emu.script(text="Grebe answer.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Grebe pricing?")).message
        await answered(slack_emu, gemini_emu, "C_GENERAL", root.ts, 1)
        await slack_emu.agents.message_shortcut(root, "forget_thread", user="U_CAROL")  # an admin
        await eventually(lambda: [e["text"] for e in slack_emu.ephemerals if e["user"] == "U_CAROL"] ==
                         ["Forgotten: 1 answered message of this conversation, deleted at Gemini and here."],
                         message="forgotten line")
        await eventually(lambda: not gemini_emu.contains_text("Grebe"), message="deleted at Gemini")

        gemini_emu.script(text="Auk answer.")
        await slack_emu.user_message("D_ALICE", "Auk secrets?")
        await eventually(lambda: slack_emu.bot_messages("D_ALICE"), message="dm answer")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        usage = await slack_emu.slash_command("/gemini", "usage", channel="D_ALICE")
        assert usage.body.startswith("*Your Gemini use today:* ") and "top users" not in usage.body
        admin = await slack_emu.slash_command("/gemini", "usage", user="U_CAROL")
        assert "*This week's top users:* <@U_ALICE>" in admin.body and "<#C_GENERAL>" in admin.body
        here = await slack_emu.slash_command("/gemini", "forget")
        assert "direct message" in here.body
        forgot = await slack_emu.slash_command("/gemini", "forget", channel="D_ALICE")
        assert forgot.body == "Forgotten: 1 answered message of this conversation, deleted at Gemini and here."
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Auk"),
                         message="dm deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("D_ALICE") == [], message="dm answer deleted")
        assert "Auk" not in await redis_dump(redis_url, prefix) and "Grebe" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 6: retention
async def test_retention_forgets_old_threads_at_gemini_and_in_redis_once(settings_for, slack_emu, gemini_emu,
                                                                        redis_url, prefix):
    bot = await gov_bot(settings_for, slack_emu, retention_days=2 / 86400, retention_tick_seconds=0.2)
    try:
        gemini_emu.script(text="Curlew answer.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Curlew figures?")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        first = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root), message="head")
        assert first in gemini_emu.stored_ids()
        await eventually(lambda: gemini_emu.stored_ids() == [], 10, message="retention at Gemini")
        await eventually(lambda: _no_head(redis_url, prefix, root), message="chain gone")
        assert not gemini_emu.contains_text("Curlew") and "Curlew" not in await redis_dump(redis_url, prefix)
        assert [d["id"] for d in gemini_emu.deleted] == [first]  # once
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        assert slack_emu.bot_messages("C_GENERAL", root)  # retention keeps Slack's copy: it is the workspace's
        assert not slack_emu.calls_to("chat.delete")
    finally:
        await stop_bot(bot)


async def _no_head(redis_url, prefix, root):
    return await head(redis_url, prefix, "C_GENERAL", root) is None


async def test_guests_off_refuses_guests_once_and_dms_off_refuses_dms(settings_for, slack_emu, gemini_emu):
    slack_emu.add_user("U_GUEST", "gus", "Gus Guest", guest="multi")
    slack_emu.channels["C_GENERAL"].members.add("U_GUEST")
    bot = await gov_bot(settings_for, slack_emu, allow_guests=False, allow_dms=False)
    try:
        for n in range(2):
            await slack_emu.user_message("C_GENERAL", f"{MENTION} guest question {n}", user="U_GUEST")
        await eventually(lambda: _refused(bot_url(slack_emu), 2), message="guest refused twice")
        await slack_emu.user_message("D_ALICE", "a DM")
        await eventually(lambda: _refused(bot_url(slack_emu), 3), message="dm refused")
        gemini_emu.script(text="Members are answered.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} member question")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        assert [(e["user"], e["text"]) for e in slack_emu.ephemerals] == [("U_GUEST", NO_GUESTS), ("U_ALICE", NO_DMS)]
        assert len(gemini_emu.model_creates()) == 1
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 4: durable deletes
async def test_deletes_gemini_refused_are_finished_by_another_replica(settings_for, slack_emu, gemini_emu,
                                                                     redis_url, prefix):
    """Gemini is down when a thread is forgotten and the replica that forgot it stops: the deletes are
    owed in Redis, and another replica's governance worker carries them out once Gemini is back."""
    quick = {"delete_retry_seconds": 1.0, "retention_tick_seconds": 0.2, "retention_deletes_per_second": 200.0}
    first = await gov_bot(settings_for, slack_emu, **quick)
    try:
        gemini_emu.script(text="Plover answer.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Plover acquisition price?")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        [interaction] = await eventually(lambda: gemini_emu.stored_ids(), message="stored")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        gemini_emu.deletes_down = True
        await slack_emu.user_deletes("C_GENERAL", root)
        await eventually(lambda: gemini_emu.deletes_refused >= 2, 15, message="the deletes were tried and refused")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="answer deleted in Slack")
        assert await head(redis_url, prefix, "C_GENERAL", root) is None  # Redis forgot at once
    finally:
        await stop_bot(first)
    assert gemini_emu.stored_ids() == [interaction]  # still at Gemini: owed
    assert "purge" in await redis_dump(redis_url, prefix)

    gemini_emu.deletes_down = False
    second = await gov_bot(settings_for, slack_emu, **quick)
    try:
        await eventually(lambda: gemini_emu.stored_ids() == [], 15, message="deleted by the other replica")
        assert not gemini_emu.contains_text("Plover")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed any more")
        assert "Plover" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(second)


async def _nothing_owed(redis_url, prefix) -> bool:
    """No purge hash and no member on the deletion schedule."""
    store = await open_store(redis_url, prefix)
    try:
        keys = await store.prefix_keys()
        owed = [k for k in keys if ":purge:" in k and "due" not in k]
        scheduled = [m for shard in store.keys.governance.purge_shards for m in await store.redis.zrange(shard, 0, -1)]
        return not owed and not scheduled
    finally:
        await store.close()


async def test_forgetting_a_research_thread_deletes_the_plan_the_research_and_the_report(
        settings_for, slack_emu, gemini_emu, redis_url, prefix):
    """A report's thread is mapped like an answered message: "Forget this thread" deletes every
    interaction of the job (its plan too) at Gemini, the report and status messages in Slack, the
    follow-up's interaction, and the job's text in Redis."""
    from test_research import status_messages, status_text
    from test_research_plan import START_ACTION, plan_shown

    bot = await gov_bot(settings_for, slack_emu, research_planning=True)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=["Survey Petrel suppliers"])
        gemini_emu.script_agent(queued_for=0.1, run_for=0.2, report="Petrel report: three suppliers.")
        await slack_emu.slash_command("/research", "Who supplies Petrel widgets?")
        shown = await plan_shown(slack_emu)
        await slack_emu.click_button(shown, START_ACTION, user="U_ALICE")
        await eventually(lambda: "Done" in status_text(status_messages(slack_emu)[0]), 15, message="report")
        status = status_messages(slack_emu)[0]
        await eventually(lambda: len(slack_emu.bot_messages("C_GENERAL", status.ts)) >= 2, message="report posted")
        gemini_emu.script(text="Petrel follow-up answer.")
        await slack_emu.user_message("C_GENERAL", "which Petrel supplier is cheapest?", thread_ts=status.ts)
        await eventually(lambda: any("follow-up" in m.visible_text for m in
                                     slack_emu.bot_messages("C_GENERAL", status.ts)), message="follow-up")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        assert len(gemini_emu.stored_ids()) == 3  # plan, research, follow-up

        await slack_emu.agents.message_shortcut(status, "forget_thread", user="U_ALICE")
        await eventually(lambda: any(e["text"].startswith("Forgotten: 2 answered messages") for e in slack_emu.ephemerals),
                         message="forgotten line")
        await eventually(lambda: gemini_emu.stored_ids() == [], 15, message="all three deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", status.ts) == [], message="report deleted")
        assert not [f for f in slack_emu.files if f["thread_ts"] == status.ts]  # its charts too
        assert not gemini_emu.contains_text("Petrel")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        assert "Petrel" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 6: retention counts from the newest answer
async def test_retention_waits_for_a_thread_answered_again(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    """A thread answered again before its retention ran is kept until retention after its newest answer:
    both interactions are deleted then, together, and the schedule keeps no entry for it."""
    keep = 3.0
    bot = await gov_bot(settings_for, slack_emu, retention_days=keep / 86400, retention_tick_seconds=0.2)
    try:
        gemini_emu.script(text="Shag answer one.")
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Shag budget?")).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 1)
        gemini_emu.script(text="Shag answer two.")
        second = (await slack_emu.user_message("C_GENERAL", "and the Shag timeline?", thread_ts=root)).message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root, 2)
        await eventually(lambda: len(gemini_emu.deleted) == 2, 15, message="both deleted by retention")
        assert min(d["time"] for d in gemini_emu.deleted) >= float(second) + keep
        assert gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Shag")
        assert "Shag" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


async def test_retention_leaves_the_schedule_entry_of_a_thread_that_moved_after_the_claim(redis_url, prefix):
    """Retention takes a thread off its schedule only if no turn re-scheduled it since the claim."""
    store = await open_store(redis_url, prefix)
    try:
        gov = store.governance
        for thread in ("1.0", "2.0"):
            await gov.retain("T1", "C1", thread, 0)
        due = await eventually(lambda: _both_due(gov), message="both due")
        await gov.retain("T1", "C1", "1.0", 3600)  # answered again while retention held it
        for shard, tag, claimed in due:
            await gov.retention_settled(shard, tag, claimed)
        left = [m for shard in store.keys.governance.retention_shards for m in await store.redis.zrange(shard, 0, -1)]
        assert left == ["T1:C1:1.0"]
    finally:
        await store.close()


async def _both_due(gov):
    due = await gov.due_for_retention(30, 10)
    return due if len(due) == 2 else None


async def test_deleting_a_message_whose_answer_was_stopped_deletes_what_it_made(settings_for, slack_emu, gemini_emu,
                                                                                redis_url, prefix):
    """A stopped (or failed) answer leaves the chain as it was, but is still mapped: deleting its message
    deletes its interaction at Gemini and its partial answer in Slack."""
    bot = await gov_bot(settings_for, slack_emu)
    try:
        gemini_emu.script(match="Gannet", text=("Gannet figures go on. " * 4 + "\n\n") * 50, chunk_chars=10,
                          chunk_delay=0.1)
        root = (await slack_emu.user_message("C_GENERAL", f"{MENTION} Gannet salary bands?")).message.ts
        ts = await eventually(lambda: [c for c in slack_emu.calls_to("chat.startStream") if c.ok] and
                              slack_emu.bot_messages("C_GENERAL", root)[0].ts, message="answer streaming")
        slack_emu.user_stops_stream("C_GENERAL", ts, "U_ALICE")
        await eventually(lambda: idle(bot_url(slack_emu)), 15, message="idle")
        assert await head(redis_url, prefix, "C_GENERAL", root) is None  # a stopped answer moves no head
        assert gemini_emu.contains_text("Gannet salary bands") and slack_emu.bot_messages("C_GENERAL", root)

        await slack_emu.user_deletes("C_GENERAL", root)
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Gannet"),
                         message="deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="partial answer deleted")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        assert "Gannet" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


async def test_forgetting_a_thread_researched_in_deletes_the_research_too(settings_for, slack_emu, gemini_emu,
                                                                          redis_url, prefix):
    """Research asked for in a people's thread is mapped in that thread: `@bot forget` there deletes the chat
    answer's and the research's interactions at Gemini and the bot's messages (status, report) in Slack."""
    from test_research_thread import done, people_thread

    slack_emu.set_rate_limit("conversations.replies", 600, 10)
    bot = await gov_bot(settings_for, slack_emu, replies_budget_per_minute=600)
    try:
        root = await people_thread(slack_emu)
        gemini_emu.script(text="Acme sells Fulmar widgets.")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} what does Acme sell?", thread_ts=root)
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root), message="the chat answer")
        gemini_emu.script_agent(queued_for=0.1, run_for=0.3, report="Fulmar report: Globex is cheaper.")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} research this: Fulmar costs over 3 years?",
                                     thread_ts=root)
        await eventually(lambda: done(slack_emu, root), 15, message="the report in the thread")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        assert len(gemini_emu.stored_ids()) == 2

        await slack_emu.user_message("C_GENERAL", f"{MENTION} forget", thread_ts=root)
        await eventually(lambda: gemini_emu.stored_ids() == [], 15, message="both deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", root) == [], message="the bot's messages gone")
        assert not gemini_emu.contains_text("Fulmar")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        assert "Fulmar" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)


async def test_forgetting_a_thread_while_its_research_runs_cancels_it_and_keeps_nothing(settings_for, slack_emu,
                                                                                       gemini_emu, redis_url, prefix):
    """Forgotten while the agent runs: the job is cancelled at Gemini (no report is posted), its interaction is
    deleted, its status message goes, and its text goes from Redis."""
    from test_research import job_record, status_messages

    bot = await gov_bot(settings_for, slack_emu, admins="U_CAROL")
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=30, report="Razorbill report.")
        await slack_emu.slash_command("/research", "--now Razorbill supply chain?")
        status = await eventually(lambda: status_messages(slack_emu) and status_messages(slack_emu)[0],
                                  message="the status message")
        [research] = await eventually(lambda: gemini_emu.stored_ids(), message="the agent running")
        await slack_emu.agents.message_shortcut(status, "forget_thread", user="U_CAROL")
        await eventually(lambda: any(e["user"] == "U_CAROL" and e["text"].startswith("Forgotten: 1")
                                     for e in slack_emu.ephemerals), message="told")
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Razorbill"),
                         message="nothing at Gemini")
        assert gemini_emu.interaction(research)["status"] == "cancelled"
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", status.ts) == [], message="nothing in Slack")
        await eventually(lambda: _finished(redis_url, prefix), message="the job ended")
        await eventually(lambda: idle(bot_url(slack_emu)), message="idle")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        [job] = await job_record(redis_url, prefix)
        assert job["question"] == "(forgotten)" and job["status"] == "cancelled"
        assert "Razorbill" not in await redis_dump(redis_url, prefix)
        assert not [m for m in slack_emu.bot_messages("C_GENERAL") if "Razorbill" in m.text]
    finally:
        await stop_bot(bot)


async def _finished(redis_url, prefix) -> bool:
    from test_research import job_record

    jobs = await job_record(redis_url, prefix)
    return bool(jobs) and float(jobs[0].get("finished") or 0) > 0 and jobs[0].get("final_edit_pending") == "0"


async def test_forgetting_a_thread_whose_plan_waits_ends_the_job_at_once(settings_for, slack_emu, gemini_emu,
                                                                         redis_url, prefix):
    """A plan waiting for Start is forgotten: the plan's interaction is deleted and the job ends now, not at
    the plan timeout."""
    from test_research import job_record
    from test_research_plan import plan_shown

    bot = await gov_bot(settings_for, slack_emu, admins="U_CAROL", research_planning=True,
                        research_plan_timeout_minutes=600)
    try:
        gemini_emu.script_agent(queued_for=0.1, run_for=0.2, plan_steps=["Survey Murrelet suppliers"])
        await slack_emu.slash_command("/research", "Murrelet sourcing?")
        shown = await plan_shown(slack_emu)
        await slack_emu.agents.message_shortcut(shown, "forget_thread", user="U_CAROL")
        await eventually(lambda: _finished(redis_url, prefix), message="the job ended at once")
        await eventually(lambda: gemini_emu.stored_ids() == [] and not gemini_emu.contains_text("Murrelet"),
                         message="the plan deleted at Gemini")
        await eventually(lambda: slack_emu.bot_messages("C_GENERAL", shown.ts) == [], message="status gone")
        [job] = await job_record(redis_url, prefix)
        assert (job["question"], job["status"]) == ("(forgotten)", "cancelled")
        await eventually(lambda: _nothing_owed(redis_url, prefix), message="nothing owed")
        assert "Murrelet" not in await redis_dump(redis_url, prefix)
    finally:
        await stop_bot(bot)
