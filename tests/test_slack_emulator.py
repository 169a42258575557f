"""The Slack emulator, exercised through the real slack_sdk client and a signature-checking receiver."""

import asyncio
import json
import time
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from slackbot_emulators.slack import SlackEmulator, rendered_links

# slack_sdk's oauth_v2_access still hands aiohttp a BasicAuth, which aiohttp deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
FEEDBACK_BLOCK = {"type": "context_actions", "block_id": "fb-block", "elements": [{
    "type": "feedback_buttons", "action_id": "fb",
    "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "good"},
    "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "bad"}}]}


class Receiver:
    """A stand-in app: verifies Slack's signature like Bolt, records requests, answers `reply`."""

    def __init__(self):
        self.requests: list[dict] = []
        self.verifier = SignatureVerifier(SECRET)
        self.reply = lambda req: web.Response(status=200)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401, text="invalid signature")
        req = {"headers": dict(request.headers), "body": body}
        if request.content_type == "application/json":
            req["json"] = json.loads(body)
        else:
            req["form"] = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.requests.append(req)
        return self.reply(req)

    def events(self) -> list[dict]:
        return [r["json"] for r in self.requests if "json" in r]


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/slack/events", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def emu(receiver):
    emulator = SlackEmulator(app_url=receiver.url)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def client(emu):
    return AsyncWebClient(token=TOKEN, base_url=emu.api_url)


async def api_error(coro) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    return info.value


# ------------------------------------------------------------------ Web API


async def test_auth(emu, client):
    res = await client.auth_test()
    assert (res["user_id"], res["bot_id"], res["team_id"]) == ("UBOT", "BBOT", "T0001")
    bad = AsyncWebClient(token="xoxb-wrong", base_url=emu.api_url)
    assert (await api_error(bad.auth_test())).response["error"] == "invalid_auth"
    assert (await api_error(client.api_call("no.such.method"))).response["error"] == "unknown_method"


async def test_post_update_and_text_limits(emu, client):
    res = await client.chat_postMessage(channel="C_GENERAL", text="x" * 45_000, unfurl_links=False)
    msg = emu.messages("C_GENERAL")[-1]
    assert res["ts"] == msg.ts and len(msg.text) == 40_000  # truncated, not refused
    second = await client.chat_postMessage(channel="C_GENERAL", text="hi")
    assert float(second["ts"]) > float(res["ts"])

    err = await api_error(client.chat_update(channel="C_GENERAL", ts=res["ts"], text="y" * 4_001))
    assert err.response["error"] == "msg_too_long"
    await client.chat_update(channel="C_GENERAL", ts=res["ts"], text="short",
                             blocks=[{"type": "markdown", "text": "**short**"}])
    assert msg.text == "short" and msg.visible_text == "**short**" and len(msg.edits) == 1

    err = await api_error(client.chat_update(channel="C_GENERAL", ts="1.000001", text="z"))
    assert err.response["error"] == "message_not_found"
    alice = (await emu.user_message("C_GENERAL", "hello", deliver=False)).message
    err = await api_error(client.chat_update(channel="C_GENERAL", ts=alice.ts, text="z"))
    assert err.response["error"] == "cant_update_message"
    assert [c.method for c in emu.calls].count("chat.update") == 4


@pytest.mark.parametrize("blocks, error", [
    ([{"type": "divider"}] * 51, "invalid_blocks"),
    ([{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3_001}}], "invalid_blocks"),
    ([{"type": "bogus"}], "invalid_blocks"),
    (["not a dict"], "invalid_blocks"),
    ([{"type": "markdown", "text": "m" * 6_001}] * 2, "msg_too_long"),
])
async def test_block_limits(client, blocks, error):
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="fallback", blocks=blocks))
    assert err.response["error"] == error


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_no_text(client):
    assert (await api_error(client.chat_postMessage(channel="C_GENERAL"))).response["error"] == "no_text"


async def test_replies_paging_cap_and_tier1_limit(emu, client):
    parent = (await emu.user_message("C_GENERAL", "question", deliver=False)).message
    emu.rate_limits = False
    for i in range(20):
        await client.chat_postMessage(channel="C_GENERAL", thread_ts=parent.ts, text=f"reply {i}")
    page1 = await client.conversations_replies(channel="C_GENERAL", ts=parent.ts, limit=200)
    assert len(page1["messages"]) == 15 and page1["has_more"]
    assert page1["messages"][0]["reply_count"] == 20
    page2 = await client.conversations_replies(channel="C_GENERAL", ts=parent.ts,
                                               cursor=page1["response_metadata"]["next_cursor"])
    assert len(page2["messages"]) == 6 and not page2["has_more"]
    assert [m.ts for m in emu.messages("C_GENERAL", parent.ts)] == \
        [m["ts"] for m in page1["messages"] + page2["messages"]]
    err = await api_error(client.conversations_replies(channel="C_GENERAL", ts="123.000001"))
    assert err.response["error"] == "thread_not_found"

    emu.rate_limits = True  # Tier 1: one call a minute
    await client.conversations_replies(channel="C_GENERAL", ts=parent.ts)
    err = await api_error(client.conversations_replies(channel="C_GENERAL", ts=parent.ts))
    assert err.response.status_code == 429 and int(err.response.headers["Retry-After"]) >= 59


async def test_chat_update_burst_answers_429(emu, client):
    ts = (await client.chat_postMessage(channel="C_GENERAL", text="0"))["ts"]
    for i in range(50):
        await client.chat_update(channel="C_GENERAL", ts=ts, text=str(i))
    err = await api_error(client.chat_update(channel="C_GENERAL", ts=ts, text="one too many"))
    assert err.response.status_code == 429 and err.response["error"] == "ratelimited"
    assert err.response.headers["Retry-After"] in ("1", "2")  # 50/min: a token every 1.2 s
    assert emu.ratelimited("chat.update") == 1 and emu.ratelimited() == 1


async def test_post_message_burst_is_per_channel(emu, client):
    for _ in range(5):
        await client.chat_postMessage(channel="C_GENERAL", text="burst")
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="sixth"))
    assert err.response.status_code == 429
    await client.chat_postMessage(channel="D_ALICE", text="other channel has its own bucket")
    emu.set_rate_limit("chat.postMessage", 6000, 100, scope="channel")
    await client.chat_postMessage(channel="C_GENERAL", text="after raising the limit")


async def test_fail_next(emu, client):
    emu.fail_next("chat.postMessage", retry_after=3)
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="a"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "3"
    emu.fail_next("chat.postMessage", error="internal_error", times=2)
    for _ in range(2):
        err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="b"))
        assert err.response.status_code == 200 and err.response["error"] == "internal_error"
    await client.chat_postMessage(channel="C_GENERAL", text="c")
    assert [c.ok for c in emu.calls_to("chat.postMessage")] == [False, False, False, True]


async def test_fail_next_with_a_5xx_as_slack_or_its_edge_sends_it(emu, client):
    """A 5xx takes no effect: JSON from Slack's API, or a proxy's bare text/plain or HTML page."""
    emu.fail_next("chat.postMessage", "internal_error", status=500)
    emu.fail_next("chat.postMessage", status=500, content_type="text/plain")
    emu.fail_next("chat.postMessage", status=502, content_type="text/html", times=2)
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="a"))
    assert err.response.status_code == 500 and err.response["error"] == "internal_error"
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="b"))
    assert err.response.status_code == 500 and err.response.data == "500 Internal Server Error"
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="c"))
    assert err.response.status_code == 502 and err.response.data == {}  # the SDK reads no JSON from HTML
    emu.heal("chat.postMessage")
    await client.chat_postMessage(channel="C_GENERAL", text="d")
    assert [m.text for m in emu.bot_messages("C_GENERAL")] == ["d"], "a failed call took no effect"
    assert [c.status for c in emu.calls_to("chat.postMessage")] == [500, 500, 502, 200]
    emu.fail_next("chat.postMessage", status=504, content_type="text/html", applied=True)
    err = await api_error(client.chat_postMessage(channel="C_GENERAL", text="e"))
    assert err.response.status_code == 504
    assert [m.text for m in emu.bot_messages("C_GENERAL")] == ["d", "e"], "it took effect; only the answer was lost"


async def test_not_in_channel_without_chat_write_public(emu):
    strict = SlackEmulator(scopes={"chat:write", "channels:history"})
    await strict.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=strict.api_url)
        err = await api_error(client.chat_postMessage(channel="C_RANDOM", text="hi"))
        assert err.response["error"] == "not_in_channel"
        await client.conversations_join(channel="C_RANDOM")
        await client.chat_postMessage(channel="C_RANDOM", text="hi")
        assert strict.bot_messages("C_RANDOM")[0].text == "hi"
    finally:
        await strict.stop()
    # With the default scopes (chat:write.public) a public channel needs no join.
    await AsyncWebClient(token=TOKEN, base_url=emu.api_url).chat_postMessage(channel="C_RANDOM", text="ok")


async def test_conversations_info_needs_the_read_scope_of_its_conversation_type():
    strict = SlackEmulator(scopes={"chat:write", "groups:read"})
    await strict.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=strict.api_url)
        err = await api_error(client.conversations_info(channel="C_RANDOM"))
        assert (err.response["error"], err.response["needed"]) == ("missing_scope", "channels:read")
        strict.scopes.add("channels:read")
        assert (await client.conversations_info(channel="C_RANDOM"))["channel"]["name"] == "random"
    finally:
        await strict.stop()


