"""The sandbox page shows what Slack shows for a native stream and a thread status: the status line
with its loading message under the thread, then the answer growing in place, the status gone."""

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from test_sandbox import chromium_or_skip, live_page, post_json, sandbox, sandbox_settings

from slackbot_sandbox import server


async def test_page_shows_thread_status_and_a_growing_native_stream(redis_url, prefix, monkeypatch):
    chromium_or_skip()
    from playwright.async_api import expect

    # The test plays the app through the sandbox's own workspace, so it needs that workspace's token:
    # remember the workspace the sandbox creates (its behaviour is unchanged).
    workspaces = []

    class Remembered(server.SandboxWorkspace):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            workspaces.append(self)

    monkeypatch.setattr(server, "SandboxWorkspace", Remembered)
    settings = sandbox_settings(redis_url=redis_url, prefix=prefix)
    async with sandbox(settings) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/info") as resp:
            slack_url = (await resp.json())["slack_emulator_url"]
        # a person's message the bot never sees (deliver=False): this test plays the app itself
        posted = await post_json(http, f"{slack_url}/_emu/user_message",
                                 {"channel": "C_GENERAL", "text": "question", "deliver": False})
        thread = posted["message"]["ts"]
        client = AsyncWebClient(token=workspaces[0].bot_token, base_url=f"{slack_url}/api/")
        async with live_page(base) as (page, errors):
            await client.chat_postMessage(channel="C_GENERAL", thread_ts=thread, text="first")  # a thread link
            await page.locator("#messages .thread-link").first.click()

            await client.assistant_threads_setStatus(channel_id="C_GENERAL", thread_ts=thread,
                                                     status="is thinking…", loading_messages=["Reading the thread"])
            status = page.locator("#thread-messages .thread-status")
            await expect(status).to_contain_text("Gemini is thinking…")
            await expect(status.locator(".status-loading")).to_have_text("Reading the thread")

            ts = (await client.chat_startStream(channel="C_GENERAL", thread_ts=thread, markdown_text="Hel",
                                                recipient_team_id="T0001", recipient_user_id="U_ALICE"))["ts"]
            answer = page.locator(f'#thread-messages .message.bot[data-ts="{ts}"]')
            await expect(answer.locator(".text")).to_have_text("Hel")
            await expect(answer.locator(".stream-cursor")).to_have_count(1)
            await expect(status).to_have_count(0)  # the app's message cleared the status
            await client.chat_appendStream(channel="C_GENERAL", ts=ts, markdown_text="lo there")
            await expect(answer.locator(".text")).to_have_text("Hello there")
            await client.chat_stopStream(channel="C_GENERAL", ts=ts)
            await expect(answer.locator(".stream-cursor")).to_have_count(0)
            assert errors == [], errors
