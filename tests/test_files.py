"""Files people share, end to end (issue 10): Slack emulator hosts the files and delivers `file_share`
events with the `files` array; the real bot downloads them over HTTP and sends them through the real
SDK; the Interactions emulator validates the content parts and answers with a sha256 digest of the
bytes each part carried, so the answer in Slack proves the exact bytes arrived.

Each test names the point of the issue it proves.
"""

from __future__ import annotations

import hashlib
import os

import redis.asyncio as aioredis

from conftest import BOT_TOKEN, eventually, start_bot, stop_bot
from test_chat import answered, head

from slackbot_emulators.slack import Message
from slackbot.files.kinds import FILES_ONLY

MENTION = "<@UBOT>"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
PDF = b"%PDF-1.7\n" + os.urandom(5000) + b"\n%%EOF\n"
LOG = b"12:00:01 GET /health 200\n12:00:02 POST /orders 500 request_id=r-77 NullPointerException\n"


def digest(data: bytes) -> str:
    return f"{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()}"


def input_parts(create: dict) -> list[dict]:
    """The content parts of a create's input, however the SDK put them on the wire (the SDK sends a
    list of parts as one `user_input` step)."""
    inp = create["input"]
    if isinstance(inp, str):
        return [{"type": "text", "text": inp}]
    return [p for item in inp for p in (item["content"] if "content" in item else [item])]


def file_parts(create: dict) -> list[dict]:
    return [p for p in input_parts(create) if p["type"] != "text"]


def dm_texts(slack_emu) -> list[str]:
    return [m.visible_text for m in slack_emu.bot_messages("D_ALICE")]


async def redis_values(redis_url: str, prefix: str) -> bytes:
    client = aioredis.from_url(redis_url)
    try:
        out = b""
        async for key in client.scan_iter(match=f"{prefix}:*"):
            kind = (await client.type(key)).decode()
            if kind == "string":
                out += await client.get(key) or b""
            elif kind == "hash":
                out += b"".join(k + v for k, v in (await client.hgetall(key)).items())
        return out
    finally:
        await client.aclose()


# 1 + 3 (nothing stored): a screenshot in a DM reaches Gemini as an `image` part, byte for byte
async def test_image_in_dm_reaches_gemini_exactly(bot, slack_emu, gemini_emu, redis_url, prefix):
    shot = slack_emu.host_file("screenshot.png", PNG, mimetype="image/png")
    shared = await slack_emu.user_shares("D_ALICE", "what's wrong here?", [shot])
    texts = await eventually(lambda: dm_texts(slack_emu), message="the DM answer")
    await eventually(lambda: digest(PNG) in dm_texts(slack_emu)[0], message="the digest in the answer")
    assert "image image/png" in texts[0] or "image image/png" in dm_texts(slack_emu)[0]
    create = gemini_emu.model_creates()[-1]
    assert input_parts(create)[0] == {"type": "text", "text": "what's wrong here?"}
    assert [(p["type"], p["mime_type"]) for p in file_parts(create)] == [("image", "image/png")]
    fetched = [r for r in slack_emu.file_requests if r["file"] == shot["id"]]
    assert len(fetched) == 1 and fetched[0]["authorized"] and "/download/" in fetched[0]["path"]
    # the app's Messages tab: the message starts a conversation of its own, chained under its ts
    await eventually(lambda: head(redis_url, prefix, "D_ALICE", shared.message.ts), message="chain head stored")
    stored = await redis_values(redis_url, prefix)
    assert PNG[8:40] not in stored and hashlib.sha256(PNG).hexdigest().encode() not in stored


# 1: a PDF dropped into a channel with a mention becomes a `document` part; answered once
async def test_pdf_in_mention_is_a_document_part(bot, slack_emu, gemini_emu):
    contract = slack_emu.host_file("contract.pdf", PDF, mimetype="application/pdf")
    delivery = await slack_emu.user_shares("C_GENERAL", f"{MENTION} summarise the termination clauses", [contract])
    assert {e.payload["event"]["type"] for e in delivery.all} == {"message", "app_mention"}
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", delivery.message.ts)
    assert f"document application/pdf {digest(PDF)}" in texts[0]
    assert len(gemini_emu.model_creates()) == 1
    assert file_parts(gemini_emu.model_creates()[0])[0]["mime_type"] == "application/pdf"