async def test_files_upload_v2(emu, client):
    parent = (await client.chat_postMessage(channel="C_GENERAL", text="report follows"))["ts"]
    res = await client.files_upload_v2(channel="C_GENERAL", thread_ts=parent, content="# Report\nbody",
                                       filename="report.md", title="Report", initial_comment="here it is")
    assert res["file"]["name"] == "report.md"
    [record] = emu.files
    assert record["content"] == b"# Report\nbody" and record["title"] == "Report"
    assert (record["channel"], record["thread_ts"], record["initial_comment"]) == ("C_GENERAL", parent, "here it is")
    share = emu.messages("C_GENERAL", parent)[-1]
    assert share.subtype == "file_share" and share.files[0]["id"] == record["id"]
    # The same upload URL accepts multipart bodies too.
    up = await client.files_getUploadURLExternal(filename="b.txt", length=3)
    form = aiohttp.FormData()
    form.add_field("file", b"abc", filename="b.txt")
    async with aiohttp.ClientSession() as s, s.post(up["upload_url"], data=form) as r:
        assert r.status == 200
    await client.files_completeUploadExternal(files=[{"id": up["file_id"]}], channel_id="C_GENERAL")
    assert emu.files[1]["content"] == b"abc"


async def test_users_info(client):
    res = await client.users_info(user="U_ALICE")
    assert res["user"]["real_name"] == "Alice Adams" and res["user"]["name"] == "alice"
    assert (await api_error(client.users_info(user="U_NOBODY"))).response["error"] == "user_not_found"


async def test_other_methods(emu, client):
    ts = (await client.chat_postMessage(channel="C_GENERAL", text="x"))["ts"]
    await client.reactions_add(channel="C_GENERAL", timestamp=ts, name="eyes")
    await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=ts, status="thinking…")
    await client.chat_postEphemeral(channel="C_GENERAL", user="U_BOB", text="psst")
    info = await client.conversations_info(channel="C_RANDOM")
    assert info["channel"]["is_member"] is False
    await client.chat_delete(channel="C_GENERAL", ts=ts)
    assert emu.messages("C_GENERAL") == [] and emu.statuses[0]["status"] == "thinking…"
    assert emu.ephemerals == [{"channel": "C_GENERAL", "user": "U_BOB", "text": "psst", "blocks": None,
                               "thread_ts": None, "via": "chat.postEphemeral"}]


# --------------------------------------------------------------- deliveries


async def test_mention_delivers_message_and_app_mention(emu, receiver):
    d = await emu.user_message("C_GENERAL", "<@UBOT> what is up?")
    assert d.status == 200 and len(d.all) == 2 and d.latency < 5
    events = receiver.events()
    assert sorted(e["event"]["type"] for e in events) == ["app_mention", "message"]
    assert len({e["event_id"] for e in events}) == 2
    message = next(e["event"] for e in events if e["event"]["type"] == "message")
    assert message["channel_type"] == "channel" and message["ts"] == d.message.ts
    assert events[0]["authorizations"][0]["user_id"] == "UBOT"

    retry = await emu.redeliver(d, retry_num=1)
    again = receiver.requests[-1]
    assert retry.event_id == d.event_id == again["json"]["event_id"]
    assert again["headers"]["X-Slack-Retry-Num"] == "1"
    assert again["headers"]["X-Slack-Retry-Reason"] == "http_timeout"


async def test_dm_and_channel_the_bot_is_not_in(emu, receiver):
    d = await emu.user_message("D_ALICE", "hi <@UBOT>")  # no app_mention in a DM
    assert len(d.all) == 1 and d.payload["event"]["channel_type"] == "im"
    parent = (await emu.user_message("C_GENERAL", "topic", deliver=False)).message
    reply = await emu.user_message("C_GENERAL", "more", user="U_BOB", thread_ts=parent.ts)
    assert reply.payload["event"]["thread_ts"] == parent.ts
    assert reply.payload["event"]["parent_user_id"] == "U_ALICE"
    assert [m.text for m in emu.messages("C_GENERAL", parent.ts)] == ["topic", "more"]
    assert [m.text for m in emu.messages("C_GENERAL")] == ["topic"]
    skipped = await emu.user_message("C_RANDOM", "<@UBOT> hello?")  # the app is not in #random
    assert skipped.status == 0 and len(receiver.requests) == 2


async def test_bad_signature_and_stale_timestamp_are_rejected(emu):
    body = json.dumps({"type": "event_callback"})
    assert (await emu.send_signed(body, "application/json", bad_signature=True)).status == 401
    assert (await emu.send_signed(body, "application/json", timestamp=1_000_000)).status == 401
    assert (await emu.send_signed(body, "application/json")).status == 200


async def test_slash_command_ack_and_response_url(emu, receiver):
    receiver.reply = lambda req: web.json_response({"text": "working on it"})
    d = await emu.slash_command("/ask", "why is the sky blue")
    form = receiver.requests[-1]["form"]
    assert (form["command"], form["text"], form["user_id"], form["channel_id"]) == \
        ("/ask", "why is the sky blue", "U_ALICE", "C_GENERAL")
    assert d.payload["response_url"].startswith(emu.base_url + "/_emu/response/")
    webhook = AsyncWebhookClient(form["response_url"])
    await webhook.send(text="only you see this")
    await webhook.send(text="everyone sees this", response_type="in_channel")
    assert [(e["text"], e["via"]) for e in emu.ephemerals] == [("working on it", "ack"),
                                                               ("only you see this", "response_url")]
    assert emu.bot_messages("C_GENERAL")[-1].text == "everyone sees this"


async def test_click_button(emu, client, receiver):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Start research?"}},
              {"type": "actions", "block_id": "b1",
               "elements": [{"type": "button", "action_id": "start", "value": "job-1",
                             "text": {"type": "plain_text", "text": "Start"}}]}]
    ts = (await client.chat_postMessage(channel="C_GENERAL", text="Start research?", blocks=blocks))["ts"]
    msg = emu.messages("C_GENERAL")[-1]
    d = await emu.click_button(msg, "start", user="U_BOB")
    payload = json.loads(receiver.requests[-1]["form"]["payload"])
    assert payload == d.payload and payload["type"] == "block_actions"
    assert payload["actions"][0]["value"] == "job-1" and payload["actions"][0]["block_id"] == "b1"
    assert payload["container"]["message_ts"] == ts and payload["user"]["id"] == "U_BOB"
    assert payload["message"]["blocks"] == blocks and payload["channel"]["id"] == "C_GENERAL"
    await AsyncWebhookClient(payload["response_url"]).send(text="Started", replace_original=True)
    assert msg.text == "Started" and msg.blocks is None
    with pytest.raises(LookupError):
        await emu.click_button(msg, "start")  # the buttons are gone


async def test_echo_bot_events(receiver):
    emu = SlackEmulator(app_url=receiver.url, echo_bot_events=True)
    await emu.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=emu.api_url)
        ts = (await client.chat_postMessage(channel="C_GENERAL", text="hello"))["ts"]
        await client.chat_update(channel="C_GENERAL", ts=ts, text="hello, edited")
        await emu.wait_for(lambda: len(receiver.events()) == 2)
        by_kind = {e["event"].get("subtype"): e["event"] for e in receiver.events()}
        assert by_kind[None]["bot_id"] == "BBOT" and by_kind[None]["ts"] == ts
        changed = by_kind["message_changed"]
        assert changed["message"]["text"] == "hello, edited" and changed["previous_message"]["text"] == "hello"
        await client.chat_delete(channel="C_GENERAL", ts=ts)  # Slack tells the app of its own deletions too
        deleted = [e.payload["event"] for e in await emu.echoes_answered()][-1]
        assert (deleted["subtype"], deleted["deleted_ts"]) == ("message_deleted", ts)
    finally:
        await emu.stop()


# -------------------------------------------------------- control endpoints


async def test_control_endpoints_and_feed(emu, receiver):
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        async with http.get("/_emu/feed") as feed:
            assert (await feed.content.readline()).startswith(b": connected")
            async with http.post("/_emu/user_message", json={"channel": "C_GENERAL", "text": "<@UBOT> hi"}) as r:
                answer = await r.json()
            assert answer["delivery"]["status"] == 200 and len(answer["all"]) == 2
            line = b""
            while not line.startswith(b"data:"):
                line = await asyncio.wait_for(feed.content.readline(), 2)
            event = json.loads(line[len("data:"):])
            assert event["type"] == "message" and event["text"] == "<@UBOT> hi"
        async with http.get("/_emu/state") as r:
            state = await r.json()
        general = next(c for c in state["channels"] if c["id"] == "C_GENERAL")
        assert general["messages"][0]["user"] == "U_ALICE"
        async with http.post("/_emu/click", json={"channel": "C_GENERAL", "ts": "1.1", "action_id": "x"}) as r:
            assert r.status == 400
        async with http.post("/_emu/slash_command", json={"command": "/ask", "text": "q"}) as r:
            assert (await r.json())["delivery"]["status"] == 200
        async with http.post("/_emu/reset", json={}) as r:
            assert r.status == 200
        async with http.get("/_emu/calls") as r:
            assert await r.json() == []
    assert emu.messages("C_GENERAL") == []


