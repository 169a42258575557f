"""`slackbot sandbox`: the page in a real headless browser, driving the real bot through the emulators.

Every action on the page goes page -> sandbox server -> Slack emulator -> signed request -> real Bolt
app -> Gemini emulator, and comes back over the emulator's event feed; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from conftest import eventually, free_port, open_store

from slackbot.config import Settings
from slackbot_sandbox.server import run_sandbox

# scripts/system-packages installs Debian's chromium, or says what to install and exports the reason
# the browser test is skipped in SLACKBOT_SKIP_BROWSER; SLACKBOT_CHROMIUM names another browser binary.
CHROMIUM = os.environ.get("SLACKBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
QUESTION = "What changed in EU AI Act enforcement in 2026?"


def sandbox_settings(*, redis_url: str, prefix: str, **overrides) -> Settings:
    """Like conftest's bot_settings, but with no Slack or Gemini credentials: the sandbox brings its own."""
    values = dict(
        slack_bot_token="", slack_signing_secret="", slack_app_token="", gemini_api_key="", gemini_base_url="",
        use_enterprise=False, gemini_model="gemini-3-flash-preview", redis_url=redis_url, redis_prefix=prefix,
        host="127.0.0.1", port=free_port(), edit_min_interval=0.2, placeholder_after_seconds=1.0,
        gemini_retry_attempts=3, replies_wait_seconds=1.0, research_poll_initial=0.2, research_poll_max=0.5,
        research_status_every=0.3, research_lease_seconds=3.0, shutdown_grace_seconds=5.0, log_format="text",
        tools="", system_instruction="Be brief.",
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def live_page(base: str, timeout: int = 10_000):
    """The sandbox page in headless Chromium once its live connection is up: (page, errors the page threw)."""
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(base)
            expect.set_options(timeout=timeout)
            await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            yield page, errors
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def sandbox(settings: Settings):
    """run_sandbox in this test's event loop; yields the page's base URL, stops it cleanly afterwards."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_sandbox(settings, stop=stop, ready=ready))
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises why it stopped
    assert ready.is_set(), "the sandbox did not become ready in 20 s"
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def post_json(http: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def chromium_or_skip() -> None:
    if os.path.exists(CHROMIUM):
        return
    reason = os.environ.get("SLACKBOT_SKIP_BROWSER")
    if reason:
        pytest.skip(reason if reason != "1" else f"{CHROMIUM} is missing and SLACKBOT_SKIP_BROWSER is set")
    pytest.fail(f"{CHROMIUM} is missing: run scripts/test (it installs chromium, or says what to install and "
                "skips this test), or set SLACKBOT_CHROMIUM to a Chromium or Chrome binary")


GROWING = "Hello there. This answer grows as Gemini writes it, one sentence after another. The end."


async def test_sandbox_page_chat_thread_and_research_cancel(redis_url, prefix):
    chromium_or_skip()
    from playwright.async_api import expect

    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            info = await resp.json()
        assert info["gemini"] == "emulator" and info["redis"] == "url"
        gemini = info["gemini_emulator_url"]
        # slow enough to watch the first answer grow; a research run long enough to cancel
        await post_json(http, f"{gemini}/_emu/script", {"match": "hello", "text": GROWING, "chunk_chars": 4,
                                                          "chunk_delay": 0.1})
        await post_json(http, f"{gemini}/_emu/script_agent", {"run_for": 30})

        async with live_page(base) as (page, errors):
            # the header says what is real and what is emulated
            await expect(page.locator("#badge-gemini")).to_have_text("Gemini: emulator")
            await expect(page.locator("#badge-redis")).to_have_text(f"Redis: {redis_url}")
            await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            await expect(page.locator('#channel-list [data-channel="C_GENERAL"]')).to_have_attribute(
                "aria-current", "true")
            await expect(page.locator("#user-select")).to_have_value("U_ALICE")

            # a mention in #general: "@bot" becomes the <@UBOT> mention the bot reacts to
            await page.locator("#composer").fill("@bot hello")
            await page.locator("#composer").press("Enter")
            mine = page.locator('#messages .message.user[data-user="U_ALICE"]').first
            await expect(mine.locator(".text .mention")).to_have_text("@bot")
            await expect(mine.locator(".text")).to_have_text("@bot hello")

            # the answer goes into the message's thread; open it and watch the answer grow
            await page.locator("#messages .thread-link").first.click()
            await expect(page.locator("#thread-pane")).to_be_visible()
            answer = page.locator("#thread-messages .message.bot .text").first
            seen: list[str] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if await answer.count():
                    text = (await answer.text_content() or "").strip()
                    if not seen or seen[-1] != text:
                        seen.append(text)
                    if text == GROWING:
                        break
                await asyncio.sleep(0.03)
            assert seen and seen[-1] == GROWING, seen
            growth = [t for t in seen if t != "Thinking…"]
            assert len(growth) >= 2, f"expected the answer to grow as Gemini writes, saw {seen}"
            assert all(GROWING.startswith(t) for t in growth), seen

            # a reply in the thread (no mention needed) continues the conversation
            await page.locator("#thread-composer").fill("and again?")
            await page.locator("#thread-composer").press("Enter")
            await expect(page.locator("#thread-messages .message.bot .text")).to_have_text(
                [GROWING, "Reply 2 to: and again?"])
            await expect(page.locator("#messages .thread-link").first).to_have_text("3 replies")

            # /research in the composer is sent as a slash command: a status message with Cancel
            await page.locator("#composer").fill(f"/research {QUESTION}")
            await page.locator("#composer").press("Enter")
            status = page.locator("#messages .message.bot", has_text="Deep Research").first
            await expect(status.locator(".text")).to_contain_text(QUESTION)
            await expect(status.locator(".text")).to_contain_text("Researching")  # the job is saved and polled
            cancel = status.locator('.block-actions button[data-action-id="research_cancel"]')
            await expect(cancel).to_have_text("Cancel")
            await cancel.click()
            await expect(status.locator(".text")).to_contain_text("Cancelled", timeout=10_000)
            await expect(status.locator(".text")).to_contain_text("Cancelled by @alice")
            # the user's own choice, not a failure to retry "perhaps narrower"
            await expect(status.locator(".text")).not_to_contain_text("narrower")
            await expect(status.locator('button[data-action-id="research_cancel"]')).to_have_count(0)

            # a private reply ("only visible to you") shows as from the app, not as alice's own words
            await page.locator("#composer").fill("/research status")
            await page.locator("#composer").press("Enter")
            private = page.locator("#messages .message.ephemeral", has_text="research jobs").last
            await expect(private).to_contain_text("Only visible to you")
            await expect(private).to_have_attribute("data-user", info["bot_user_id"])
            await expect(private).to_have_class(re.compile(r"\bbot\b"))
            await expect(private.locator(".app-tag")).to_have_text("APP")
            await expect(private.locator(".meta .name")).not_to_have_text("Alice")
            await expect(private.locator(".avatar")).to_have_class(re.compile(r"\bbot\b"))

            # the picture: the channel with its answer thread open
            await page.locator("#messages .thread-link").first.click()
            await page.mouse.move(720, 880)  # no hover toolbar over a message
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "sandbox.png"))
            assert errors == [], errors

    # the sandbox deletes its own keys when it stops
    store = await open_store(redis_url, prefix)
    try:
        assert await store.prefix_keys() == []
    finally:
        await store.close()


async def test_sandbox_falls_back_to_embedded_store_and_answers():
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = sandbox_settings(redis_url=unreachable, prefix=f"slackbot-test-{secrets.token_hex(4)}")
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            info = await resp.json()
        assert info["redis"] == "embedded" and info["redis_label"] == "embedded"
        assert info["gemini"] == "emulator"
        async with http.get(f"{base}/") as resp:
            assert resp.status == 200 and "slackbot sandbox" in await resp.text()
        async with http.post(f"{base}/api/user_message", data="channel=C_GENERAL&text=hi") as resp:
            assert resp.status == 415  # only JSON from the page itself

        async with http.get(f"{base}/api/feed") as feed:
            assert (await asyncio.wait_for(feed.content.readline(), 5)).startswith(b": connected")
            sent = await post_json(http, f"{base}/api/user_message",
                                   {"channel": "C_GENERAL", "text": "<@UBOT> hi there", "user": "U_BOB"})
            assert sent["delivery"]["status"] == 200
            root = sent["message"]["ts"]
            line = b""
            while not line.startswith(b"data:"):
                line = await asyncio.wait_for(feed.content.readline(), 5)
            assert b"hi there" in line  # the proxied feed carries the workspace's changes

        async def answer():
            async with http.get(f"{base}/api/state") as resp:
                state = await resp.json()
            general = next(c for c in state["channels"] if c["id"] == "C_GENERAL")
            texts = [m["visible_text"] for m in general["messages"] if m.get("bot_id") and m.get("thread_ts") == root]
            return texts == ["Reply 1 to: hi there"]
        await eventually(answer, 10, interval=0.1, message="the bot's answer via the embedded store")

        # a whole research job on the embedded store: slot, schedule, claim with lease, report, chain head
        async with http.get(f"{base}/api/info") as resp:
            gemini = (await resp.json())["gemini_emulator_url"]
        await post_json(http, f"{gemini}/_emu/script_agent", {"queued_for": 0.1, "run_for": 0.5})
        sent = await post_json(http, f"{base}/api/slash_command",
                               {"command": "/research", "text": "--now Embedded stores", "channel": "C_GENERAL",
                                "user": "U_BOB"})
        assert sent["delivery"]["status"] == 200

        async def report():
            async with http.get(f"{base}/api/state") as resp:
                state = await resp.json()
            msgs = next(c for c in state["channels"] if c["id"] == "C_GENERAL")["messages"]
            status = next((m for m in msgs if "Embedded stores" in m["text"] and m.get("bot_id")), None)
            if status is None or "Done" not in status["text"]:
                return False
            return [m["visible_text"] for m in msgs if m.get("thread_ts") == status["ts"] and m["ts"] != status["ts"]
                    and not m.get("files")]  # the report's text, not its charts
        parts = await eventually(report, 15, interval=0.2, message="the research report via the embedded store")
        # the emulator's report is over the sandbox's canvas threshold: a canvas, the thread links to it
        assert parts[0].startswith(":page_facing_up: The full report is a canvas:"), parts
        link = re.search(r"<(http://[^|>]+)\|Research: Embedded stores>", parts[0]).group(1)
        async with http.get(f"{base}{URL(link).path}") as resp:  # where the page sends that link
            canvas = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "script-src" not in resp.headers["Content-Security-Policy"]
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "<h1>Research: Embedded stores</h1>" in canvas
        assert "<h1>Research report: Embedded stores</h1>" in canvas

        # every seeded person has a DM with the bot
        async with http.get(f"{base}/api/state") as resp:
            ims = {c["id"] for c in (await resp.json())["channels"] if c["is_im"]}
        assert ims == {"D_ALICE", "D_BOB", "D_CAROL"}


async def test_sandbox_is_loopback_only_in_fact(redis_url, prefix):
    """DNS rebinding, cross-origin simple POSTs and path tricks reach neither the page nor the emulator."""
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix, research_file_threshold=10)
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        port = settings.port
        async with http.get(f"{base}/api/info") as resp:
            info = await resp.json()
        slack, gemini = info["slack_emulator_url"], info["gemini_emulator_url"]

        # the page answers to its address and to localhost ...
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
            async with http.get(f"{base}/api/info", headers={"Host": host}) as resp:
                assert resp.status == 200, host
        # ... and not to a rebound name, even with an Origin that matches it
        rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        async with http.get(f"{base}/api/state", headers=rebound) as resp:
            assert resp.status == 421
        async with http.post(f"{base}/api/user_message", headers=rebound,
                             json={"channel": "C_GENERAL", "text": "<@UBOT> rebound"}) as resp:
            assert resp.status == 421
        # a cross-origin text/plain POST (no preflight in a browser) is refused, by the page and the emulator
        plain = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
        body = '{"channel": "C_GENERAL", "text": "<@UBOT> forged"}'
        async with http.post(f"{base}/api/user_message", data=body, headers=plain) as resp:
            assert resp.status == 415
        for path in ("user_message", "slash_command", "click", "reset", "rate_limit", "fail_next"):
            async with http.post(f"{slack}/_emu/{path}", data=body, headers=plain) as resp:
                assert resp.status == 415, path
        async with http.post(f"{slack}/_emu/reset") as resp:  # no body, no type: a simple request too
            assert resp.status == 415
        for path in ("script", "script_agent", "config", "reset"):  # the Gemini emulator's controls too
            async with http.post(f"{gemini}/_emu/{path}", data='{"text": "forged"}', headers=plain) as resp:
                assert resp.status == 415, path
        async with http.get(f"{slack}/_emu/state", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421
        async with http.get(f"{gemini}/_emu/requests", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 421
        async with http.get(f"{slack}/_emu/state") as resp:
            general = next(c for c in (await resp.json())["channels"] if c["id"] == "C_GENERAL")
        assert not any("forged" in m["text"] or "rebound" in m["text"] for m in general["messages"])

        # file ids are validated: an encoded "../state" is not the emulator's state
        for raw in ("%2e%2e%2fstate", "..%2fstate", "%2E%2E%2Fcalls", "F1%2f..%2f..%2fstate"):
            async with http.get(URL(f"{base}/api/files/{raw}", encoded=True)) as resp:
                text = await resp.text()
                assert resp.status == 404 and "channels" not in text and "team_id" not in text, raw

        # ... while a real file (a research report's chart) is served
        await post_json(http, f"{gemini}/_emu/script_agent", {"queued_for": 0.1, "run_for": 0.3})
        await post_json(http, f"{base}/api/slash_command",
                        {"command": "/research", "text": "--now Loopback", "channel": "C_GENERAL", "user": "U_BOB"})

        async def file_id():
            async with http.get(f"{base}/api/state") as resp:
                files = (await resp.json())["files"]
            return files[0]["id"] if files else None
        fid = await eventually(file_id, 15, interval=0.2, message="the report's chart uploaded")
        async with http.get(f"{base}/api/files/{fid}") as resp:
            assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")


# issue 13 in the page: a grounded answer with a table, a code run (and its plot) and its sources
async def test_sandbox_shows_table_code_run_and_sources(redis_url, prefix):
    chromium_or_skip()
    from playwright.async_api import expect

    settings = sandbox_settings(redis_url=redis_url, prefix=prefix, tools="google_search,code_execution")
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            gemini = (await resp.json())["gemini_emulator_url"]
        text = ("Replication compared:\n\n| Feature | Postgres | MySQL |\n|---|---|---|\n"
                "| Replication | streaming | binlog |\n| Failover | Patroni | Orchestrator |\n\nBoth are mature.")
        await post_json(http, f"{gemini}/_emu/script", {
            "match": "compare", "text": text,
            "tool_steps": [{"tool": "google_search", "queries": ["postgres mysql replication"]},
                           {"tool": "code_execution", "code": "print(sum(range(5)))", "output": "10", "image": True}],
            "annotations": [{"url": "https://www.postgresql.org/docs/current/high-availability.html",
                             "title": "PostgreSQL: High Availability", "cite": "streaming"},
                            {"url": "https://dev.mysql.com/doc/refman/8.4/en/replication.html",
                             "title": "MySQL Replication"}]})
        async with live_page(base) as (page, errors):
            await page.locator("#composer").fill("@bot compare Postgres and MySQL replication")
            await page.locator("#composer").press("Enter")
            await page.locator("#messages .thread-link").first.click()
            thread = page.locator("#thread-pane")
            table = thread.locator("table.block-table")
            await expect(table.locator("th")).to_have_text(["Feature", "Postgres", "MySQL"])
            await expect(table.locator("tbody tr").first.locator("td")).to_have_text(
                ["Replication", "streaming", "binlog"])
            await expect(thread).to_contain_text("Code run")
            await expect(thread.locator("code", has_text="print(sum(range(5)))").first).to_be_visible()
            sources = thread.locator("a", has_text="PostgreSQL: High Availability")
            await expect(sources).to_have_attribute(
                "href", "https://www.postgresql.org/docs/current/high-availability.html")
            await expect(thread.locator("a", has_text="MySQL Replication")).to_be_visible()
            await expect(thread.locator(".file-card").first).to_contain_text("code-run-1-1.png")
            await page.mouse.move(720, 880)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "sandbox-rich.png"))
            assert errors == [], errors


def tiny_png(width: int = 24, height: int = 16) -> bytes:
    """A real PNG (so the page can show it), built by hand: no imaging library needed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([200, 40, 40]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# issue 10.6: a person attaches an image (button) and a log (drag and drop); the page shows them,
# and the bot's answer proves Gemini got the exact bytes
async def test_sandbox_page_attaches_files(redis_url, prefix):
    chromium_or_skip()
    import hashlib

    from playwright.async_api import expect

    png = tiny_png()
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)
    async with sandbox(settings) as base, live_page(base) as (page, errors):

        # the 📎 button's file input: the attachment shows as a chip until sent
        await page.locator("#composer-form input.file-input").set_input_files(
            files=[{"name": "error.png", "mimeType": "image/png", "buffer": png}])
        await expect(page.locator("#channel-pane .attachment")).to_contain_text("error.png")
        await page.locator("#composer").fill("@bot what's wrong here?")
        await page.locator("#composer").press("Enter")
        await expect(page.locator("#channel-pane .attachment")).to_have_count(0)
        mine = page.locator('#messages .message.user[data-user="U_ALICE"]').first
        thumb = mine.locator(".file-card.image img.file-thumb")
        await expect(thumb).to_be_visible()
        await page.wait_for_function("img => img.complete && img.naturalWidth === 24", arg=await thumb.element_handle())

        await page.locator("#messages .thread-link").first.click()
        answer = page.locator("#thread-messages .message.bot .text").first
        await expect(answer).to_contain_text(f"image image/png {len(png)} bytes sha256:{hashlib.sha256(png).hexdigest()}")

        # drag and drop onto the thread: a log file, sent with no words at all
        await page.evaluate("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["12:00 POST /orders 500 request_id=r-77\\n"], "server.log", { type: "text/plain" }));
            const pane = document.querySelector("#thread-pane");
            pane.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
            pane.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""")
        await expect(page.locator("#thread-pane .attachment")).to_contain_text("server.log")
        await page.locator("#thread-composer").press("Enter")
        await expect(page.locator("#thread-messages .file-card .file-name")).to_have_text("server.log")
        await expect(page.locator("#thread-messages .message.bot .text").nth(1)).to_contain_text("request_id=r-77")

        await page.mouse.move(720, 880)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "sandbox-files.png"))
        assert errors == [], errors


# issue 17.8: without a key, asking for a table, code or sources shows each as Slack renders it
async def test_sandbox_emulator_answers_a_table_code_and_sources_when_asked(redis_url, prefix):
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)  # no SLACKBOT_TOOLS: the sandbox's own
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async def answer_to(question: str, done) -> list[dict]:
            sent = await post_json(http, f"{base}/api/user_message",
                                   {"channel": "C_GENERAL", "text": f"<@UBOT> {question}", "user": "U_BOB"})

            async def thread():
                async with http.get(f"{base}/api/state") as resp:
                    general = next(c for c in (await resp.json())["channels"] if c["id"] == "C_GENERAL")
                msgs = [m for m in general["messages"] if m.get("bot_id") and m.get("thread_ts") == sent["message"]["ts"]]
                return msgs if msgs and done(msgs) else None
            return await eventually(thread, 20, interval=0.1, message=f"the answer to {question!r}")

        def blocks(msgs, kind):
            return [b for m in msgs for b in m.get("blocks") or [] if b["type"] == kind]

        table = await answer_to("compare databases in a table", lambda ms: blocks(ms, "table"))
        [block] = blocks(table, "table")
        assert [c["text"] for c in block["rows"][0]] == ["Store", "Best for", "Trade-off"]
        assert [row[0]["text"] for row in block["rows"][1:]] == ["Redis", "PostgreSQL", "SQLite"]

        def fenced(ms):
            return any("```python\nimport time" in b["text"] and b["text"].count("```") == 2
                       for b in blocks(ms, "markdown"))
        await answer_to("write a function that retries a request", fenced)

        def sourced(ms):
            return any("News analysis" in b["text"] and "news.example.org" in b["text"] for b in blocks(ms, "markdown"))
        await answer_to("search the latest news on heat pumps", sourced)


# issue 17.8: the page accepts every command manifest.yml declares (/gemini too), draws its icons as
# SVG (no emoji font needed) and shows file sizes as a file browser does
async def test_sandbox_page_runs_every_declared_command_with_svg_icons_and_true_sizes(redis_url, prefix):
    chromium_or_skip()
    import yaml
    from playwright.async_api import expect

    manifest = yaml.safe_load((Path(__file__).resolve().parent.parent / "manifest.yml").read_text())
    declared = [c["command"] for c in manifest["features"]["slash_commands"]]
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            assert [c["command"] for c in (await resp.json())["commands"]] == declared
        async with http.post(f"{base}/api/slash_command", json={"command": "/nope", "channel": "C_GENERAL"}) as resp:
            assert resp.status == 400  # the workspace knows only the app's declared commands
        async with live_page(base) as (page, errors):
            for command in declared:
                await expect(page.locator("#command-hints kbd", has_text=command)).to_have_count(1)

            await page.locator("#composer").fill("/gemini")
            await page.locator("#composer").press("Enter")
            profile = page.locator("#messages .message.ephemeral", has_text="Gemini profile in #general")
            await expect(profile).to_contain_text("Model: gemini-3-flash-preview")
            await expect(page.locator("#messages")).not_to_contain_text("not a command of this app")

            attach = page.locator("#composer-form button.attach")
            await expect(attach.locator("svg")).to_have_count(1)
            assert (await attach.text_content()).strip() == ""  # no emoji glyph to fall back on
            await page.locator("#composer-form input.file-input").set_input_files(
                files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"x" * 80}])
            await expect(page.locator("#channel-pane .attachment")).to_contain_text("notes.txt · 80 B")
            await page.locator("#composer").fill("@bot read this")
            await page.locator("#composer").press("Enter")
            card = page.locator("#messages .file-card", has_text="notes.txt")
            await expect(card.locator(".file-size")).to_have_text("notes.txt · 80 B")
            await expect(card.locator(".file-icon svg")).to_have_count(1)
            await expect(page.locator("#messages .message.bot .avatar svg").first).to_be_visible()
            sizes = await page.evaluate("[80, 1229, 3.4 * 1024 * 1024].map(formatSize)")
            assert sizes == ["80 B", "1.2 KB", "3.4 MB"]
            assert errors == [], errors


# issue 19: the app's Messages tab shows its suggested prompts, the session's status, task cards and 👍/👎
async def test_sandbox_agent_tab_prompts_session_task_cards_and_rating(redis_url, prefix):
    chromium_or_skip()
    from playwright.async_api import expect

    prompts = json.dumps([{"title": "Latest heat pump news", "message": "search the latest news on heat pumps"},
                          {"title": "Explain something", "message": "Explain Redis Lua scripts in two sentences"}])
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix, suggested_prompts=prompts)
    async with sandbox(settings) as base, live_page(base, timeout=15_000) as (page, errors):
        # opening the app's Messages tab: the bot sets its prompts at the top
        await page.locator("#dm-list button").first.click()
        prompt = page.locator(".suggested-prompts .prompt", has_text="Latest heat pump news")
        await expect(prompt).to_be_visible()
        await prompt.click()
        # the message is a session of its own, answered in its thread
        await page.locator("#messages .thread-link").first.click()
        await expect(page.locator("#thread-pane .session-bar")).to_be_visible()
        await expect(page.locator("#thread-pane .session-title")).to_have_text("search the latest news on heat pumps")
        card = page.locator("#thread-messages .task-card", has_text="Searching the web")
        await expect(card).to_have_attribute("data-status", "complete")
        await expect(page.locator("#thread-pane .session-bar")).to_have_attribute("data-status", "active")
        answer = page.locator("#thread-messages .message.bot").last
        await expect(answer.locator(".feedback-button")).to_have_count(2)
        await expect(answer.locator(".feedback-button svg")).to_have_count(2)  # drawn thumbs, not text
        await page.mouse.move(720, 880)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "sandbox-agent-tab.png"))
        await answer.locator('.feedback-button[data-rating="positive"]').click()
        await expect(page.locator("#thread-messages .message.ephemeral", has_text="Thanks for the feedback")
                     ).to_be_visible()
        assert errors == [], errors


# issue 22 in the page: the plan with Start / Edit plan / Cancel; Edit plan's modal goes back to the bot as a
# signed view_submission and the agent revises the plan; Start researches it; the long report is a canvas
# whose link in the thread opens a readable (escaped, script-free) view of it
async def test_sandbox_research_plan_edit_start_and_canvas(redis_url, prefix):
    chromium_or_skip()
    from playwright.async_api import expect

    steps = ["Map the enforcement actions of 2026", "Compare national regulators"]
    edit = "Add the UK for contrast"
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)  # planning on, as by default
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            gemini = (await resp.json())["gemini_emulator_url"]
        for plan in ({"plan_steps": steps}, {"plan_steps": steps}, {}):  # the plan, its revision, the research
            await post_json(http, f"{gemini}/_emu/script_agent", {"queued_for": 0.1, "run_for": 0.3, **plan})
        async with live_page(base, timeout=15_000) as (page, errors):
            await page.locator("#composer").fill(f"/research {QUESTION}")
            await page.locator("#composer").press("Enter")
            status = page.locator("#messages .message.bot", has_text="Deep Research").first
            plan = status.locator(".block-text", has_text="Research plan")
            await expect(plan.locator("blockquote")).to_contain_text(f"1. {steps[0]}")
            await expect(plan.locator("blockquote")).to_contain_text(f"2. {steps[1]}")
            await expect(status.locator(".block-actions button")).to_have_text(["Start", "Edit plan", "Cancel"])

            # Edit plan: the bot's modal, its input holding the plan; what is typed goes back to the agent
            await status.locator('button[data-action-id="research_edit_plan"]').click()
            modal = page.locator(".modal[data-callback-id='research_edit_plan_view']")
            await expect(modal.locator(".modal-title")).to_have_text("Edit research plan")
            box = modal.locator("textarea.modal-input")
            await expect(box).to_have_value(re.compile(re.escape(f"1. {steps[0]}")))
            await expect(modal.locator(".modal-close")).to_have_text("Cancel")
            await page.mouse.move(720, 880)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "sandbox-plan-modal.png"))
            await box.fill(edit)
            await modal.locator(".modal-submit").click()
            await expect(page.locator(".modal")).to_have_count(0)
            await expect(plan.locator("blockquote")).to_contain_text(f"Revised as asked: {edit}")
            await expect(status.locator(".block-actions button")).to_have_text(["Start", "Edit plan", "Cancel"])

            await status.locator('button[data-action-id="research_start"]').click()
            await expect(status.locator(".text")).to_contain_text("report in the thread")
            await expect(status.locator(".block-actions button")).to_have_count(0)
            await status.locator(".thread-link").click()
            pointer = page.locator("#thread-messages a.canvas-link")
            await expect(pointer).to_have_text(f"Research: {QUESTION}")
            await expect(pointer).to_have_attribute("href", re.compile(r"^/docs/T[A-Z0-9]+/F[A-Z0-9]+$"))
            await page.mouse.move(720, 880)
            await page.screenshot(path=str(ARTIFACTS / "sandbox-canvas-link.png"))

            async with page.context.expect_page() as opened:
                await pointer.click()
            canvas = await opened.value
            await expect(canvas.locator("h1").first).to_have_text(f"Research: {QUESTION}")
            await expect(canvas.locator("h2", has_text="Plan followed")).to_have_count(1)
            await expect(canvas.locator("article")).to_contain_text(edit)  # the report followed the edited plan
            await expect(canvas.locator("table th").first).to_have_text("Source")
            assert await canvas.locator("script").count() == 0
            await canvas.screenshot(path=str(ARTIFACTS / "sandbox-canvas.png"))
            assert errors == [], errors

        # the canvas page is served as text nobody can script, and only for a canvas id
        async with http.get(URL(base) / "docs" / "T0001" / "..%2Fstate") as resp:
            assert resp.status == 404


# issue 22.6 in the page: "Research this thread" from the "More actions" menu of a reply in the thread view opens the
# bot's modal (an optional question, the "Skip the plan" / "Use the deeper agent" checkboxes); submitted as Slack
# sends it, the research runs in that thread and its report arrives there; "Forget this thread" on the thread's
# parent then says what was forgotten and the bot's messages leave the thread
async def test_sandbox_research_this_thread_and_forget_it_from_the_message_menu(redis_url, prefix):
    chromium_or_skip()
    from playwright.async_api import expect

    asked = "Which vendor is cheaper over three years, Acme or Globex?"
    question = "Compare Acme & Globex on total cost"  # "&" goes to the bot as typed and comes back as text
    report = "Thread report: Globex is cheaper over three years."
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)  # planning on, as by default
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            info = await resp.json()
        assert [s["callback_id"] for s in info["shortcuts"]] == \
            ["ask_gemini", "summarize_thread", "research_thread", "forget_thread"], "manifest.yml's, in its order"
        await post_json(http, f"{info['gemini_emulator_url']}/_emu/script_agent",
                        {"queued_for": 0.1, "run_for": 0.3, "report": report})
        async with live_page(base, timeout=15_000) as (page, errors):
            await page.locator("#composer").fill(f"@bot {asked}")
            await page.locator("#composer").press("Enter")
            await page.locator("#messages .thread-link").first.click()
            answer = page.locator("#thread-messages .message.bot").first
            await expect(answer.locator(".text")).to_contain_text("Reply 1 to:")

            # the menu of a reply in the thread view: every shortcut of the manifest
            await answer.hover()
            await answer.locator(".more-actions").click()
            menu = answer.locator(".shortcut-menu")
            await expect(menu.locator(".shortcut")).to_have_text(
                ["Ask Gemini about this message", "Summarize thread", "Research this thread", "Forget this thread"])
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "sandbox-message-menu.png"))
            await menu.locator('.shortcut[data-shortcut="research_thread"]').click()
            await expect(menu).to_be_hidden()

            modal = page.locator(".modal[data-callback-id='research_thread_view']")
            await expect(modal.locator(".modal-title")).to_have_text("Research this thread")
            await expect(modal.locator(".modal-block[data-block-id='question'] .modal-label")).to_contain_text(
                "(optional)")
            box = modal.locator("textarea.modal-input[data-block-id='question']")
            await expect(box).to_be_visible()
            options = modal.locator(".modal-checkboxes .modal-option")
            await expect(options.locator(".option-text")).to_have_text(["Skip the plan", "Use the deeper agent"])
            await expect(options.locator("input[type=checkbox]:checked")).to_have_count(0)
            await page.mouse.move(720, 880)
            await page.screenshot(path=str(ARTIFACTS / "sandbox-research-thread-modal.png"))
            await modal.locator("input[type=checkbox][value='now']").check()
            await box.fill(question)
            await modal.locator(".modal-submit").click()
            await expect(page.locator(".modal")).to_have_count(0)

            # no plan to approve: the status researches at once, in this thread, and the report follows it there
            status = page.locator("#thread-messages .message.bot", has_text="Deep Research").first
            await expect(status.locator(".text")).to_contain_text(question)
            await expect(status.locator(".text")).to_contain_text("report in the thread")
            await expect(status.locator('button[data-action-id="research_start"]')).to_have_count(0)
            await expect(page.locator("#thread-messages .message.bot", has_text=report)).to_have_count(1)
            await expect(page.locator("#messages .message.bot", has_text="Deep Research")).to_have_count(0)

            # "Forget this thread" on the parent, from the channel: one line for alice, and the bot's messages go
            parent = page.locator("#messages .message.top-level", has_text=asked)
            await parent.hover()
            await parent.locator(".more-actions").click()
            await parent.locator('.shortcut[data-shortcut="forget_thread"]').click()
            forgotten = page.locator("#thread-messages .message.ephemeral", has_text="Forgotten:")
            await expect(forgotten).to_contain_text("Only visible to you")
            await expect(page.locator("#thread-messages .message.bot:not(.ephemeral)")).to_have_count(0)
            await expect(page.locator("#thread-messages .message.user", has_text=asked)).to_have_count(1)
            assert errors == [], errors
