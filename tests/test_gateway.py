"""The one Slack gateway (issue 17.2): what a step's outcome means for the segments (pure), the budget
table, the budget store's keys, and the whole product against a Slack holding exactly the manifest's
scopes, where every Web API call pays its budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml
from redis.crc import key_slot

from conftest import eventually, start_bot, stop_bot
from slackbot.research.status import CANCEL_ACTION
from slackbot.slack_out import calls
from slackbot.slack_out.calls import Outcome, Per, Request
from slackbot.slack_out.plan import Segment, Step
from slackbot.slack_out.settle import abandoned, lane, settle
from slackbot.store import BucketId, Store

MENTION = "<@UBOT>"
MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"
OK = Outcome(True, data={"ts": "9.000001"})


def stream(**kw) -> Segment:
    return Segment("stream", "1.000001", 0, 10, **kw)


def edited(**kw) -> Segment:
    return Segment("edit", "1.000001", 0, 10, **kw)


# --- what an outcome means for the segments (settle.py, pure) ----------------------------------------
def test_a_new_message_becomes_a_segment_and_is_journalled():
    out = settle(Step("start", 0, 12), OK, None, lane="start", now=5.0)
    assert (out.segment.kind, out.segment.ts, out.segment.end, out.segment.open) == ("stream", "9.000001", 12, True)
    assert out.created and out.journal and out.shown and out.counted == "stream" and out.segment.changed_at == 5.0
    grows = settle(Step("post_open", 0, 12), OK, None, lane="post:first", now=5.0, button=True).segment
    assert (grows.kind, grows.open, grows.final, grows.has_button) == ("edit", True, False, True)
    whole = settle(Step("post", 12, 30, final=True), OK, grows, lane="post", now=6.0).segment
    assert (whole.kind, whole.open, whole.final, whole.start) == ("post", False, True, 12)


def test_a_new_message_that_may_have_landed_is_looked_for_first():
    broke = Outcome(False, wait=0.5, error="http_502", unsure=True)
    out = settle(Step("post", 0, 12, final=True), broke, None, lane="post:first", now=1.0)
    assert out.look and out.waits == {"post:first": 0.5} and not out.broken and out.segment is None
    gave_up = settle(Step("post", 0, 12), Outcome(False, error="http_502", unsure=True), None, lane="post", now=1.0)
    assert gave_up.look and gave_up.broken and gave_up.gave_up
    refused = settle(Step("post", 0, 12), Outcome(False, error="not_in_channel"), None, lane="post", now=1.0)
    assert refused.broken and not refused.gave_up and not refused.look


def test_a_refused_stream_start_turns_native_streams_off_and_nothing_else():
    out = settle(Step("start", 0, 12), Outcome(False, error="channel_type_not_supported"), None, lane="start", now=1.0)
    assert not out.native and not out.broken and out.segment is None and not out.journal


def test_appends_grow_wait_or_give_the_stream_up():
    seg = stream(changed_at=1.0)
    grown = settle(Step("append", 0, 20), OK, seg, lane="append", now=2.0)
    assert grown.segment.end == 20 and grown.segment.changed_at == 2.0 and grown.counted == "append"
    assert seg.end == 10 and seg.changed_at == 1.0, "settle never changes the segment it was given"
    assert settle(Step("append", 0, 20), Outcome(False, wait=3.0), seg, lane="append", now=2.0).waits == \
        {"append": 3.0, "append:final": 0.0}, "the last append may still use the reserve"
    assert settle(Step("append", 0, 20, final=True), Outcome(False, wait=3.0), seg, lane="append:final",
                  now=2.0).waits == {"append:final": 3.0}
    unsure = settle(Step("append", 0, 20), Outcome(False, wait=0.5, error="http_503", unsure=True), seg,
                    lane="append", now=2.0)
    assert unsure.abandon_stream and not unsure.native, "an append that may have landed is never repeated"
    stopped = settle(Step("append", 0, 20), Outcome(False, error="stopped_by_user"), seg, lane="append", now=2.0)
    assert stopped.user_stopped and not stopped.segment.open and stopped.journal and not stopped.native


def test_a_stop_seals_the_stream_unless_it_must_wait():
    done = settle(Step("stop", 0, 10, final=True), OK, stream(), lane="stop", now=1.0)
    assert not done.segment.open and done.segment.final and done.counted == "stop" and done.journal
    gone = settle(Step("stop", 0, 10), Outcome(False, error="message_not_found"), stream(), lane="stop", now=1.0)
    assert not gone.segment.open and gone.counted == ""
    waits = settle(Step("stop", 0, 10), Outcome(False, wait=2.0, error="ratelimited"), stream(), lane="stop", now=1.0)
    assert waits.waits == {"stop": 2.0} and waits.segment is None


def test_edits_grow_and_finals_drop_the_stop_button():
    seg = edited(has_button=True)
    final = settle(Step("edit", 0, 30, final=True), OK, seg, lane="edit:final", now=3.0).segment
    assert (final.end, final.final, final.has_button) == (30, True, False)
    middle = settle(Step("edit", 0, 20), OK, seg, lane="edit", now=3.0).segment
    assert middle.has_button and not middle.final
    busy = settle(Step("edit", 0, 20), Outcome(False, wait=4.0), seg, lane="edit", now=3.0)
    assert busy.waits == {"edit": 4.0, "edit:final": 0.0}, "an intermediate edit's wait says nothing of the reserve"
    gone = settle(Step("edit", 0, 20), Outcome(False, error="message_not_found"), seg, lane="edit", now=3.0)
    assert not gone.segment.open and gone.journal


def test_an_abandoned_stream_is_grown_by_edits_once_stopped():
    assert dataclasses.astuple(abandoned(stream(), True))[:5] == ("edit", "1.000001", 0, 0, True)
    assert not abandoned(stream(), False).open


def test_lanes_are_the_planners_budget_names():
    assert lane(Step("post", 0, 1), first_words=True) == "post:first"
    assert lane(Step("post_open", 0, 1), first_words=False) == "post"
    assert lane(Step("edit", 0, 1, final=True), first_words=False) == "edit:final"
    assert lane(Step("append", 0, 1), first_words=False) == "append"


# --- the budget table and the store's keys ------------------------------------------------------------
BUILDERS = [calls.post("C1", {"text": "x"}), calls.update("C1", "1.1", {"text": "x"}), calls.delete("C1", "1.1"),
            calls.delete_file("F1"),
            calls.ephemeral("C1", "U1", "x"), calls.start_stream("C1", "1.1", "x", recipient_user="U1",
                                                                  recipient_team="T1"),
            calls.append_stream("C1", "1.1", "x"), calls.stop_stream("C1", "1.1"), calls.set_status("C1", "1.1", ""),
            calls.upload("C1", "1.1", b"x", "a.png", "a"), calls.replies("C1", "1.1", 15), calls.user_info("U1"),
            calls.channel_info("C1"), calls.auth_test(), calls.open_socket("xapp-1"),
            calls.search("q", action_token="t", person="U1", channel_types=["public_channel"],
                         content_types=["messages"], limit=10),
            calls.history("C1", 15), calls.members("C1"), calls.get_permalink("C1", "1.1"),
            calls.suggested_prompts("D1", [{"title": "t", "message": "m"}]), calls.session_status("D1", "1.1", "active"),
            calls.publish_home("U1", []),
            calls.usergroup_users("S1"),
            calls.create_canvas("C1", "t", "# x"), calls.open_view("T.1", {"type": "modal"})]


def test_every_request_the_bot_can_build_has_one_row_in_the_budget_table(settings_for):
    table = calls.budgets(settings_for())
    assert {r.method for r in BUILDERS} == set(table), "one builder per method, one row per method"
    assert [m for m, pays in table.items() if pays.per is Per.CHANNEL] == ["chat.postMessage"]
    assert [m for m, pays in table.items() if pays.per is Per.PERSON] == ["assistant.search.context"]
    assert {m for m, pays in table.items() if pays.budget is None} == {"auth.test", "apps.connections.open"}
    assert all(pays.budget.rate > 0 and pays.budget.capacity >= 1 for pays in table.values() if pays.budget)


def test_the_table_follows_the_settings(settings_for):
    table = calls.budgets(settings_for(edit_budget_per_minute=30, edit_final_reserve=2, post_burst=4))
    assert table["chat.update"].budget.rate == 0.5 and table["chat.update"].budget.reserve == 2
    assert table["chat.postMessage"].budget.capacity == 4 and table["chat.postMessage"].budget.reserve == 1
    assert table["chat.startStream"].budget == table["chat.stopStream"].budget  # same shape, own buckets


def test_requests_keep_message_text_and_tokens_out_of_their_repr():
    assert "secret" not in repr(calls.post("C1", {"text": "secret"})) and "xapp" not in repr(calls.open_socket("xapp-1"))


async def test_a_buckets_keys_share_one_cluster_slot_and_only_the_store_spells_them(redis_url, prefix):
    store = Store(aioredis.from_url(redis_url, decode_responses=True), prefix, chain_ttl=60, dedup_ttl=60)
    try:
        key = store.budgets.key(BucketId("chat.postMessage", "T1", "C1"))
        assert key == f"{prefix}:bucket:{{chat.postMessage:T1:C1}}"
        assert store.budgets.key(BucketId("chat.update", "T1")) == f"{prefix}:bucket:{{chat.update:T1}}"
        assert len({key_slot(k.encode()) for k in store.budgets._keys(BucketId("chat.update", "T1"))}) == 1
    finally:
        await store.close()


async def test_the_gateway_refuses_a_method_without_a_budget(settings_for):
    from slackbot.app import build_services

    services = await build_services(settings_for())
    try:
        with pytest.raises(KeyError):
            await services.slack.for_team("T1").now(Request("chat.scheduleMessage", {"channel": "C1"}))
        with pytest.raises(ValueError):  # a start-up call belongs to no workspace
            await services.slack.for_team("T1").now(calls.auth_test())
    finally:
        await services.close()


# --- end to end: exactly the manifest's scopes, every call budgeted -------------------------------------
PROFILES = 'profiles:\n  brief:\n    system_instruction: "Be brief."\nchannels:\n  "#general": brief\n'
TABLE = "| Region | Latency |\n|---|---|\n" + "\n".join(f"| region-{i:02d} | {i * 37 % 101} ms |" for i in range(70))


def _table_method(method: str) -> str:
    return "files.completeUploadExternal" if method.startswith("files.") else method


async def test_the_whole_product_needs_no_scope_beyond_the_manifest_and_every_call_pays_its_budget(
        settings_for, slack_emu, gemini_emu, redis_url, prefix, tmp_path):
    """Answers (streams, posts, edits, the status, names, a people's thread read back, a channel name, a
    table laid out again with the surplus deleted, a code image uploaded), research (status message,
    edits, report, file) and a refused click's ephemeral, against a Slack that grants exactly the
    manifest's bot scopes. Before the gateway, chat.delete, uploads, ephemerals, conversations.info and
    the research status post paid no budget."""
    slack_emu.scopes = set(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])
    (profiles := tmp_path / "profiles.yaml").write_text(PROFILES)
    settings = settings_for(profiles_file=str(profiles), tools="code_execution", message_chars=600,
                            research_file_threshold=1000)
    bot = await start_bot(settings, slack_emu)
    try:
        gemini_emu.script(match="latency", text=f"{TABLE}\n\nAll regions replicate.", chunk_chars=200, chunk_delay=0.05)
        first = await slack_emu.user_message("C_GENERAL", f"{MENTION} ask <@U_BOB> about the latency table")
        await eventually(lambda: slack_emu.calls_to("chat.delete"), 15, message="the surplus message deleted")
        gemini_emu.script(match="plot", text="Plotted.", tool_steps=[
            {"tool": "code_execution", "code": "plot()", "output": "ok", "image": True}])
        await slack_emu.user_message("C_GENERAL", f"{MENTION} plot it", thread_ts=first.message.ts)
        await eventually(lambda: slack_emu.files, 10, message="the code image uploaded")
        people = await slack_emu.user_message("C_GENERAL", "a people's conversation", user="U_BOB")
        await slack_emu.user_message("C_GENERAL", f"{MENTION} what do you think?", thread_ts=people.message.ts)
        await eventually(lambda: [c for c in slack_emu.calls_to("conversations.replies") if c.ok], 10,
                         message="the people's thread read back")
        gemini_emu.script_agent(queued_for=0.1, run_for=1.0)
        await slack_emu.slash_command("/research", "a big question")
        status = await eventually(lambda: [m for m in slack_emu.bot_messages("C_GENERAL") if "Deep Research" in m.text],
                                  10, message="the status message")
        await slack_emu.click_button(status[0], CANCEL_ACTION, user="U_BOB")
        await eventually(lambda: [e for e in slack_emu.ephemerals if e["user"] == "U_BOB"], 10, message="ephemeral")
        # the long report becomes a canvas (issue 22), after its two charts are uploaded
        await eventually(lambda: slack_emu.canvases.canvases and len(slack_emu.files) == 3, 15,
                         message="the report's charts and canvas")
    finally:
        await stop_bot(bot)
    made = {c.method for c in slack_emu.calls}
    assert {"chat.delete", "chat.postEphemeral", "conversations.info", "users.info", "conversations.replies",
            "files.completeUploadExternal", "chat.update", "assistant.threads.setStatus", "canvases.create"} <= made, made
    assert not [(c.method, c.error) for c in slack_emu.calls if c.error == "missing_scope"]
    table = calls.budgets(settings)
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = Store(client, prefix, chain_ttl=60, dedup_ttl=60)
    try:
        for call in slack_emu.calls:
            method = _table_method(call.method)
            pays = table[method]  # the gateway's table names every method the product called
            if pays.per is Per.START_UP:
                continue
            channel = call.params.get("channel") or call.params.get("channel_id")
            bucket = BucketId(method, "T0001", channel if pays.per is Per.CHANNEL else None)
            assert await client.exists(store.budgets.key(bucket)), f"{call.method} paid no budget"
    finally:
        await client.aclose()