# ------------------------------------------------- native streaming and thread status


async def _mention(emu) -> str:
    return (await emu.user_message("C_GENERAL", "<@UBOT> explain", deliver=False)).message.ts


async def test_native_stream_grows_and_stops_through_chat_stream(emu, client):
    thread = await _mention(emu)
    streamer = await client.chat_stream(channel="C_GENERAL", thread_ts=thread, recipient_team_id="T0001",
                                        recipient_user_id="U_ALICE", buffer_size=1)
    await streamer.append(markdown_text="Hello")
    await streamer.append(markdown_text=" *world*", chunks=[
        {"type": "plan_update", "title": "Answering"},
        {"type": "task_update", "id": "t1", "title": "Reading", "status": "in_progress"}])
    stream = emu.stream("C_GENERAL", streamer.ts)
    assert stream.state == "streaming" and stream.texts == ["Hello", "Hello *world*"]
    assert stream.plan_title == "Answering" and stream.tasks["t1"]["status"] == "in_progress"
    # While it streams, the thread shows the text so far, as Slack would.
    replies = await client.conversations_replies(channel="C_GENERAL", ts=thread)
    assert replies["messages"][1]["text"] == "Hello *world*" and replies["messages"][1]["bot_id"] == "BBOT"
    feedback = [FEEDBACK_BLOCK]
    await streamer.stop(markdown_text="!", blocks=feedback,
                        metadata={"event_type": "answer", "event_payload": {"id": "1"}})
    assert stream.state == "stopped" and stream.texts[-1] == "Hello *world*!"
    msg = emu.bot_messages("C_GENERAL", thread)[0]
    assert msg.visible_text == "Hello *world*!" and msg.blocks[-1]["type"] == "context_actions"
    assert stream.metadata["event_type"] == "answer"
    assert [len(emu.calls_to(m)) for m in ("chat.startStream", "chat.appendStream", "chat.stopStream")] == [1, 1, 1]
    assert (await api_error(client.chat_appendStream(channel="C_GENERAL", ts=streamer.ts, markdown_text="x"))
            ).response["error"] == "message_not_in_streaming_state"


async def test_start_stream_needs_thread_and_recipient_in_channels(emu, client):
    thread = await _mention(emu)
    cases = [({"recipient_team_id": "T0001"}, "missing_recipient_user_id"),
             ({"recipient_user_id": "U_ALICE"}, "missing_recipient_team_id")]
    for kwargs, error in cases:
        e = await api_error(client.chat_startStream(channel="C_GENERAL", thread_ts=thread, markdown_text="x", **kwargs))
        assert e.response["error"] == error
    e = await api_error(client.chat_startStream(channel="C_GENERAL", thread_ts="", markdown_text="x",
                                                recipient_team_id="T0001", recipient_user_id="U_ALICE"))
    assert e.response["error"] == "invalid_arguments"
    dm = (await emu.user_message("D_ALICE", "hi", deliver=False)).message.ts
    started = await client.chat_startStream(channel="D_ALICE", thread_ts=dm, markdown_text="ok")
    assert emu.stream("D_ALICE", started["ts"]).markdown == "ok"


async def test_stream_chunk_and_size_limits(emu, client):
    thread = await _mention(emu)
    ts = (await client.chat_startStream(channel="C_GENERAL", thread_ts=thread, recipient_team_id="T0001",
                                        recipient_user_id="U_ALICE"))["ts"]
    e = await api_error(client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="x" * 12_001))
    assert e.response["error"] == "msg_too_long"
    for chunk in ({"type": "sparkles"}, {"type": "task_update", "id": "a", "title": "b", "status": "done"}):
        e = await api_error(client.chat_appendStream(channel="C_GENERAL", ts=ts, chunks=[chunk]))
        assert e.response["error"] == "invalid_chunks"
    await client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="y" * 12_000)
    assert len(emu.stream("C_GENERAL", ts).markdown) == 12_000
    user_ts = thread
    e = await api_error(client.chat_appendStream(channel="C_GENERAL", ts=user_ts, markdown_text="x"))
    assert e.response["error"] == "message_not_owned_by_app"


async def test_stream_expires_then_chat_update_finishes_it(receiver):
    emu = SlackEmulator(app_url=receiver.url, stream_expiry_seconds=0.3)
    await emu.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=emu.api_url)
        thread = await _mention(emu)
        ts = (await client.chat_startStream(channel="C_GENERAL", thread_ts=thread, markdown_text="part",
                                            recipient_team_id="T0001", recipient_user_id="U_ALICE"))["ts"]
        e = await api_error(client.chat_update(channel="C_GENERAL", ts=ts, text="whole"))
        assert e.response["error"] == "streaming_state_conflict"
        await emu.wait_for(lambda: emu.stream("C_GENERAL", ts).state == "expired")
        for call in (client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="more"),
                     client.chat_stopStream(channel="C_GENERAL", ts=ts)):
            assert (await api_error(call)).response["error"] == "message_not_in_streaming_state"
        assert emu.bot_messages("C_GENERAL")[0].visible_text == "part"
        await client.chat_update(channel="C_GENERAL", ts=ts, text="whole", blocks=[{"type": "markdown", "text": "whole"}])
        assert emu.bot_messages("C_GENERAL")[0].visible_text == "whole"
    finally:
        await emu.stop()


async def test_user_presses_stop(emu, client):
    thread = await _mention(emu)
    ts = (await client.chat_startStream(channel="C_GENERAL", thread_ts=thread, markdown_text="so far",
                                        recipient_team_id="T0001", recipient_user_id="U_ALICE"))["ts"]
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        async with http.post("/_emu/stop_stream", json={"channel": "C_GENERAL", "ts": ts, "user": "U_BOB"}) as r:
            assert r.status == 400  # only the person the stream is for sees Stop
        async with http.post("/_emu/stop_stream", json={"channel": "C_GENERAL", "ts": ts, "user": "U_ALICE"}) as r:
            assert r.status == 200 and (await r.json())["stream"]["state"] == "stopped_by_user"
    for call in (client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="more"),
                 client.chat_stopStream(channel="C_GENERAL", ts=ts)):
        assert (await api_error(call)).response["error"] == "stopped_by_user"
    assert emu.bot_messages("C_GENERAL")[0].visible_text == "so far"
    await client.chat_update(channel="C_GENERAL", ts=ts, text="so far (stopped)")
    assert emu.bot_messages("C_GENERAL")[0].text == "so far (stopped)"


async def test_stream_methods_have_their_tiers(emu, client):
    thread = await _mention(emu)
    args = {"channel": "C_GENERAL", "thread_ts": thread, "recipient_team_id": "T0001", "recipient_user_id": "U_ALICE"}
    for _ in range(20):  # Tier 2: about 20 a minute
        ts = (await client.chat_startStream(**args, markdown_text="x"))["ts"]
    e = await api_error(client.chat_startStream(**args))
    assert e.response.status_code == 429 and int(e.response.headers["Retry-After"]) >= 1
    emu.set_rate_limit("chat.appendStream", 60, 2)
    for _ in range(2):
        await client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="y")
    e = await api_error(client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="y"))
    assert e.response.status_code == 429
    await client.chat_stopStream(channel="C_GENERAL", ts=ts)  # its own bucket
    assert emu.ratelimited("chat.startStream") == 1 and emu.ratelimited("chat.appendStream") == 1


async def test_thread_status_shows_and_clears(receiver):
    emu = SlackEmulator(app_url=receiver.url, status_clear_seconds=0.3)
    await emu.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=emu.api_url)
        thread = await _mention(emu)
        for body in ({"channel_id": "C_GENERAL", "status": "x"}, {"thread_ts": thread, "status": "x"},
                     {"channel_id": "C_GENERAL", "thread_ts": thread, "status": "x",
                      "loading_messages": [str(i) for i in range(11)]}):
            e = await api_error(client.api_call("assistant.threads.setStatus", json=body))
            assert e.response["error"] == "invalid_arguments"
        await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread, status="is thinking…",
                                                 loading_messages=["Reading", "Writing"])
        shown = emu.current_status("C_GENERAL", thread)
        assert shown["status"] == "is thinking…" and shown["loading_messages"] == ["Reading", "Writing"]
        await client.chat_postMessage(channel="C_GENERAL", thread_ts=thread, text="answer")  # clears it
        assert emu.current_status("C_GENERAL", thread) is None
        await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread, status="is thinking…")
        await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread, status="")
        await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread, status="is still thinking…")
        await emu.wait_for(lambda: emu.status_history("C_GENERAL", thread)[-1]["via"] == "timeout")
        assert emu.current_status("C_GENERAL", thread) is None
        assert [(s["status"], s["via"]) for s in emu.status_history("C_GENERAL", thread)] == [
            ("is thinking…", "app"), ("", "message"), ("is thinking…", "app"), ("", "app"),
            ("is still thinking…", "app"), ("", "timeout")]
    finally:
        await emu.stop()


