"""Issue 21 end to end: Gemini makes images in the thread (generate, edit, iterate), within daily caps,
surviving a crash, shown on the sandbox page.

Signed Slack deliveries -> the real Bolt app over HTTP -> the real google-genai SDK -> the
Interactions emulator (function_call steps; image models return real PNGs encoding the prompt and
any input image); Slack's Web API is the emulator (files_upload_v2's three calls, the thread's
file_share messages); Redis is real. Each test names the point of the issue it proves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re

import pytest

from conftest import bot_url, eventually, idle, metric, progress_shown
from test_tools import MENTION, finished, results_of, shown

from slackbot.images import rules
from slackbot.store.images import ImageQuota

IMAGE_MODEL = "gemini-3-pro-image-preview"
FUNCTIONS = "generate_image,edit_image"
PROMPT = "A red lighthouse on a cliff at dusk, oil painting"


@pytest.fixture
def run_bot(run_bot):
    """conftest's run_bot with this file's defaults."""
    def start(**overrides):
        overrides.setdefault("functions", FUNCTIONS)
        overrides.setdefault("image_model", IMAGE_MODEL)
        return run_bot(**overrides)
    return start


def uploads(slack_emu, channel: str, thread_ts: str) -> list[dict]:
    """The files the bot shared in a thread, oldest first."""
    return [f for f in slack_emu.files if f.get("channel") == channel and f.get("thread_ts") == thread_ts
            and f.get("user") is None]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def draw(gemini_emu, match: str, then: str = "I drew a red lighthouse at dusk.", **arguments) -> None:
    gemini_emu.script(match=match, calls=[{"name": "generate_image", "arguments": {"prompt": PROMPT, **arguments}}],
                      then_text=then)


# 1: a mention asking for a picture: Gemini calls generate_image, the image model makes it, the bot uploads
# it into the thread (title and alt text from the prompt), the answer says what was made, progress shows,
# image tokens are counted with kind="image" and on the answer's log line, and the thread remembers the file
async def test_generate_uploads_the_image_into_the_thread(run_bot, slack_emu, gemini_emu, store, caplog):
    caplog.set_level(logging.INFO)
    await run_bot()
    draw(gemini_emu, "lighthouse", aspect_ratio="16:9")
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw me a lighthouse")
    root = d.message.ts
    text = await finished(slack_emu, "C_GENERAL", root, "I drew a red lighthouse")
    [made] = gemini_emu.image_requests
    assert (made["model"], made["prompt"], made["aspect_ratio"], made["image_size"]) == \
        (IMAGE_MODEL, PROMPT, "16:9", "1K")
    [upload] = uploads(slack_emu, "C_GENERAL", root)
    assert sha(upload["content"]) == made["sha256"] and upload["content"][:4] == b"\x89PNG"
    assert upload["title"] == PROMPT and upload["extra"]["alt_txt"] == PROMPT
    share = next(m for m in slack_emu.bot_messages("C_GENERAL", root) if m.files)
    assert share.files[0]["id"] == upload["id"]
    [result] = results_of(gemini_emu)
    assert result["shared_in_thread"][0]["title"] == PROMPT
    assert progress_shown(slack_emu, "C_GENERAL", root, "Making an image")
    assert "could not" not in text
    url = bot_url(slack_emu)
    assert await metric(url, "slackbot_gemini_tokens_total", model=IMAGE_MODEL, kind="image") == 1120
    assert await metric(url, "slackbot_images_total", outcome="made") == 1
    [done] = [r for r in caplog.records if r.getMessage() == "answer done"]
    assert done.tokens_image == 1120
    [kept] = await store.images.thread_images("T0001", "C_GENERAL", root)
    assert (kept["id"], kept["by"]) == (upload["id"], "bot")


# 2: an image a person shared with the message is sent with the instruction; the result is a new upload
# and the original file is untouched
async def test_edit_sends_the_shared_image_and_uploads_a_new_one(run_bot, slack_emu, gemini_emu):
    from test_sandbox import tiny_png

    await run_bot()
    png = tiny_png()
    shot = slack_emu.host_file("screenshot.png", png, mimetype="image/png")
    gemini_emu.script(match="background", calls=[{"name": "edit_image",
                                                  "arguments": {"instruction": "Make the background white"}}],
                      then_text="Here is your screenshot with a white background.")
    d = await slack_emu.user_shares("C_GENERAL", f"{MENTION} make the background of this white", [shot])
    root = d.message.ts
    await finished(slack_emu, "C_GENERAL", root, "white background")
    [made] = gemini_emu.image_requests
    assert made["prompt"] == "Make the background white"
    assert [(i["bytes"], i["sha256"]) for i in made["input_images"]] == [(len(png), sha(png))]
    [upload] = uploads(slack_emu, "C_GENERAL", root)
    assert upload["id"] != shot["id"] and sha(upload["content"]) == made["sha256"] != sha(png)
    assert slack_emu.file_record(shot["id"])["content"] == png  # the original is untouched


# 3: "now make it blue" in the same thread edits the latest image the bot made there: its file id is
# remembered in Redis (with the chain's TTL, never the bytes) and the bytes are fetched again from Slack
async def test_iterate_edits_the_bots_latest_image(run_bot, slack_emu, gemini_emu, store, redis_url, prefix):
    import redis.asyncio as aioredis

    await run_bot()
    draw(gemini_emu, "lighthouse")
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw me a lighthouse")
    root = d.message.ts
    await finished(slack_emu, "C_GENERAL", root, "I drew a red lighthouse")
    gemini_emu.script(match="blue", calls=[{"name": "edit_image", "arguments": {"instruction": "make it blue"}}],
                      then_text="Now it is blue.")
    await slack_emu.user_message("C_GENERAL", "now make it blue", thread_ts=root)
    await finished(slack_emu, "C_GENERAL", root, "Now it is blue.")
    first, second = uploads(slack_emu, "C_GENERAL", root)
    made = gemini_emu.image_requests[1]
    assert [i["sha256"] for i in made["input_images"]] == [sha(first["content"])]
    assert sha(second["content"]) == made["sha256"] and second["id"] != first["id"]
    kept = await store.images.thread_images("T0001", "C_GENERAL", root)
    assert [k["id"] for k in kept] == [second["id"], first["id"]]
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        key = store.keys.turns.images("T0001", "C_GENERAL", root)
        chain = await r.ttl(store.keys.turns.chain("T0001", "C_GENERAL", root))
        assert chain > 0 and abs(await r.ttl(key) - chain) <= 5  # the chain's TTL
        raw = json.dumps(await r.lrange(key, 0, -1))
        assert len(raw) < 2000 and "iVBOR" not in raw  # ids and URLs, no PNG
    finally:
        await r.aclose()


# 4: daily caps per person and per workspace, each a plain line with no upload; the largest size
async def test_daily_caps_are_plain_lines_and_the_size_is_capped(run_bot, slack_emu, gemini_emu):
    await run_bot(images_per_user_per_day=1, images_per_workspace_per_day=2, image_max_size="1K")
    threads = []
    for n, user in enumerate(["U_ALICE", "U_ALICE", "U_BOB", "U_CAROL"]):
        draw(gemini_emu, f"picture{n}", then=f"Answer {n}.", size="4K")
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw picture{n}", user=user)
        await finished(slack_emu, "C_GENERAL", d.message.ts, f"Answer {n}.")
        threads.append(d.message.ts)
    assert [len(uploads(slack_emu, "C_GENERAL", t)) for t in threads] == [1, 0, 1, 0]
    assert len(gemini_emu.image_requests) == 2
    assert {r["image_size"] for r in gemini_emu.image_requests} == {"1K"}  # 4K asked, 1K the largest
    assert rules.PERSON_FULL.format(n=1) in shown(slack_emu, "C_GENERAL", threads[1])
    assert rules.WORKSPACE_FULL.format(n=2) in shown(slack_emu, "C_GENERAL", threads[3])


# 4: the caps hold under concurrency: one script counts both, so replicas never pass them together
async def test_caps_are_atomic(store):
    verdicts = await asyncio.gather(*(store.images.take("T1", f"U{n % 3}", "2026-12-07", per_user=2, per_workspace=5)
                                      for n in range(30)))
    assert verdicts.count(ImageQuota.TAKEN) == 5
    await store.images.give_back("T1", "U0", "2026-12-07")
    assert await store.images.take("T1", "U9", "2026-12-07", per_user=2, per_workspace=5) is ImageQuota.TAKEN


# 4: a safety refusal and a failure of the image model are each one plain line, no upload, not counted
async def test_refusals_and_failures_are_one_plain_line(run_bot, slack_emu, gemini_emu, store):
    await run_bot(images_per_user_per_day=1)
    draw(gemini_emu, "unsafe", then="I could not draw that.")
    gemini_emu.script(match=PROMPT, refuse_image=True)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw something unsafe")
    text = await finished(slack_emu, "C_GENERAL", d.message.ts, rules.REFUSED)
    assert not uploads(slack_emu, "C_GENERAL", d.message.ts) and "Traceback" not in text
    assert gemini_emu.image_requests[-1]["refused"] is True
    draw(gemini_emu, "broken", then="The picture failed.")
    gemini_emu.script(match=PROMPT, fail_status=500, fail_times=10)
    d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw something broken")
    text = await finished(slack_emu, "C_GENERAL", d.message.ts, rules.FAILED)
    assert not uploads(slack_emu, "C_GENERAL", d.message.ts)
    assert await metric(bot_url(slack_emu), "slackbot_images_total", outcome="refused") == 1
    # neither counted against the person's one image a day
    assert await store.images.take("T0001", "U_ALICE", rules_day(), per_user=1, per_workspace=9) is ImageQuota.TAKEN


def rules_day() -> str:
    from slackbot.images.make import _today

    return _today()


# 5: killed after Slack accepted the upload but before the bot heard of it: the survivor finds the
# upload in the thread and adopts it; the image is neither made nor uploaded again
async def test_an_upload_accepted_before_a_crash_is_not_repeated(settings_for, slack_emu, gemini_emu):
    from conftest import end_processes, free_port, spawn_serve, wait_ready

    a, b = (settings_for(port=free_port(), turn_lease_seconds=2.0) for _ in range(2))
    env = {"SLACKBOT_FUNCTIONS": FUNCTIONS, "SLACKBOT_IMAGE_MODEL": IMAGE_MODEL}
    procs = [spawn_serve(a, **env), spawn_serve(b, **env)]
    try:
        await asyncio.gather(wait_ready(a.port), wait_ready(b.port))
        slack_emu.app_url = f"http://127.0.0.1:{a.port}/slack/events"
        slack_emu.hold_next("files.completeUploadExternal", 30)
        draw(gemini_emu, "lighthouse")
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw me a lighthouse")
        root = d.message.ts
        await eventually(lambda: uploads(slack_emu, "C_GENERAL", root), 15, message="Slack took the upload")
        procs[0].kill()
        procs[0].wait()
        slack_emu.app_url = f"http://127.0.0.1:{b.port}/slack/events"
        await eventually(lambda: "I drew a red lighthouse" in shown(slack_emu, "C_GENERAL", root), 30,
                         message="the survivor's answer")
        assert len(uploads(slack_emu, "C_GENERAL", root)) == 1, "not uploaded again"
        assert len(gemini_emu.image_requests) == 1, "not generated again"
    finally:
        end_processes(procs)


# 6: the sandbox page: asking for a picture shows the generated image inline in the thread
async def test_sandbox_page_shows_a_generated_image(redis_url, prefix):
    from test_sandbox import chromium_or_skip, live_page, sandbox, sandbox_settings

    chromium_or_skip()
    from playwright.async_api import expect

    settings = sandbox_settings(redis_url=redis_url, prefix=prefix, functions=FUNCTIONS)
    async with sandbox(settings) as base:
        async with live_page(base, timeout=15_000) as (page, errors):
            await page.locator("#composer").fill("@bot draw a lighthouse at dusk")
            await page.locator("#composer").press("Enter")
            await page.locator("#messages .thread-link").first.click()
            thread = page.locator("#thread-pane")
            await expect(thread).to_contain_text("I made the picture you asked for")
            image = thread.locator("img.file-thumb").first
            await expect(image).to_have_attribute("alt", re.compile("draw a lighthouse at dusk"))
            await eventually(lambda: image.evaluate("i => i.complete && i.naturalWidth > 0"), 10,
                             message="the picture decoded in the page")
            assert errors == [], errors


# 5: a generation in flight at a crash runs again, at most once: killed twice while the image model works,
# the third process does not ask a third time and says so in one plain line
async def test_a_generation_in_flight_runs_again_at_most_once(settings_for, slack_emu, gemini_emu, store):
    from conftest import end_processes, free_port, spawn_serve, wait_ready

    settings = [settings_for(port=free_port(), turn_lease_seconds=2.0) for _ in range(3)]
    env = {"SLACKBOT_FUNCTIONS": FUNCTIONS, "SLACKBOT_IMAGE_MODEL": IMAGE_MODEL}
    procs = [spawn_serve(settings[0], **env)]  # one process at a time: the one killed is the one working
    try:
        await wait_ready(settings[0].port)
        slack_emu.app_url = f"http://127.0.0.1:{settings[0].port}/slack/events"
        draw(gemini_emu, "lighthouse")
        for _ in range(2):
            gemini_emu.script(match=PROMPT, first_token_delay=60)  # the image model, slow
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} draw me a lighthouse")
        root = d.message.ts
        for n in (1, 2):
            await eventually(lambda: len(gemini_emu.image_requests) == n, 20, message=f"generation {n} under way")
            procs[n - 1].kill()
            procs[n - 1].wait()
            procs.append(spawn_serve(settings[n], **env))
            await wait_ready(settings[n].port)
            slack_emu.app_url = f"http://127.0.0.1:{settings[n].port}/slack/events"
        await eventually(lambda: rules.FAILED in shown(slack_emu, "C_GENERAL", root), 30,
                         message="the third process's plain line")
        assert len(gemini_emu.image_requests) == 2, "run again once, not twice"
        assert not uploads(slack_emu, "C_GENERAL", root)
        # and not counted: the person's day is as before
        assert await store.images.take("T0001", "U_ALICE", rules_day(), per_user=1, per_workspace=9) \
            is ImageQuota.TAKEN
    finally:
        end_processes(procs)


# 1: in a DM too: the picture lands in the DM, and a follow-up there edits it
async def test_generate_and_iterate_in_a_dm(run_bot, slack_emu, gemini_emu):
    await run_bot()
    draw(gemini_emu, "lighthouse")
    ask = (await slack_emu.user_message("D_ALICE", "draw me a lighthouse")).message
    await eventually(lambda: [f for f in slack_emu.files if f.get("channel") == "D_ALICE"], 15,
                     message="the picture in the DM")
    await eventually(lambda: idle(bot_url(slack_emu)), 15, message="the answer finished")
    gemini_emu.script(match="blue", calls=[{"name": "edit_image", "arguments": {"instruction": "make it blue"}}],
                      then_text="Now it is blue.")
    # the Messages tab: each message is a session of its own, so the follow-up is a reply in its thread
    await slack_emu.user_message("D_ALICE", "now make it blue", thread_ts=ask.ts)
    await eventually(lambda: len([f for f in slack_emu.files if f.get("channel") == "D_ALICE"]) == 2, 15,
                     message="the edited picture in the DM")
    first = next(f for f in slack_emu.files if f.get("channel") == "D_ALICE")
    assert [i["sha256"] for i in gemini_emu.image_requests[1]["input_images"]] == [sha(first["content"])]