# 1: a log file in a thread reply is a text part headed by its name
async def test_log_file_in_thread_reply_is_a_text_part(bot, slack_emu, gemini_emu):
    first = await slack_emu.user_message("C_GENERAL", f"{MENTION} I have a failing service")
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    log_file = slack_emu.host_file("server.log", LOG, mimetype="text/plain")
    await slack_emu.user_shares("C_GENERAL", "which request failed?", [log_file], thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
    assert "request_id=r-77" in texts[1]
    parts = input_parts(gemini_emu.model_creates()[-1])
    assert [p["type"] for p in parts] == ["text", "text"]
    assert parts[1]["text"].startswith("Attached file “server.log”:") and LOG.decode() in parts[1]["text"]


# 1: a message that is only a file (no words) is a turn
async def test_file_only_message_is_a_turn(bot, slack_emu, gemini_emu):
    shot = slack_emu.host_file("Screenshot 2026-11-27.png", PNG, mimetype="image/png")
    delivery = await slack_emu.user_shares("D_ALICE", "", [shot])
    assert delivery.payload["event"]["subtype"] == "file_share" and delivery.payload["event"]["text"] == ""
    await eventually(lambda: dm_texts(slack_emu) and digest(PNG) in dm_texts(slack_emu)[0], message="answer")
    assert input_parts(gemini_emu.model_creates()[-1])[0] == {"type": "text", "text": FILES_ONLY}


# 4: the follow-up is answered from the chain: no second download, no second copy of the file
async def test_follow_up_uses_the_chain_without_download(bot, slack_emu, gemini_emu, redis_url, prefix):
    shot = slack_emu.host_file("dashboard.png", PNG, mimetype="image/png")
    first = await slack_emu.user_shares("C_GENERAL", f"{MENTION} what does this show?", [shot])
    root = first.message.ts
    await answered(slack_emu, gemini_emu, "C_GENERAL", root)
    first_head = await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root))
    await slack_emu.user_message("C_GENERAL", "and what does the bottom-left corner say?", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
    assert texts[1] == "Reply 2 to: and what does the bottom-left corner say?"
    follow_up = gemini_emu.model_creates()[-1]
    assert follow_up["previous_interaction_id"] == first_head
    assert follow_up["input"] == "and what does the bottom-left corner say?"  # no file part again
    assert len([r for r in slack_emu.file_requests if r["file"] == shot["id"]]) == 1


# 4 + 5: a mention in a people's thread rebuilds from Slack with the files people shared there,
# never the bot's own file
async def test_thread_rebuild_includes_peoples_files_not_the_bots(bot, slack_emu, gemini_emu):
    shot = slack_emu.host_file("error.png", PNG, mimetype="image/png", user="U_BOB")
    parent = await slack_emu.user_shares("C_GENERAL", "prod is down, see screenshot", [shot], user="U_BOB")
    root = parent.message.ts
    report = slack_emu.host_file("report.md", b"# An old report\n", mimetype="text/markdown", user="UBOT")
    slack_emu.channels["C_GENERAL"].messages.append(Message(
        slack_emu._next_ts(), "C_GENERAL", "UBOT", slack_emu.bot_id, "", thread_ts=root, subtype="file_share",
        files=[report]))
    mention = await slack_emu.user_message("C_GENERAL", f"{MENTION} what went wrong?", thread_ts=root)
    texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)  # the report's message + answer
    assert digest(PNG) in texts[-1]
    create = gemini_emu.model_creates()[-1]
    assert "previous_interaction_id" not in create
    assert [p["mime_type"] for p in file_parts(create)] == ["image/png"]
    assert "error.png" in input_parts(create)[0]["text"] and "report.md" not in input_parts(create)[0]["text"]
    assert not [r for r in slack_emu.file_requests if r["file"] == report["id"]]
    assert mention.message.ts != root


# 4: an expired chain is rebuilt from Slack, files in the thread included within the caps
async def test_expired_chain_rebuild_includes_thread_files(settings_for, slack_emu, gemini_emu, redis_url, prefix):
    bot = await start_bot(settings_for(replies_budget_per_minute=600), slack_emu)
    try:
        shot = slack_emu.host_file("chart.png", PNG, mimetype="image/png")
        first = await slack_emu.user_shares("C_GENERAL", f"{MENTION} read this chart", [shot])
        root = first.message.ts
        await answered(slack_emu, gemini_emu, "C_GENERAL", root)
        gemini_emu.forget(await eventually(lambda: head(redis_url, prefix, "C_GENERAL", root)))
        await slack_emu.user_message("C_GENERAL", "what was the peak?", thread_ts=root)
        texts = await answered(slack_emu, gemini_emu, "C_GENERAL", root, count=2)
        assert digest(PNG) in texts[1]
        assert "previous_interaction_id" not in gemini_emu.model_creates()[-1]
    finally:
        await stop_bot(bot)