async def test_feed_shows_stream_growth_and_status(emu, client):
    thread = await _mention(emu)
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        async with http.get("/_emu/feed") as feed:
            assert (await feed.content.readline()).startswith(b": connected")
            await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread, status="is thinking…",
                                                     loading_messages=["Reading"])
            ts = (await client.chat_startStream(channel="C_GENERAL", thread_ts=thread, markdown_text="a",
                                                recipient_team_id="T0001", recipient_user_id="U_ALICE"))["ts"]
            await client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="b")
            await client.chat_stopStream(channel="C_GENERAL", ts=ts)
            events = []
            while len(events) < 5:
                line = await asyncio.wait_for(feed.content.readline(), 2)
                if line.startswith(b"data:") and (event := json.loads(line[len("data:"):]))["type"] != "session":
                    events.append(event)  # (the agent session these calls move has its own feed events)
    assert [e["type"] for e in events] == ["status", "message", "status", "message_changed", "message_changed"]
    assert events[0]["loading_messages"] == ["Reading"] and events[2]["status"] == ""
    assert events[1]["visible_text"] == "a" and events[3]["visible_text"] == "ab"
    assert events[3]["stream"]["state"] == "streaming" and events[4]["stream"]["state"] == "stopped"


# What a reader could click: links outside code, in the markdown block and in the mrkdwn fallback.
def test_rendered_links_tell_literal_text_from_links():
    md = ("[a](https://a.example) <https://b.example> www.c.example `[d](https://d.example)` ``x`https://e`` "
          "\n```\nhttps://f.example\n```\n`unclosed https://g.example")
    assert set(rendered_links(md, markdown=True)) == {
        "https://a.example", "https://b.example", "www.c.example", "https://g.example"}
    assert set(rendered_links("<https://h.example|Slack login> [i](https://i.example) `https://j`",
                              markdown=False)) == {"https://h.example", "https://i.example"}
    assert rendered_links("&lt;!channel&gt; `<https://l|y>`", markdown=False) == []
    # linear: each shape took milliseconds (the guard only catches a relapse into something absurd)
    for text in ("](" + " " * 50_000, "`" * 50_000, "` " * 25_000, "` `` " * 10_000, "http://" * 10_000,
                 "<a:" * 20_000, "](](" * 20_000, "```\n" * 20_000):
        started = time.process_time()
        rendered_links(text, markdown=True), rendered_links(text, markdown=False)
        assert time.process_time() - started < 1.5, text[:10]


# ------------------------------------------------ the agent surface (issue 19)


async def _dm(emu, text="hi", user="U_ALICE") -> str:
    return (await emu.user_message("D_ALICE", text, user=user, deliver=False)).message.ts


async def test_suggested_prompts_are_four_at_most_and_never_in_a_thread(emu, client):
    prompts = [{"title": f"T{i}", "message": f"M{i}"} for i in range(4)]
    await client.assistant_threads_setSuggestedPrompts(channel_id="D_ALICE", prompts=prompts, title="Try")
    assert emu.agents.suggested_prompts("D_ALICE")["prompts"] == prompts
    e = await api_error(client.assistant_threads_setSuggestedPrompts(channel_id="D_ALICE", prompts=prompts * 2))
    assert e.response["error"] == "invalid_arguments"
    # An agent_view app's prompts live at the top of the Messages tab: with thread_ts it "silently fails".
    ts = await _dm(emu)
    await client.assistant_threads_setSuggestedPrompts(channel_id="D_ALICE", thread_ts=ts, prompts=prompts[:1])
    assert emu.agents.suggested_prompts("D_ALICE")["prompts"] == prompts
    assert [c["shown"] for c in emu.agents.prompt_calls] == [True, False]


async def test_not_agent_app_without_agent_view(receiver):
    emu = SlackEmulator(app_url=receiver.url, agent_view=False)
    await emu.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=emu.api_url)
        ts = await _dm(emu)
        prompts = [{"title": "a", "message": "b"}]
        for call in (client.assistant_threads_setSuggestedPrompts(channel_id="D_ALICE", prompts=prompts),
                     client.assistant_threads_setTitle(channel_id="D_ALICE", thread_ts=ts, title="x")):
            assert (await api_error(call)).response["error"] == "not_agent_app"
        e = await api_error(client.agents_sessions_setStatus(channel_id="D_ALICE", thread_ts=ts, status="processing"))
        assert e.response["error"] == "feature_disabled"
        assert (await emu.agents.look_at("U_ALICE", "C_GENERAL")).status == 0  # no app_context_changed either
    finally:
        await emu.stop()


async def test_agent_session_status_title_and_slacks_stop(emu, client, receiver):
    ts = await _dm(emu, "what changed in Q3?")
    res = await client.agents_sessions_setStatus(channel_id="D_ALICE", thread_ts=ts, status="processing",
                                                 title="Q3 changes")
    assert (res["status"], res["title"]) == ("processing", "Q3 changes") and "warning" not in res
    session = emu.agents.session("D_ALICE", ts)
    assert session["stop_button"] and session["initiator_user_id"] == "U_ALICE"
    for kwargs, error in (({"status": "busy", "thread_ts": ts}, "invalid_status"),
                          ({"status": "active"}, "thread_ts_required"),
                          ({"status": "active", "thread_ts": ts, "title": "t" * 201}, "invalid_arguments"),
                          ({"status": "active", "thread_ts": ts, "username": "x"}, "missing_scope")):
        assert (await api_error(client.agents_sessions_setStatus(channel_id="D_ALICE", **kwargs))).response["error"] == error
    await client.agents_sessions_rename(channel_id="D_ALICE", thread_ts=ts, title="Q3, in short")
    assert emu.agents.session("D_ALICE", ts)["title"] == "Q3, in short"
    e = await api_error(client.agents_sessions_rename(channel_id="D_ALICE", thread_ts="1.000001", title="x"))
    assert e.response["error"] == "session_not_found"
    stream_ts = (await client.chat_startStream(channel="D_ALICE", thread_ts=ts, markdown_text="so far"))["ts"]
    with pytest.raises(ValueError):
        await emu.agents.stop_session("D_ALICE", ts, "U_BOB")  # only the person whose session it is
    d = await emu.agents.stop_session("D_ALICE", ts, "U_ALICE")
    event = d.payload["event"]
    assert d.status == 200 and event["type"] == "agent_session_stopped"
    assert (event["thread_ts"], event["streaming_message_ts"]) == (ts, [stream_ts])
    assert emu.agents.session("D_ALICE", ts)["status"] == "processing", "the app must leave processing itself"
    await client.chat_stopStream(channel="D_ALICE", ts=stream_ts, session_status="suspended")
    assert [h["status"] for h in emu.agents.session("D_ALICE", ts)["history"]] == ["processing", "processing", "suspended"]


async def test_processing_offers_no_stop_without_the_subscription(receiver):
    emu = SlackEmulator(app_url=receiver.url, subscriptions={"message.im", "app_mention"})
    await emu.start()
    try:
        client = AsyncWebClient(token=TOKEN, base_url=emu.api_url)
        ts = await _dm(emu)
        res = await client.agents_sessions_setStatus(channel_id="D_ALICE", thread_ts=ts, status="processing")
        assert res["warning"] == "missing_agent_session_stopped_event_subscription"
        assert not emu.agents.session("D_ALICE", ts)["stop_button"]
        with pytest.raises(ValueError):
            await emu.agents.stop_session("D_ALICE", ts, "U_ALICE")
        assert (await emu.agents.open_app_home("U_ALICE")).status == 0  # app_home_opened not subscribed
    finally:
        await emu.stop()


async def test_messages_tab_context_and_home_tab(emu, client, receiver):
    d = await emu.agents.open_app_home("U_ALICE", "messages")
    assert d.status == 200 and d.payload["event"] == {**d.payload["event"], "type": "app_home_opened",
                                                      "user": "U_ALICE", "channel": "D_ALICE", "tab": "messages"}
    assert "thread_ts" not in d.payload["event"]
    d = await emu.agents.look_at("U_ALICE", "C_GENERAL")
    context = {"entities": [{"type": "slack#/types/channel_id", "value": "C_GENERAL", "team_id": "T0001"}]}
    assert d.payload["event"]["type"] == "app_context_changed" and d.payload["event"]["context"] == context
    msg = await emu.user_message("D_ALICE", "summarise this")
    assert msg.payload["event"]["app_context"] == context
    assert (await emu.agents.open_app_home("U_ALICE", "messages")).payload["event"]["context"] == context
    await emu.agents.look_at("U_ALICE", None)
    assert (await emu.user_message("D_ALICE", "and now?")).payload["event"]["app_context"] == {}
    # The Home tab: views.publish within Block Kit's limits, then app_home_opened tab=home carries the view.
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"line {i}"}} for i in range(100)]
    await client.views_publish(user_id="U_ALICE", view={"type": "home", "blocks": blocks})
    for view, error in (({"type": "home", "blocks": blocks + blocks[:1]}, "invalid_arguments"),
                        ({"type": "modal", "blocks": []}, "invalid_arguments"),
                        ({"type": "home", "blocks": [{"type": "bogus"}]}, "invalid_arguments")):
        assert (await api_error(client.views_publish(user_id="U_ALICE", view=view))).response["error"] == error
    assert (await api_error(client.views_publish(user_id="U_NOBODY", view={"type": "home", "blocks": []}))
            ).response["error"] == "user_not_found"
    d = await emu.agents.open_app_home("U_ALICE", "home")
    assert d.payload["event"]["tab"] == "home" and len(d.payload["event"]["view"]["blocks"]) == 100
    assert len(emu.agents.home_view("U_ALICE")["blocks"]) == 100
    emu.agents.home_tab_enabled = False
    e = await api_error(client.views_publish(user_id="U_ALICE", view={"type": "home", "blocks": []}))
    assert e.response["error"] == "not_enabled"


async def test_task_cards_move_forward_only(emu, client):
    thread = await _mention(emu)
    args = {"channel": "C_GENERAL", "recipient_team_id": "T0001", "recipient_user_id": "U_ALICE"}
    search = {"type": "task_update", "id": "search", "title": "Searching the web"}
    ts = (await client.chat_startStream(**args, thread_ts=thread, task_display_mode="plan", chunks=[
        {"type": "plan_update", "title": "Answering"}, {**search, "status": "pending"}]))["ts"]
    await client.chat_appendStream(channel="C_GENERAL", ts=ts, chunks=[{**search, "status": "in_progress",
                                                                         "details": "query: launch"}])
    sources = [{"type": "url", "url": "https://example.com/a", "text": "Example"}]
    await client.chat_appendStream(channel="C_GENERAL", ts=ts, chunks=[{**search, "status": "complete", "sources": sources}])
    stream = emu.stream("C_GENERAL", ts)
    assert stream.tasks["search"]["status"] == "complete" and stream.tasks["search"]["sources"] == sources
    assert [t["status"] for t in stream.task_history] == ["pending", "in_progress", "complete"]
    assert stream.plan_title == "Answering" and stream.markdown == "", "task cards never enter the text"
    code = {"type": "task_update", "id": "code", "title": "Running code"}
    await client.chat_appendStream(channel="C_GENERAL", ts=ts, chunks=[{**code, "status": "in_progress"}])
    for chunk in ({**code, "status": "pending"},  # backwards
                  {**search, "status": "error"},  # a finished task takes no more updates
                  {**code, "status": "complete", "sources": [{"type": "url", "url": ""}]},
                  {**code, "status": "complete", "details": 3}):
        e = await api_error(client.chat_appendStream(channel="C_GENERAL", ts=ts, chunks=[chunk]))
        assert e.response["error"] == "invalid_chunks"
    await client.chat_stopStream(channel="C_GENERAL", ts=ts, chunks=[{**code, "status": "error", "output": "timeout"}])
    assert stream.tasks["code"] == {"id": "code", "title": "Running code", "status": "error", "output": "timeout"}


async def test_feedback_buttons_and_the_click(emu, client, receiver):
    thread = await _dm(emu)
    ts = (await client.chat_startStream(channel="D_ALICE", thread_ts=thread, markdown_text="Answer"))["ts"]
    half = {**FEEDBACK_BLOCK, "elements": [{k: v for k, v in FEEDBACK_BLOCK["elements"][0].items()
                                            if k != "negative_button"}]}
    misplaced = {"type": "actions", "elements": FEEDBACK_BLOCK["elements"]}
    for blocks in ([half], [misplaced], [{**FEEDBACK_BLOCK, "elements": FEEDBACK_BLOCK["elements"] * 6}]):
        e = await api_error(client.chat_stopStream(channel="D_ALICE", ts=ts, blocks=blocks))
        assert e.response["error"] == "invalid_blocks"
    await client.chat_stopStream(channel="D_ALICE", ts=ts, blocks=[FEEDBACK_BLOCK])
    answer = emu.bot_messages("D_ALICE")[0]
    d = await emu.agents.click_feedback(answer, "negative", user="U_ALICE")
    payload = json.loads(receiver.requests[-1]["form"]["payload"])
    assert d.status == 200 and payload["type"] == "block_actions" and payload["message"]["ts"] == answer.ts
    action = payload["actions"][0]
    assert (action["type"], action["action_id"], action["block_id"], action["value"]) == \
        ("feedback_buttons", "fb", "fb-block", "bad")


async def test_message_shortcut(emu, receiver):
    msg = (await emu.user_message("C_GENERAL", "the launch moves to Friday", user="U_BOB", deliver=False)).message
    emu.agents.declare_shortcuts(["ask_gemini", "summarize_thread"])
    d = await emu.agents.message_shortcut(msg, "ask_gemini", user="U_ALICE")
    payload = json.loads(receiver.requests[-1]["form"]["payload"])
    assert d.status == 200 and payload["type"] == "message_action" and payload["callback_id"] == "ask_gemini"
    assert (payload["message_ts"], payload["message"]["text"], payload["channel"]["id"], payload["user"]["id"]) == \
        (msg.ts, "the launch moves to Friday", "C_GENERAL", "U_ALICE")
    assert payload["trigger_id"] and payload["response_url"].startswith(emu.base_url)
    assert "thread_ts" not in payload["message"], "a message without replies is no thread's parent"
    await emu.user_message("C_GENERAL", "Friday works", user="U_CAROL", thread_ts=msg.ts, deliver=False)
    await emu.agents.message_shortcut(msg, "summarize_thread", user="U_ALICE")
    parent = json.loads(receiver.requests[-1]["form"]["payload"])["message"]
    assert (parent["thread_ts"], parent["reply_count"]) == (msg.ts, 1), "a parent says it has a thread, as Slack's"
    with pytest.raises(ValueError):
        await emu.agents.message_shortcut(msg, "not_declared")
    with pytest.raises(ValueError):
        emu.agents.declare_shortcuts([f"s{i}" for i in range(6)])


async def test_agent_methods_have_their_tiers(emu, client):
    ts = await _dm(emu)
    for _ in range(50):  # Tier 3 (the lower of the two published tiers)
        await client.assistant_threads_setTitle(channel_id="D_ALICE", thread_ts=ts, title="x")
    e = await api_error(client.assistant_threads_setTitle(channel_id="D_ALICE", thread_ts=ts, title="x"))
    assert e.response.status_code == 429
    await client.agents_sessions_setStatus(channel_id="D_ALICE", thread_ts=ts, status="active")  # its own bucket


# ------------------------------------------------ workspace knowledge (issue 20)


async def _token_of(emu, user="U_ALICE", channel="C_GENERAL") -> str:
    """The action_token Slack hands the app with a person's mention."""
    d = await emu.user_message(channel, "<@UBOT> what did we decide?", user=user)
    return next(x.payload["event"]["action_token"] for x in d.all if x.payload["event"]["type"] == "app_mention")


async def test_action_token_rides_on_mentions_and_dms(emu, receiver):
    d = await emu.user_message("C_GENERAL", "<@UBOT> search please")
    tokens = {x.payload["event"]["type"]: x.payload["event"].get("action_token") for x in d.all}
    assert tokens["app_mention"] and tokens["message"] == tokens["app_mention"]
    plain = await emu.user_message("C_GENERAL", "no mention here")
    assert "action_token" not in plain.payload["event"]
    assert (await emu.user_message("D_ALICE", "hello")).payload["event"]["action_token"]


async def test_search_sees_what_the_asker_may_see(emu, client):
    emu.add_channel("C_SECRET", "secret", {"U_ALICE", "U_BOB", "UBOT"}, private=True)
    bob_public = (await emu.user_message("C_RANDOM", "the launch is on Friday", user="U_BOB", deliver=False)).message
    await emu.user_message("C_SECRET", "launch codename is Falcon", user="U_BOB", deliver=False)
    alice = await _token_of(emu, "U_ALICE")
    res = await client.assistant_search_context(query="launch", action_token=alice)
    # Public channels whether or not she (or the bot) is in them; the private one not unless asked for.
    assert [(m["channel_id"], m["content"]) for m in res["results"]["messages"]] == [("C_RANDOM", "the launch is on Friday")]
    hit = res["results"]["messages"][0]
    assert (hit["author_user_id"], hit["message_ts"], hit["is_author_bot"]) == ("U_BOB", bob_public.ts, False)
    assert hit["permalink"] == (await client.chat_getPermalink(channel="C_RANDOM", message_ts=bob_public.ts))["permalink"]
    assert hit["permalink"] == f"{emu.base_url}/archives/C_RANDOM/p{bob_public.ts.replace('.', '')}"
    e = await api_error(client.assistant_search_context(query="launch", action_token=alice,
                                                        channel_types=["private_channel"]))
    assert (e.response["error"], e.response["needed"]) == ("missing_scope", "search:read.private")
    emu.scopes.add("search:read.private")  # a user-token scope; granted here to test membership
    res = await client.assistant_search_context(query="launch", action_token=alice,
                                                channel_types=["public_channel", "private_channel"], sort="timestamp")
    assert [m["channel_id"] for m in res["results"]["messages"]] == ["C_SECRET", "C_RANDOM"]
    carol = await _token_of(emu, "U_CAROL")
    res = await client.assistant_search_context(query="launch", action_token=carol,
                                                channel_types=["public_channel", "private_channel"])
    assert [m["channel_id"] for m in res["results"]["messages"]] == ["C_RANDOM"], "Carol is not in #secret"
    for token in (None, "forged", alice + "x"):
        e = await api_error(client.assistant_search_context(query="launch", action_token=token))
        assert e.response["error"] == "invalid_action_token"
    emu.add_user("U_GUEST", "guest", "Gus Guest", guest="single")
    emu.channels["C_GENERAL"].members.add("U_GUEST")
    e = await api_error(client.assistant_search_context(query="launch", action_token=await _token_of(emu, "U_GUEST")))
    assert e.response["error"] == "access_denied"