# 3: too big, wrong type, unreachable (deleted, external) and over the count: one line each, answer still comes
async def test_unusable_files_are_skipped_with_one_line_each(settings_for, slack_emu, gemini_emu):
    bot = await start_bot(settings_for(file_max_bytes=4096, files_max_count=4), slack_emu)
    try:
        files = [
            slack_emu.host_file("notes.txt", b"keep this", mimetype="text/plain"),
            slack_emu.host_file("huge.png", os.urandom(10_000), mimetype="image/png"),  # Slack says 10 kB
            slack_emu.host_file("liar.png", os.urandom(10_000), mimetype="image/png", size=100),  # the stream cap
            slack_emu.host_file("<!channel>.zip", b"PK\x03\x04", mimetype="application/zip"),
            slack_emu.host_file("gone.pdf", PDF[:1000], mimetype="application/pdf", deleted=True),
            slack_emu.host_file("drive.pdf", PDF, mimetype="application/pdf", mode="external"),
            slack_emu.host_file("server.log", LOG, mimetype="text/plain"),
            slack_emu.host_file("late.txt", b"one too many", mimetype="text/plain"),
        ]
        await slack_emu.user_shares("D_ALICE", "look at these", files)
        texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "answered without" in t],
                                 message="answer with notes")
        answer = texts[0]
        assert answer.startswith("Reply 1 to: look at these")
        assert "keep this" in answer and "request_id=r-77" in answer  # readable files still went in
        assert "`huge.png` is over the 4 KB per-file limit" in answer
        assert "`liar.png` is over the 4 KB per-file limit" in answer
        assert "I can't read `&lt;!channel&gt;.zip` (`application/zip`)" in answer  # no markup from a name
        assert "I couldn't open `gone.pdf`" in answer and "I couldn't open `drive.pdf`" in answer
        assert "so I answered without `late.txt`" in answer
        assert answer.count("answered without") == 6
        notes = [line for line in answer.splitlines() if "answered without" in line]
        assert len(notes) == 6 and all(n.startswith("_") and n.endswith("_") for n in notes)  # one line each
        assert not [r for r in slack_emu.file_requests if r["file"] in (files[1]["id"], files[5]["id"])]
    finally:
        await stop_bot(bot)


# 2: without files:read Slack serves its sign-in page; the user is told in one line
async def test_sign_in_page_means_the_app_lacks_files_read(bot, slack_emu, gemini_emu):
    slack_emu.scopes.discard("files:read")
    shot = slack_emu.host_file("screenshot.png", PNG, mimetype="image/png")
    shared = await slack_emu.user_shares("D_ALICE", "what's wrong here?", [shot])
    texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "files:read" in t], message="the note")
    assert texts[0].startswith("Reply 1 to: what's wrong here?")
    assert "this app lacks the files:read permission" in texts[0]
    assert not file_parts(gemini_emu.model_creates()[-1]) and "<html" not in str(gemini_emu.model_creates()[-1])


# 2: the token goes only to Slack's file host: never along a redirect to another host, never to a
# file URL on another host; a redirect within the file host is followed
async def test_token_never_leaves_slack(bot, slack_emu, gemini_emu):
    target = slack_emu.host_file("real.png", PNG, mimetype="image/png")
    moved = slack_emu.host_file("moved.png", PNG, mimetype="image/png",
                                redirect_to=target["url_private"].replace("127.0.0.1", "localhost"))
    elsewhere = slack_emu.host_file("elsewhere.png", PNG, mimetype="image/png", extra={
        "url_private_download": target["url_private_download"].replace("127.0.0.1", "localhost"),
        "url_private": target["url_private"].replace("127.0.0.1", "localhost")})
    local = slack_emu.host_file("local.png", PNG, mimetype="image/png", redirect_to=target["url_private"])
    await slack_emu.user_shares("D_ALICE", "compare", [moved, elsewhere, local])
    texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "answered without" in t], message="notes")
    assert "I couldn't open `moved.png`" in texts[0] and "I couldn't open `elsewhere.png`" in texts[0]
    assert "`local.png`" not in texts[0] and texts[0].count(digest(PNG)) == 1  # followed within the host
    assert not [r for r in slack_emu.file_requests if r["host"].startswith("localhost")]
    for call in slack_emu.file_requests:
        assert BOT_TOKEN not in call["path"]