async def test_search_pages_times_words_and_rate_limits(emu, client):
    emu.rate_limits = False
    old = [(await emu.user_message("C_GENERAL", f"billing report {i}", user="U_BOB", deliver=False)).message
           for i in range(25)]
    await emu.user_message("C_GENERAL", "billing only", user="U_BOB", deliver=False)
    await client.chat_postMessage(channel="C_GENERAL", text="billing report by the bot")
    token = await _token_of(emu)
    page1 = await client.assistant_search_context(query="Billing REPORT", action_token=token, limit=50)
    assert len(page1["results"]["messages"]) == 20 and page1["response_metadata"]["next_cursor"]
    page2 = await client.assistant_search_context(query="billing report", action_token=token,
                                                  cursor=page1["response_metadata"]["next_cursor"])
    assert len(page2["results"]["messages"]) == 5 and page2["response_metadata"]["next_cursor"] == ""
    assert {m["message_ts"] for m in page1["results"]["messages"] + page2["results"]["messages"]} == {m.ts for m in old}
    window = await client.assistant_search_context(query="billing report", action_token=token,
                                                   after=int(float(old[0].ts)) - 1, before=float(old[3].ts))
    assert {m["message_ts"] for m in window["results"]["messages"]} == {m.ts for m in old[:3]}
    bots = await client.assistant_search_context(query="bot", action_token=token, include_bots=True)
    assert [m["is_author_bot"] for m in bots["results"]["messages"]] == [True]
    emu.search.ai_search_enabled = True  # semantic search: any word is a hit, the best match first
    res = await client.assistant_search_context(query="billing only please", action_token=token)
    assert res["results"]["messages"][0]["content"] == "billing only"
    assert (await client.assistant_search_info())["is_ai_search_enabled"] is True

    emu.rate_limits = True  # 10 a minute per person, each page counts
    emu.set_rate_limit("assistant.search.context", 400, 400)  # a large team: the workspace limit is not the bind
    for _ in range(10):
        await client.assistant_search_context(query="billing", action_token=token)
    e = await api_error(client.assistant_search_context(query="billing", action_token=token))
    assert e.response.status_code == 429 and int(e.response.headers["Retry-After"]) >= 1
    await client.assistant_search_context(query="billing", action_token=await _token_of(emu, "U_BOB"))


async def test_history_is_one_call_a_minute_and_fifteen_messages(emu, client):
    emu.rate_limits = False
    posted = [(await emu.user_message("C_GENERAL", f"m{i}", deliver=False)).message.ts for i in range(20)]
    await emu.user_message("C_GENERAL", "a reply", thread_ts=posted[0], deliver=False)
    page1 = await client.conversations_history(channel="C_GENERAL", limit=100)
    assert [m["ts"] for m in page1["messages"]] == posted[::-1][:15] and page1["has_more"]
    page2 = await client.conversations_history(channel="C_GENERAL", cursor=page1["response_metadata"]["next_cursor"])
    assert [m["ts"] for m in page2["messages"]] == posted[::-1][15:], "replies stay in their thread"
    assert page2["messages"][-1]["reply_count"] == 1
    since = await client.conversations_history(channel="C_GENERAL", oldest=posted[17])
    assert [m["ts"] for m in since["messages"]] == posted[:17:-1]
    assert (await api_error(client.conversations_history(channel="C_RANDOM"))).response["error"] == "not_in_channel"
    emu.rate_limits = True
    await client.conversations_history(channel="C_GENERAL")
    e = await api_error(client.conversations_history(channel="C_GENERAL"))
    assert e.response.status_code == 429 and int(e.response.headers["Retry-After"]) >= 59


async def test_people_groups_and_membership(emu, client):
    alice = (await client.users_info(user="U_ALICE"))["user"]
    assert (alice["profile"]["title"], alice["tz"]) == ("Product Manager", "Europe/Berlin")
    assert alice["tz_offset"] in (3600, 7200) and not alice["is_restricted"]
    emu.add_user("U_GUEST", "gus", "Gus Guest", guest="single")
    emu.add_user("U_MULTI", "mo", "Mo Multi", guest="multi")
    guest, multi = [(await client.users_info(user=u))["user"] for u in ("U_GUEST", "U_MULTI")]
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, True)
    assert (multi["is_restricted"], multi["is_ultra_restricted"]) == (True, False)

    emu.add_channel("C_PRIV", "priv", {"U_ALICE", "UBOT"}, private=True)
    emu.add_channel("C_HIDDEN", "hidden", {"U_BOB"}, private=True)
    emu.add_channel("G_MPIM", "mpdm-alice--bob--carol", {"U_ALICE", "U_BOB", "U_CAROL", "UBOT"}, mpim=True)
    kinds = {c: (await client.conversations_info(channel=c))["channel"]
             for c in ("C_PRIV", "G_MPIM", "D_ALICE", "C_GENERAL")}
    assert [(k["is_private"], k["is_mpim"], k["is_im"]) for k in kinds.values()] == [
        (True, False, False), (True, True, False), (True, False, True), (False, False, False)]
    assert (await api_error(client.conversations_info(channel="C_HIDDEN"))).response["error"] == "channel_not_found"
    members = await client.conversations_members(channel="C_GENERAL", limit=2)
    rest = await client.conversations_members(channel="C_GENERAL", cursor=members["response_metadata"]["next_cursor"])
    assert sorted(members["members"] + rest["members"]) == sorted(emu.channels["C_GENERAL"].members)

    emu.directory.add_usergroup("S_ONCALL", "oncall", "On-call", ["U_ALICE", "U_BOB"])
    emu.directory.add_usergroup("S_OLD", "old", "Old team", ["U_CAROL"], disabled=True)
    groups = (await client.usergroups_list(include_users=True))["usergroups"]
    assert [(g["id"], g["handle"], g["users"], g["user_count"]) for g in groups] == [
        ("S_ONCALL", "oncall", ["U_ALICE", "U_BOB"], 2)]
    assert len((await client.usergroups_list(include_disabled=True))["usergroups"]) == 2
    assert (await client.usergroups_users_list(usergroup="S_ONCALL"))["users"] == ["U_ALICE", "U_BOB"]
    e = await api_error(client.usergroups_users_list(usergroup="S_OLD"))
    assert e.response["error"] == "no_such_subteam"
    d = await emu.directory.set_usergroup_users("S_ONCALL", ["U_BOB", "U_CAROL"])
    event = d.payload["event"]
    assert (event["type"], event["added_users"], event["removed_users"]) == \
        ("subteam_members_changed", ["U_CAROL"], ["U_ALICE"])


# ------------------------------------------------ canvases (issue 22)


async def test_canvases_and_the_free_plans_rules(emu, client):
    doc = {"type": "markdown", "markdown": "# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |"}
    standalone = await client.canvases_create(title="Report", document_content=doc)
    assert emu.canvases.canvas(standalone["canvas_id"])["markdown"] == doc["markdown"]
    tab = await client.conversations_canvases_create(channel_id="C_GENERAL", document_content=doc)
    assert emu.canvases.channel_canvas("C_GENERAL")["id"] == tab["canvas_id"]
    info = (await client.conversations_info(channel="C_GENERAL"))["channel"]
    assert info["properties"]["canvas"]["file_id"] == tab["canvas_id"]
    e = await api_error(client.conversations_canvases_create(channel_id="C_GENERAL", document_content=doc))
    assert e.response["error"] == "channel_canvas_already_exists"
    for kwargs, error in (({"channel_id": "C_RANDOM"}, "restricted_action"),  # the bot is not in #random
                          ({"channel_id": "C_GENERAL", "document_content": {"type": "html"}}, "invalid_arguments")):
        e = await api_error(client.api_call("conversations.canvases.create", json=kwargs))
        assert e.response["error"] == error
    e = await api_error(client.canvases_create(document_content={"type": "markdown", "markdown": "x" * 1_048_577}))
    assert e.response["error"] == "canvas_creation_failed"

    emu.workspaces["T0001"].plan = "free"
    e = await api_error(client.canvases_create(title="Report", document_content=doc))
    assert e.response["error"] == "free_teams_cannot_create_non_tabbed_canvases"
    emu.add_channel("C_NEW", "new", {"U_ALICE", "UBOT"})
    await client.canvases_create(title="Report", document_content=doc, channel_id="C_NEW")  # one tab: allowed
    e = await api_error(client.conversations_canvases_create(channel_id="C_NEW", document_content=doc))
    assert e.response["error"] == "free_team_canvas_tab_already_exists"
    emu.scopes.discard("canvases:write")
    e = await api_error(client.canvases_create(title="Report", document_content=doc, channel_id="C_GENERAL"))
    assert (e.response["error"], e.response["needed"]) == ("missing_scope", "canvases:write")


# ------------------------------------------------ deletions (issue 24)