# issue 25.4: the token goes only to Slack's file paths: a "file" whose URL is a Web API method on
# SLACK_API_URL's origin (directly, by path traversal, encoded, with userinfo, or by a redirect) is never
# fetched with it, so the file cannot post as the bot or feed Gemini a users.info answer (every other
# variant: test_file_kinds.py)
async def test_token_goes_to_file_paths_only(bot, slack_emu, gemini_emu):
    api, base, team_file = slack_emu.api_url, slack_emu.base_url, f"{slack_emu.team_id}-F9"
    forged = {
        "post.txt": f"{api}chat.postMessage?channel=D_ALICE&text=posted-by-a-file",
        "whois.txt": f"{api}users.info?user=U_BOB",
        "up.txt": f"{base}/files-pri/{team_file}/../../api/users.info?user=U_BOB",
        "encoded.txt": f"{base}/files-pri/{team_file}/%2e%2e%2f%2e%2e%2fapi%2fusers.info?user=U_BOB",
        "at.txt": f"http://files@{base.removeprefix('http://')}/api/users.info?user=U_BOB",
    }
    files = [slack_emu.host_file(name, b"x", mimetype="text/plain", extra={"url_private_download": url,
                                                                         "url_private": url})
             for name, url in forged.items()]
    files.append(slack_emu.host_file("moved.txt", b"x", mimetype="text/plain",
                                     redirect_to=f"{api}chat.postMessage?channel=D_ALICE&text=posted-by-a-redirect"))
    real = slack_emu.host_file("real.txt", b"the real file's words", mimetype="text/plain")
    await slack_emu.user_shares("D_ALICE", "read these", [*files, real])
    texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "answered without" in t], message="notes")
    assert texts[0].startswith("Reply 1 to: read these") and "the real file's words" in texts[0]
    for name in [*forged, "moved.txt"]:
        assert texts[0].count(f"I couldn't open `{name}`") == 1, name
    assert not [c for c in slack_emu.calls if c.method in ("users.info", "chat.postMessage")
                and ("U_BOB" in str(c.params) or "posted-by" in str(c.params))]
    assert not [m for m in slack_emu.channels["D_ALICE"].messages if "posted-by" in m.text]
    sent = str(gemini_emu.model_creates())
    assert "real_name" not in sent and "Bob" not in sent and '"ok"' not in sent
    assert [r["file"] for r in slack_emu.file_requests] == [files[-1]["id"], real["id"]]  # the real paths only


# issue 25.6: a file's name is literal text in both renderers, never a link (nor a bare URL Slack links)
async def test_file_name_is_never_a_link(bot, slack_emu, gemini_emu):
    name = "[Reset your Slack password](https://evil.example/login).exe"
    trap = slack_emu.host_file(name, b"MZ\x90\x00", mimetype="application/octet-stream")
    await slack_emu.user_shares("D_ALICE", "is this safe?", [trap])
    texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "answered without" in t], message="the note")
    for msg in slack_emu.bot_messages("D_ALICE"):  # the markdown block and the mrkdwn fallback
        assert not [u for u in msg.links() if "evil.example" in u], msg.to_json()
    assert f"I can't read `{name}` (`application/octet-stream`), so I answered without it." in texts[0]