async def test_people_deleting_messages_send_deletes_and_tombstones(emu, client, receiver):
    lone = (await emu.user_message("C_GENERAL", "oops", deliver=False)).message
    [d] = await emu.user_deletes("C_GENERAL", lone.ts)
    event = d.payload["event"]
    assert (event["subtype"], event["deleted_ts"], event["hidden"]) == ("message_deleted", lone.ts, True)
    assert event["previous_message"]["text"] == "oops" and emu.messages("C_GENERAL") == []

    parent = (await emu.user_message("C_GENERAL", "<@UBOT> question", deliver=False)).message
    answer = (await client.chat_postMessage(channel="C_GENERAL", thread_ts=parent.ts, text="answer"))["ts"]
    reply = (await emu.user_message("C_GENERAL", "thanks", thread_ts=parent.ts, deliver=False)).message
    with pytest.raises(ValueError):
        await emu.user_deletes("C_GENERAL", parent.ts, user="U_BOB")  # not Bob's message
    [tomb] = await emu.user_deletes("C_GENERAL", parent.ts)
    changed = tomb.payload["event"]
    assert (changed["subtype"], changed["message"]["subtype"], changed["message"]["ts"]) == \
        ("message_changed", "tombstone", parent.ts)
    assert changed["message"]["text"] == "This message was deleted." and changed["message"]["reply_count"] == 2
    assert changed["previous_message"]["text"] == "<@UBOT> question"
    thread = await client.conversations_replies(channel="C_GENERAL", ts=parent.ts)
    assert [m.get("subtype") for m in thread["messages"]] == ["tombstone", None, None]

    emu.users["U_CAROL"].is_admin = True  # an admin may delete anyone's message
    deleted, parent_changed = await emu.user_deletes("C_GENERAL", reply.ts, user="U_CAROL")
    assert deleted.payload["event"]["previous_message"]["thread_ts"] == parent.ts
    assert parent_changed.payload["event"]["message"]["reply_count"] == 1
    await client.chat_delete(channel="C_GENERAL", ts=answer)  # the last reply: the tombstone goes too
    assert emu.messages("C_GENERAL") == []



# ------------------------------------------------ installs (issue 23)


async def _add_to_slack(emu, target: str, *, user="U_ALICE", state="s-1", **params) -> dict:
    """Walk the consent page as a browser would: GET it, press Allow, read where Slack redirects."""
    query = {"client_id": emu.oauth.client_id, "scope": "chat:write,app_mentions:read,channels:history",
             "state": state, "redirect_uri": "https://bot.example/slack/oauth_redirect", **params}
    async with aiohttp.ClientSession() as http:
        async with http.get(emu.oauth.authorize_url(**query)) as page:
            assert page.status == 200 and 'name="target"' in await page.text()
        form = {**query, "target": target, "user": user, "decision": "allow"}
        async with http.post(f"{emu.base_url}/oauth/v2/authorize", data=form, allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
    back, _, qs = location.partition("?")
    assert back == query["redirect_uri"]
    return {k: v[0] for k, v in parse_qs(qs).items()}


async def _exchange(emu, code: str, **kwargs):
    oauth = AsyncWebClient(base_url=emu.api_url)  # no token: the app authenticates as itself
    return await oauth.oauth_v2_access(client_id=emu.oauth.client_id, client_secret=emu.oauth.client_secret,
                                       code=code, redirect_uri="https://bot.example/slack/oauth_redirect", **kwargs)


async def test_add_to_slack_installs_a_second_workspace(emu, receiver):
    emu.add_workspace("T0002", "Second Team")
    emu.add_channel("C2_GENERAL", "general", {"U_DAN"}, team="T0002")
    emu.add_user("U_DAN", "dan", "Dan Dune", team="T0002")
    back = await _add_to_slack(emu, "T0002", user="U_DAN")
    assert back["state"] == "s-1"
    res = await _exchange(emu, back["code"])
    assert (res["team"], res["enterprise"], res["is_enterprise_install"]) == \
        ({"id": "T0002", "name": "Second Team"}, None, False)
    assert res["token_type"] == "bot" and res["authed_user"]["id"] == "U_DAN" and "refresh_token" not in res
    second = AsyncWebClient(token=res["access_token"], base_url=emu.api_url)
    who = await second.auth_test()
    assert (who["team_id"], who["user_id"], who["bot_id"]) == ("T0002", res["bot_user_id"], "B0002")
    e = await api_error(second.chat_postMessage(channel="C_GENERAL", text="hi"))
    assert e.response["error"] == "channel_not_found", "another workspace's channels do not exist for it"
    emu.channels["C2_GENERAL"].members.add(res["bot_user_id"])
    await second.chat_postMessage(channel="C2_GENERAL", text="hello, second team")
    d = await emu.user_message("C2_GENERAL", f"<@{res['bot_user_id']}> hi", user="U_DAN")
    assert len(d.all) == 2 and d.payload["team_id"] == "T0002"
    assert d.payload["authorizations"][0] == {"enterprise_id": None, "team_id": "T0002", "user_id": res["bot_user_id"],
                                              "is_bot": True, "is_enterprise_install": False}
    assert emu.calls_to("chat.postMessage")[-1].team == "T0002"
    # The first workspace's token still answers for the first workspace only.
    assert (await AsyncWebClient(token=TOKEN, base_url=emu.api_url).auth_test())["team_id"] == "T0001"

    e = await api_error(_exchange(emu, back["code"]))
    assert e.response["error"] == "invalid_code", "a code is single-use"
    code = (await _add_to_slack(emu, "T0002"))["code"]
    e = await api_error(AsyncWebClient(base_url=emu.api_url).oauth_v2_access(
        client_id=emu.oauth.client_id, client_secret="wrong", code=code))
    assert e.response["error"] == "bad_client_secret"
    e = await api_error(AsyncWebClient(base_url=emu.api_url).oauth_v2_access(
        client_id=emu.oauth.client_id, client_secret=emu.oauth.client_secret, code=code, redirect_uri="https://evil"))
    assert e.response["error"] == "bad_redirect_uri"


async def test_consent_page_errors_and_cancel(emu):
    emu.oauth.redirect_urls = ["https://bot.example/slack/oauth_redirect"]
    async with aiohttp.ClientSession() as http:
        for query in ({"client_id": "nope", "scope": "chat:write"},
                      {"client_id": emu.oauth.client_id, "scope": "chat:write", "redirect_uri": "https://evil/cb"}):
            async with http.get(emu.oauth.authorize_url(**query)) as page:
                assert page.status == 400
        query = {"client_id": emu.oauth.client_id, "scope": "chat:write", "state": "abc"}
        form = {**query, "target": "T0001", "user": "U_ALICE", "decision": "deny"}
        async with http.post(f"{emu.base_url}/oauth/v2/authorize", data=form, allow_redirects=False) as r:
            assert r.headers["Location"] == "https://bot.example/slack/oauth_redirect?error=access_denied&state=abc"


async def test_token_rotation_and_the_refresh_grant(emu):
    emu.oauth.token_rotation, emu.oauth.token_expiry_seconds = True, 0.5
    emu.add_workspace("T0002", "Second Team")
    res = await _exchange(emu, (await _add_to_slack(emu, "T0002"))["code"])
    assert res["access_token"].startswith("xoxe.xoxb-") and res["refresh_token"].startswith("xoxe-1-")
    assert res["expires_in"] == 0
    await emu.wait_for(lambda: time.time() >= emu.tokens[res["access_token"]].expires)
    old = AsyncWebClient(token=res["access_token"], base_url=emu.api_url)
    assert (await api_error(old.auth_test())).response["error"] == "token_expired"
    emu.oauth.token_expiry_seconds = 3600
    oauth = AsyncWebClient(base_url=emu.api_url)
    fresh = await oauth.oauth_v2_access(client_id=emu.oauth.client_id, client_secret=emu.oauth.client_secret,
                                        grant_type="refresh_token", refresh_token=res["refresh_token"])
    assert fresh["team"]["id"] == "T0002" and fresh["refresh_token"] != res["refresh_token"]
    assert fresh["expires_in"] == 3600 and fresh["bot_user_id"] == res["bot_user_id"]
    assert (await AsyncWebClient(token=fresh["access_token"], base_url=emu.api_url).auth_test())["team_id"] == "T0002"
    e = await api_error(oauth.oauth_v2_access(client_id=emu.oauth.client_id, client_secret=emu.oauth.client_secret,
                                              grant_type="refresh_token", refresh_token=res["refresh_token"]))
    assert e.response["error"] == "invalid_refresh_token", "a refresh token is spent once used"


async def test_org_wide_install_serves_every_workspace_of_the_org(emu, client):
    emu.oauth.org_deploy_enabled = True
    for team in ("T0101", "T0102"):
        emu.add_workspace(team, f"Acme {team}", enterprise_id="E0100", enterprise_name="Acme Corp")
    res = await _exchange(emu, (await _add_to_slack(emu, "E0100"))["code"])
    assert (res["team"], res["enterprise"], res["is_enterprise_install"]) == \
        (None, {"id": "E0100", "name": "Acme Corp"}, True)
    org = AsyncWebClient(token=res["access_token"], base_url=emu.api_url)
    who = await org.auth_test()
    assert (who["enterprise_id"], who["is_enterprise_install"], who["user_id"]) == ("E0100", True, res["bot_user_id"])
    for team in ("T0101", "T0102"):
        emu.add_channel(f"C_{team}", "general", {"U_ALICE", res["bot_user_id"]}, team=team)
        await org.chat_postMessage(channel=f"C_{team}", text="one bot for the whole org")
        d = await emu.user_message(f"C_{team}", f"<@{res['bot_user_id']}> hi")
        assert (d.payload["team_id"], d.payload["enterprise_id"]) == (team, "E0100")
        assert d.payload["authorizations"][0] == {"enterprise_id": "E0100", "team_id": None, "user_id": res["bot_user_id"],
                                                  "is_bot": True, "is_enterprise_install": True}
    assert (await api_error(org.chat_postMessage(channel="C_GENERAL", text="x"))).response["error"] == "channel_not_found"


async def test_uninstall_revokes_and_tells_the_app(emu, receiver):
    emu.add_workspace("T0002", "Second Team")
    res = await _exchange(emu, (await _add_to_slack(emu, "T0002", user_scope="search:read.private"))["code"])
    assert res["authed_user"]["access_token"].startswith("xoxp-")
    deliveries = await emu.oauth.uninstall("T0002")
    events = [d.payload["event"] for d in deliveries]
    assert [e["type"] for e in events] == ["tokens_revoked", "app_uninstalled"]
    assert events[0]["tokens"] == {"oauth": ["U_ALICE"], "bot": [res["bot_user_id"]]}
    assert all(d.status == 200 and d.payload["team_id"] == "T0002" for d in deliveries)
    for token in (res["access_token"], res["authed_user"]["access_token"]):
        e = await api_error(AsyncWebClient(token=token, base_url=emu.api_url).auth_test())
        assert e.response["error"] == "token_revoked"
    assert (await emu.user_message("C_GENERAL", "<@UBOT> still here?")).status == 200  # the first workspace keeps it
    with pytest.raises(LookupError):
        await emu.oauth.uninstall("T0002")


async def test_control_endpoints_for_the_new_workspace_actions(emu, receiver):
    """What the sandbox page drives: open the app, look at a channel, delete, change a group, uninstall."""
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        async def post(path: str, body: dict) -> dict:
            async with http.post(path, json=body) as r:
                assert r.status == 200, await r.text()
                return await r.json()
        assert (await post("/_emu/app_home", {"user": "U_ALICE", "tab": "messages"}))["delivery"]["status"] == 200
        assert (await post("/_emu/app_context", {"user": "U_ALICE", "channel": "C_GENERAL"}))["delivery"]["status"] == 200
        sent = await post("/_emu/user_message", {"channel": "C_GENERAL", "text": "typo"})
        deleted = await post("/_emu/delete", {"channel": "C_GENERAL", "ts": sent["message"]["ts"]})
        assert [d["status"] for d in deleted["deliveries"]] == [200]
        await post("/_emu/usergroup", {"id": "S1", "users": ["U_ALICE"]})
        assert (await post("/_emu/usergroup", {"id": "S1", "users": ["U_BOB"]}))["delivery"]["status"] == 200
        gone = await post("/_emu/uninstall", {"target": "T0001"})
        assert len(gone["deliveries"]) == 2
    kinds = [e["event"]["type"] for e in receiver.events()]
    assert kinds[:3] == ["app_home_opened", "app_context_changed", "message"]
    assert kinds[-3:] == ["subteam_members_changed", "tokens_revoked", "app_uninstalled"]
    assert "message" in kinds and any(e["event"].get("subtype") == "message_deleted" for e in receiver.events())


# ------------------------------------------------ modals (issue 22's Edit plan)


async def test_views_open_takes_a_single_use_trigger_once(emu, client):
    emu.views.issue_trigger("T.1.emu", "U_ALICE")
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Edit"}, "callback_id": "cb",
             "blocks": [{"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "Plan"},
                         "element": {"type": "plain_text_input", "action_id": "a"}}]}
    opened = (await client.views_open(trigger_id="T.1.emu", view=modal))["view"]
    assert opened["user"] == "U_ALICE" and emu.views.opened == [opened]
    for trigger, error in (("T.1.emu", "invalid_trigger_id"), ("T.never", "invalid_trigger_id")):
        e = await api_error(client.views_open(trigger_id=trigger, view=modal))
        assert e.response["error"] == error
    emu.views.issue_trigger("T.2.emu", "U_ALICE")
    e = await api_error(client.views_open(trigger_id="T.2.emu", view={"type": "home"}))
    assert e.response["error"] == "invalid_arguments"