# issue 25.7: crafted file fields cost that file, not the turn: a size that is not a number, a
# 10,000-character name, no URL, ten 3,000-character MIME types; one short line each, collapsed
# into one note that fits the answer's single message
async def test_crafted_file_fields_skip_only_that_file(bot, slack_emu, gemini_emu):
    files = [slack_emu.host_file("count.txt", b"x", mimetype="text/plain", size="abc"),
             slack_emu.host_file("n" * 10_000 + ".txt", b"x", mimetype="text/plain"),
             slack_emu.host_file("nowhere.txt", b"x", mimetype="text/plain",
                                 extra={"url_private_download": None, "url_private": None})]
    files += [slack_emu.host_file(f"odd{i}.bin", b"x", mimetype="application/" + "x" * 3000) for i in range(10)]
    files.append(slack_emu.host_file("real.txt", b"the real file's words", mimetype="text/plain"))
    await slack_emu.user_shares("D_ALICE", "what are these?", files)
    texts = await eventually(lambda: [t for t in dm_texts(slack_emu) if "answered without" in t], message="notes")
    assert len(slack_emu.bot_messages("D_ALICE")) == 1
    answer = texts[0]
    assert answer.startswith("Reply 1 to: what are these?") and "the real file's words" in answer
    notes = [line for line in answer.splitlines() if "answered without" in line]
    assert notes == [
        "_Slack described `count.txt` in a way I can't read, so I answered without it._",
        f"_Slack described `{'n' * 59}…` in a way I can't read, so I answered without it._",
        "_I couldn't open `nowhere.txt` (it may be deleted, external or restricted), so I answered without it._",
        "_Slack described `odd0.bin` in a way I can't read, so I answered without it._",
        "_Slack described `odd1.bin` in a way I can't read, so I answered without it._",
        "_8 more files were skipped, so I answered without them._"]
    assert [r["file"] for r in slack_emu.file_requests] == [files[-1]["id"]]


# 5: the bot's own uploads (a research report's .md) are never fed back as input
async def test_bots_own_file_is_never_input(bot, slack_emu, gemini_emu):
    report = slack_emu.host_file("research-report.md", b"# Report\n", mimetype="text/markdown", user="UBOT")
    shot = slack_emu.host_file("mine.png", PNG, mimetype="image/png")
    await slack_emu.user_shares("D_ALICE", "thoughts?", [report, shot])  # e.g. shared on from the report thread
    await eventually(lambda: dm_texts(slack_emu) and digest(PNG) in dm_texts(slack_emu)[0], message="answer")
    assert [p["mime_type"] for p in file_parts(gemini_emu.model_creates()[-1])] == ["image/png"]
    assert "research-report.md" not in dm_texts(slack_emu)[0]  # ignored silently, not "skipped"
    assert not [r for r in slack_emu.file_requests if r["file"] == report["id"]]


# 6: the emulators know files ------------------------------------------------------------------------

# The Slack emulator serves url_private only to the bot token (with files:read); anyone else gets
# Slack's sign-in page, HTTP 200 text/html, as Slack does.
async def test_slack_emulator_serves_files_only_to_the_bot_token(slack_emu):
    import aiohttp

    f = slack_emu.host_file("a.pdf", PDF, mimetype="application/pdf")
    async with aiohttp.ClientSession() as http:
        async with http.get(f["url_private_download"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as resp:
            assert resp.status == 200 and resp.content_type == "application/pdf" and await resp.read() == PDF
        for headers in ({}, {"Authorization": "Bearer xoxb-someone-else"}):
            async with http.get(f["url_private"], headers=headers) as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                assert "Sign in" in await resp.text()
    assert [r["authorized"] for r in slack_emu.file_requests] == [True, False, False]


# The Interactions emulator checks content parts as the SDK defines them and says what it received.
async def test_gemini_emulator_validates_parts_and_digests_bytes(gemini_emu):
    import base64

    import pytest
    from google import genai
    from google.genai import types
    from google.genai._interactions import BadRequestError

    client = genai.Client(api_key="test", http_options=types.HttpOptions(
        base_url=gemini_emu.base_url, retry_options=types.HttpRetryOptions(attempts=1)))
    api = client.aio.interactions
    data = base64.b64encode(PNG).decode()
    done = await api.create(model="gemini-3-flash-preview", input=[
        {"type": "text", "text": "what is this?"}, {"type": "image", "mime_type": "image/png", "data": data}])
    assert gemini_emu.interaction(done.id)["media"] == [
        {"type": "image", "mime_type": "image/png", "bytes": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}]
    assert digest(PNG) in gemini_emu.interaction(done.id)["output_text"]
    bad = [{"type": "image", "mime_type": "application/zip", "data": data},  # not an image type of the SDK
           {"type": "document", "mime_type": "image/png", "data": data},  # an image type, not a document one
           {"type": "image", "mime_type": "image/png", "data": "not base64!"},
           {"type": "image", "mime_type": "image/png"},  # neither data nor uri
           {"type": "image", "mime_type": "image/png", "data": data, "uri": "gs://x"}]  # both
    for part in bad:
        with pytest.raises(BadRequestError):  # HTTP 400, as the SDK raises it
            await api.create(model="gemini-3-flash-preview", input=[{"type": "text", "text": "x"}, part])