async def test_views_open_checks_the_modal_limits_and_submits_checkboxes(emu, client, receiver):
    """Issue 22.6's Research this thread modal: a question and checkboxes, within Slack's view limits."""
    box = {"type": "checkboxes", "action_id": "o",
           "options": [{"value": v, "text": {"type": "plain_text", "text": v.title()}} for v in ("now", "max")]}
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Research this thread"}, "callback_id": "cb",
             "private_metadata": "C_GENERAL 1.0",
             "blocks": [{"type": "input", "block_id": "q", "optional": True, "label": {"type": "plain_text", "text": "Q"},
                         "element": {"type": "plain_text_input", "action_id": "q", "max_length": 2000}},
                        {"type": "input", "block_id": "o", "label": {"type": "plain_text", "text": "Options"},
                         "element": box}]}
    too_long = {**modal, "title": {"type": "plain_text", "text": "A title longer than 24 chars"}}
    no_options = {**modal, "blocks": [{**modal["blocks"][1], "element": {**box, "options": []}}]}
    other = {**modal, "blocks": [{**modal["blocks"][1], "element": {"type": "datepicker", "action_id": "d"}}]}
    for bad in (too_long, no_options, other, {**modal, "private_metadata": "x" * 3001}):
        emu.views.issue_trigger("T.bad.emu", "U_ALICE")
        e = await api_error(client.views_open(trigger_id="T.bad.emu", view=bad))
        assert e.response["error"] == "invalid_arguments"
    emu.views.issue_trigger("T.ok.emu", "U_ALICE")
    opened = (await client.views_open(trigger_id="T.ok.emu", view=modal))["view"]
    await emu.views.submit(opened, {"o": ["max"]})
    [payload] = [json.loads(r["form"]["payload"]) for r in receiver.requests if "form" in r]
    values = payload["view"]["state"]["values"]
    assert values["q"]["q"] == {"type": "plain_text_input", "value": None}, "left empty, as Slack sends it"
    assert values["o"]["o"]["selected_options"] == [box["options"][1]]
    assert payload["view"]["private_metadata"] == "C_GENERAL 1.0"


# a page (the sandbox) draws open modals from the state and the feed, and submits or closes them by control
# endpoint: the app gets a signed view_submission, an "errors" ack keeps the modal open, an empty ack closes it
async def test_open_modals_are_state_and_submitted_or_closed_by_control_endpoints(emu, client, receiver):
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Edit"}, "callback_id": "cb",
             "notify_on_close": True,
             "blocks": [{"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "Plan"},
                         "element": {"type": "plain_text_input", "action_id": "a", "initial_value": "draft"}}]}
    emu.views.issue_trigger("T.3.emu", "U_BOB", "C_GENERAL")
    opened = (await client.views_open(trigger_id="T.3.emu", view=modal))["view"]
    assert emu.state()["views"]["open"] == [opened]
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        async def post(path: str, body: dict, status: int = 200) -> dict:
            async with http.post(path, json=body) as r:
                assert r.status == status, await r.text()
                return await r.json()
        receiver.reply = lambda req: web.json_response({"response_action": "errors", "errors": {"b": "Too short"}})
        kept = await post("/_emu/view_submission", {"view_id": opened["id"], "values": {"b": "x"}})
        assert kept["closed"] is False and kept["errors"] == {"b": "Too short"}
        sent = json.loads(receiver.requests[-1]["form"]["payload"])
        assert sent["type"] == "view_submission" and sent["user"]["id"] == "U_BOB"
        assert sent["view"]["state"]["values"] == {"b": {"a": {"type": "plain_text_input", "value": "x"}}}
        receiver.reply = lambda req: web.Response(status=200)
        done = await post("/_emu/view_submission", {"view_id": opened["id"], "values": {"b": "longer"}})
        assert done["closed"] is True and emu.state()["views"]["open"] == []
        await post("/_emu/view_submission", {"view_id": opened["id"], "values": {"b": "again"}}, status=400)

        emu.views.issue_trigger("T.4.emu", "U_BOB", "C_GENERAL")
        second = (await client.views_open(trigger_id="T.4.emu", view=modal))["view"]
        await post("/_emu/view_close", {"view_id": second["id"]})
        closed = json.loads(receiver.requests[-1]["form"]["payload"])
        assert closed["type"] == "view_closed" and closed["view"]["id"] == second["id"]
        assert emu.state()["views"]["open"] == []

        # checkboxes: the page sends the ticked options' values, the app gets the options as Slack sends them
        options = [{"value": v, "text": {"type": "plain_text", "text": v.title()}} for v in ("now", "max")]
        boxes = {**modal, "blocks": [{"type": "input", "block_id": "o", "optional": True,
                                      "label": {"type": "plain_text", "text": "Options"},
                                      "element": {"type": "checkboxes", "action_id": "o", "options": options}}]}
        emu.views.issue_trigger("T.5.emu", "U_BOB", "C_GENERAL")
        third = (await client.views_open(trigger_id="T.5.emu", view=boxes))["view"]
        await post("/_emu/view_submission", {"view_id": third["id"], "values": {"o": [1]}}, status=400)
        await post("/_emu/view_submission", {"view_id": third["id"], "values": {"o": ["now"]}})
        ticked = json.loads(receiver.requests[-1]["form"]["payload"])["view"]["state"]["values"]["o"]["o"]
        assert ticked == {"type": "checkboxes", "selected_options": [options[0]]}
