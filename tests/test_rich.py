"""Issue 13 end to end: sources, tables, code runs, remote MCP tools, per-channel profiles, usage.

Signed Slack deliveries -> the real Bolt app over HTTP -> the real google-genai SDK -> the
Interactions emulator (which scripts tool steps, annotations and usage); Redis is real. Each test
names the numbered point of the issue it proves.
"""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from conftest import eventually

from slackbot.config import ConfigError, load_settings
PLACEHOLDER = "_Thinking…_"  # the old design's placeholder: never shown any more

MENTION = "<@UBOT>"
TABLE = "| Feature | Postgres | MySQL |\n|---|---|---|\n| Replication | streaming | binlog |\n| Failover | Patroni | Orchestrator |"


def md(message) -> str:
    return "".join(b.get("text", "") for b in message.blocks or [] if b.get("type") == "markdown")


def tables(message) -> list[dict]:
    return [b for b in message.blocks or [] if b.get("type") == "table"]


async def settled(slack_emu, channel, thread_ts, predicate, timeout=10):
    """The bot's messages in the thread, once `predicate(messages)` holds and no placeholder is left."""
    def check():
        msgs = slack_emu.bot_messages(channel, thread_ts)
        ok = msgs and all(PLACEHOLDER not in m.visible_text for m in msgs) and predicate(msgs)
        return msgs if ok else None
    return await eventually(check, timeout, message="final answer")


# 1: sources under the final answer, numbered, de-duplicated, escaped; none while streaming
async def test_grounded_answer_lists_its_sources_once_finished(run_bot, slack_emu, gemini_emu):
    await run_bot(tools="google_search")
    answer = "The EU AI Act's obligations for general-purpose models apply from August. " * 6
    gemini_emu.script(text=answer, chunk_chars=20, chunk_delay=0.01,
                      tool_steps=[{"tool": "google_search", "queries": ["EU AI Act changes this month"]}],
                      annotations=[
                          {"url": "https://digital-strategy.ec.europa.eu/en/policies/ai-act", "title": "AI Act <EU>",
                           "cite": "obligations"},
                          {"url": "https://digital-strategy.ec.europa.eu/en/policies/ai-act/", "title": "dup"},
                          {"url": "https://news.example.org/ai?x=1&y=2", "title": "News & views"}])
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} what changed in the EU AI Act this month?")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: "Sources" in md(ms[-1]))
    final = md(msgs[-1])
    assert answer.strip()[:60] in "".join(md(m) for m in msgs)
    assert "1. [AI Act &lt;EU&gt;](https://digital-strategy.ec.europa.eu/en/policies/ai-act) · digital-strategy.ec.europa.eu" in final
    assert "2. [News &amp; views](https://news.example.org/ai?x=1&y=2) · news.example.org" in final
    assert "3. " not in final  # the duplicate link is listed once
    assert gemini_emu.model_creates()[0]["tools"] == [{"type": "google_search"}]
    # nothing jumped: only the final edit carried the sources, none of the streamed versions
    versions = [json.dumps(blocks) for _, _, blocks in slack_emu.bot_messages("C_GENERAL", root)[-1].edits]
    assert versions and "Sources" in versions[-1]
    assert all("Sources" not in v for v in versions[:-1])


# 2: a Markdown table is a Slack table block, the message split around it; text fallback readable
async def test_markdown_table_renders_as_slack_table(run_bot, slack_emu, gemini_emu):
    await run_bot()
    gemini_emu.script(text=f"Here is the comparison:\n\n{TABLE}\n\nBoth can do logical replication too.")
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} compare Postgres and MySQL replication in a table")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: len(ms) == 2 and tables(ms[0]))
    [table] = tables(msgs[0])
    assert [[c["text"] for c in row] for row in table["rows"]] == [
        ["Feature", "Postgres", "MySQL"], ["Replication", "streaming", "binlog"], ["Failover", "Patroni", "Orchestrator"]]
    assert md(msgs[0]).strip() == "Here is the comparison:"
    assert "| --- |" not in md(msgs[0]) and "|---|" not in md(msgs[0])
    assert "| Replication | streaming | binlog |" in msgs[0].text  # notification fallback reads as a table
    assert md(msgs[1]).strip() == "Both can do logical replication too."
    assert not [c for c in slack_emu.calls if not c.ok and c.method.startswith("chat.")]  # Slack accepted every block


# 2: beyond Slack's limits (here 120 rows) the table is an aligned code block instead
async def test_oversized_table_falls_back_to_code_block(run_bot, slack_emu, gemini_emu):
    await run_bot()
    big = "| n | square |\n|---|---|\n" + "\n".join(f"| {i} | {i * i} |" for i in range(120))
    gemini_emu.script(text=f"Squares:\n\n{big}\n", chunk_chars=400)
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} squares up to 119")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root,
                         lambda ms: "119  14161" in "".join(md(m) for m in ms))
    assert not any(tables(m) for m in msgs)
    assert "```" in md(msgs[0])


# 3: code that ran is shown compactly, and the plot it made is uploaded into the thread
async def test_code_run_shown_and_image_uploaded(run_bot, slack_emu, gemini_emu):
    await run_bot(tools="code_execution", code_output_chars=200)
    output = "\n".join(f"row {i}" for i in range(500))
    gemini_emu.script(text="The mean is 4.5.", tool_steps=[
        {"tool": "code_execution", "code": "import statistics\nprint(statistics.mean(range(10)))", "output": output,
         "image": True}])
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} compute the mean of 0..9 and plot it")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: "Code run" in "".join(md(m) for m in ms))
    text = "".join(md(m) for m in msgs)
    assert text.startswith("The mean is 4.5.")
    assert "**Code run** (python, ran)" in text
    assert "```python\nimport statistics\nprint(statistics.mean(range(10)))\n```" in text
    assert "row 0" in text and "row 499" not in text and "not shown" in text
    files = await eventually(lambda: [f for f in slack_emu.files if f["thread_ts"] == root], 5, message="upload")
    assert files[0]["filename"].endswith(".png") and files[0]["content"].startswith(b"\x89PNG")


# 4: remote MCP servers are sent every turn with secrets from the environment; a failing tool gives
#    one plain line and the answer goes on; header values never reach a log line
async def test_mcp_servers_sent_each_turn_and_failing_tool_noted(run_bot, slack_emu, gemini_emu, monkeypatch, caplog):
    secret = "tok-SECRET-7f3a"
    monkeypatch.setenv("CRM_MCP_TOKEN", secret)
    servers = [{"name": "crm", "url": "https://crm.example.com/mcp", "headers": {"Authorization": "env:CRM_MCP_TOKEN"},
                "allowed_tools": ["lookup_customer"]},
               {"name": "wiki", "url": "https://wiki.example.com/mcp", "headers": {"X-Key": "${CRM_MCP_TOKEN}"}}]
    caplog.set_level(logging.DEBUG)
    await run_bot(mcp_servers=json.dumps(servers), log_content=False)
    gemini_emu.script(text="Acme is on the Gold plan.", tool_steps=[
        {"tool": "mcp", "server": "crm", "name": "lookup_customer", "arguments": {"name": "Acme"}, "result": "Gold"},
        {"tool": "mcp", "server": "wiki", "name": "search", "is_error": True, "result": "403 Forbidden"}])
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} what plan is Acme on?")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: "failed" in md(ms[-1]))
    text = md(msgs[-1])
    assert text.startswith("Acme is on the Gold plan.")
    assert "_The wiki.search tool failed, so this answer may be missing what it would have added._" in text
    sent = gemini_emu.model_creates()[0]["tools"]
    assert sent == [
        {"type": "mcp_server", "name": "crm", "url": "https://crm.example.com/mcp",
         "headers": {"Authorization": secret}, "allowed_tools": [{"mode": "auto", "tools": ["lookup_customer"]}]},
        {"type": "mcp_server", "name": "wiki", "url": "https://wiki.example.com/mcp", "headers": {"X-Key": secret}}]
    # the next turn in the thread sends them again (tools are turn-scoped)
    await slack_emu.user_message("C_GENERAL", "and Globex?", thread_ts=root)
    await eventually(lambda: len(gemini_emu.model_creates()) == 2, message="second turn")
    assert gemini_emu.model_creates()[1]["tools"] == sent
    assert not any(secret in r.getMessage() or secret in json.dumps(r.__dict__, default=str) for r in caplog.records)


def test_mcp_servers_setting_is_checked_at_start_up(monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    cases = {
        "[{": "not valid JSON",
        '[{"name": "crm"}]': "[0.url]: Field required",
        '[{"name": "crm", "url": "https://x/mcp", "headers": {"A": "env:NOPE_TOKEN"}}]': "unset environment variable NOPE_TOKEN",
        '[{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]': "unique",
    }
    for value, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            load_settings(mcp_servers=value)
        assert str(err.value).startswith("SLACKBOT_MCP_SERVERS: ") and expected in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:  # a literal secret in a header is never echoed back
        load_settings(mcp_servers='[{"name": "x", "url": "ftp://x", "headers": {"A": "literal-secret"}}]')
    assert "literal-secret" not in str(err.value)


PROFILES = """
profiles:
  support:
    system_instruction: "You help customers. Cite sources."
    model: gemini-3.1-pro-preview
    tools: [google_search, url_context]
    thinking_level: low
    max_output_tokens: 1024
    mcp_servers: [crm]
  quiet:
    system_instruction: "Answer in one sentence."
    tools: []
channels:
  "#general": support
  D_ALICE: quiet
"""


# 5: each turn sends its channel's profile (by name or by id); /gemini shows it ephemerally
async def test_channel_profiles_shape_each_turn_and_gemini_command_shows_them(run_bot, slack_emu, gemini_emu, tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(PROFILES)
    servers = [{"name": "crm", "url": "https://crm.example.com/mcp"}, {"name": "wiki", "url": "https://wiki.example.com/mcp"}]
    await run_bot(profiles_file=str(path), tools="code_execution", mcp_servers=json.dumps(servers))
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} hello support")
    await settled(slack_emu, "C_GENERAL", delivery.message.ts, lambda ms: "Reply" in md(ms[0]))
    body = gemini_emu.model_creates()[0]
    assert body["model"] == "gemini-3.1-pro-preview"
    assert body["system_instruction"] == "You help customers. Cite sources."
    assert body["tools"] == [{"type": "google_search"}, {"type": "url_context"},
                             {"type": "mcp_server", "name": "crm", "url": "https://crm.example.com/mcp"}]
    assert body["generation_config"] == {"thinking_level": "low", "max_output_tokens": 1024,
                                         "thinking_summaries": "auto"}  # on by default (issue 19)
    await slack_emu.user_message("D_ALICE", "hello quiet")
    await eventually(lambda: len(gemini_emu.model_creates()) == 2, message="DM turn")
    dm = gemini_emu.model_creates()[1]
    assert dm["model"] == "gemini-3-flash-preview" and dm["system_instruction"] == "Answer in one sentence."
    assert [t["type"] for t in dm["tools"]] == ["mcp_server", "mcp_server"]  # no built-ins; every MCP server
    await slack_emu.slash_command("/gemini", "", channel="C_GENERAL", user="U_BOB")
    shown = await eventually(lambda: [e for e in slack_emu.ephemerals if e["user"] == "U_BOB"], 5, message="ephemeral")
    text = shown[-1]["text"]
    assert "Gemini profile in #general: support" in text
    assert "gemini-3.1-pro-preview" in text and "google_search, url_context, crm (MCP)" in text
    assert "wiki" not in text and "Thinking level: low" in text and "Max output tokens: 1024" in text
    await slack_emu.slash_command("/gemini", "", channel="C_RANDOM", user="U_CAROL")
    other = await eventually(lambda: [e for e in slack_emu.ephemerals if e["user"] == "U_CAROL"], 5, message="ephemeral")
    assert "#random: default" in other[-1]["text"] and "code_execution" in other[-1]["text"]


def test_profiles_file_is_checked_at_start_up(tmp_path):
    cases = {
        "profiles:\n  a:\n    tools: [web]\nchannels: {}\n": "profiles.a.tools.0",
        "profiles:\n  a:\n    colour: red\n": "profiles.a.colour: Extra inputs are not permitted",
        "profiles:\n  a: {}\nchannels:\n  C1234: b\n": "channels.C1234: unknown profile 'b'",
        "profiles: [\n": "not valid YAML",
        "profiles:\n  a:\n    max_output_tokens: 0\n": "profiles.a.max_output_tokens",
    }
    for n, (content, expected) in enumerate(cases.items()):
        path = tmp_path / f"p{n}.yaml"
        path.write_text(content)
        with pytest.raises(ConfigError) as err:
            load_settings(profiles_file=str(path))
        message = str(err.value)
        assert message.startswith("SLACKBOT_PROFILES_FILE: ") and expected in message and "\n" not in message, message
    with pytest.raises(ConfigError) as err:
        load_settings(profiles_file=str(tmp_path / "missing.yaml"))
    assert "cannot read" in str(err.value)
    path = tmp_path / "mcp.yaml"
    path.write_text("profiles:\n  a:\n    mcp_servers: [crm]\n")
    with pytest.raises(ConfigError) as err:
        load_settings(profiles_file=str(path))
    assert str(err.value) == "SLACKBOT_PROFILES_FILE: profiles.a.mcp_servers: 'crm' is not in SLACKBOT_MCP_SERVERS"


# 6: each answer's usage is on its log line and counted in /metrics per model and profile
async def test_usage_logged_and_counted_per_model_and_profile(run_bot, slack_emu, gemini_emu, tmp_path, caplog):
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"profiles": {"eng": {"model": "gemini-2.5-flash"}}, "channels": {"C_GENERAL": "eng"}}))
    caplog.set_level(logging.INFO)
    bot = await run_bot(profiles_file=str(path))

    async def counted(kind):
        async with aiohttp.ClientSession() as http, http.get(f"{bot.url}/metrics") as resp:
            page = await resp.text()
        line = f'slackbot_gemini_tokens_total{{kind="{kind}",model="gemini-2.5-flash",profile="eng"}}'
        return next((float(l.split()[-1]) for l in page.splitlines() if l.startswith(line)), 0.0)
    before = await counted("output")
    gemini_emu.script(text="x" * 400, thought="Let me think about this.")
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} how much does this cost?")
    await eventually(lambda: any(getattr(r, "profile", None) == "eng" for r in caplog.records), message="answer line")
    record = next(r for r in caplog.records if r.getMessage() == "answer done" and getattr(r, "profile", None) == "eng")
    assert record.model == "gemini-2.5-flash"
    assert record.tokens_output == 100 and record.tokens_input > 0 and record.tokens_thought > 0
    assert await counted("output") - before == 100
    assert await counted("thought") > 0 and await counted("input") > 0
    assert delivery.message.ts


# resume and event-id dedup hold for the new items: a stream cut mid-tools shows each code run once
async def test_resumed_stream_shows_each_code_run_once(run_bot, slack_emu, gemini_emu):
    await run_bot(tools="code_execution")
    gemini_emu.script(text="Result: 4.", break_after_events=5, tool_steps=[
        {"tool": "code_execution", "code": "print(2 + 2)", "output": "4"}])
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} 2+2 in python")
    root = delivery.message.ts
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: "Code run" in "".join(md(m) for m in ms))
    text = "".join(md(m) for m in msgs)
    assert text.count("print(2 + 2)") == 1 and text.startswith("Result: 4.")
    rec = gemini_emu.interaction(gemini_emu.interaction_ids()[0])
    assert rec["stream_connections"] == 2  # it really was resumed


async def test_emulator_checks_tools_and_generation_config_as_the_sdk_defines_them(gemini_emu):
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gemini_emu.base_url))
    # the SDK checks some of these before sending; the emulator answers other clients the same way
    bad = [
        {"tools": [{"type": "mcp_server", "name": "x"}]},  # no url
        {"tools": [{"type": "mcp_server", "name": "x", "url": "https://x", "headers": {"A": 1}}]},
        {"tools": [{"type": "mcp_server", "name": "x", "url": "https://x", "allowed_tools": ["a"]}]},
        {"tools": [{"type": "google_search", "colour": "red"}]},
        {"tools": [{"type": "teleport"}]},
        {"generation_config": {"thinking_level": "extreme"}},
        {"generation_config": {"max_output_tokens": 0}},
    ]
    async with aiohttp.ClientSession() as http:
        for extra in bad:
            body = {"model": "gemini-3-flash-preview", "input": "hi", **extra}
            async with http.post(f"{gemini_emu.base_url}/v1/interactions", json=body,
                                 headers={"x-goog-api-key": "k"}) as resp:
                assert resp.status == 400, extra
                assert (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"
    ok = await client.aio.interactions.create(
        model="gemini-3-flash-preview", input="hi", generation_config={"thinking_level": "low", "max_output_tokens": 5},
        tools=[{"type": "mcp_server", "name": "x", "url": "https://x/mcp", "headers": {"A": "b"},
                "allowed_tools": [{"mode": "auto", "tools": ["t"]}]}])
    assert ok.status == "completed"


def test_stream_items_from_sdk_events_pair_results_with_calls_and_merge_deltas():
    """Wire shapes the emulator does not script: results without names, output streamed in deltas."""
    import pydantic
    from google.genai._gaos.types.interactions.interactionsseevent import InteractionSSEEvent

    from slackbot.gemini import CodeRun, ToolActivity, _StreamState

    adapter = pydantic.TypeAdapter(InteractionSSEEvent)
    state = _StreamState()
    events = [
        {"event_type": "step.start", "index": 1, "event_id": "e1",
         "step": {"type": "mcp_server_tool_call", "id": "c1", "name": "lookup", "server_name": "crm", "arguments": {}}},
        {"event_type": "step.stop", "index": 1, "event_id": "e2"},
        {"event_type": "step.start", "index": 2, "event_id": "e3",
         "step": {"type": "mcp_server_tool_result", "call_id": "c1", "result": {"isError": True}}},
        {"event_type": "step.stop", "index": 2, "event_id": "e4"},
        {"event_type": "step.start", "index": 3, "event_id": "e5",
         "step": {"type": "code_execution_call", "id": "c2", "arguments": {"code": "print(1)"}}},
        {"event_type": "step.stop", "index": 3, "event_id": "e6"},
        {"event_type": "step.start", "index": 4, "event_id": "e7",
         "step": {"type": "code_execution_result", "call_id": "c2", "result": ""}},
        {"event_type": "step.delta", "index": 4, "event_id": "e8", "delta": {"type": "code_execution_result", "result": "1"}},
        {"event_type": "step.delta", "index": 4, "event_id": "e8", "delta": {"type": "code_execution_result", "result": "1"}},
        {"event_type": "step.delta", "index": 4, "event_id": "e9", "delta": {"type": "code_execution_result", "result": "\n"}},
        {"event_type": "step.stop", "index": 4, "event_id": "e10"},
    ]
    items = [item for e in events for item in state.consume(adapter.validate_python(e))]
    assert items == [ToolActivity("mcp_server", "crm.lookup", "call"), ToolActivity("mcp_server", "crm.lookup", "failed"),
                     ToolActivity("code_execution", "code_execution", "call"),
                     ToolActivity("code_execution", "code_execution", "result"),
                     CodeRun(code="print(1)", output="1\n", outcome="ok", language="python", images=[])]


# 2: a long table streamed over several messages lands as one table block; surplus messages go
async def test_table_streamed_over_several_messages_lands_as_one_table(run_bot, slack_emu, gemini_emu):
    await run_bot(message_chars=600)
    rows = "\n".join(f"| region-{i:02d} | {i * 37 % 101} ms | {'yes' if i % 2 else 'no'} |" for i in range(70))
    gemini_emu.script(text=f"| Region | Latency | Replica |\n|---|---|---|\n{rows}\n\nAll regions replicate.",
                      chunk_chars=200, chunk_delay=0.05)
    delivery = await slack_emu.user_message("C_GENERAL", f"{MENTION} latency table please")
    root = delivery.message.ts
    await eventually(lambda: len(slack_emu.bot_messages("C_GENERAL", root)) >= 3, message="streamed in pieces")
    msgs = await settled(slack_emu, "C_GENERAL", root, lambda ms: len(ms) == 2 and tables(ms[0]))
    [table] = tables(msgs[0])
    assert len(table["rows"]) == 71 and table["rows"][70][0]["text"] == "region-69"
    assert md(msgs[1]).strip() == "All regions replicate."
    assert len(slack_emu.calls_to("chat.delete")) >= 1 and all(c.ok for c in slack_emu.calls_to("chat.delete"))


async def test_stream_turn_yields_thought_lines_tool_steps_citations_and_usage(settings_for, gemini_emu):
    """What the delivery planner consumes: gemini.stream_turn's typed items, over the real SDK."""
    from slackbot.gemini import Citation, Delta, Done, Gemini, Thought, ToolActivity

    gemini = Gemini(settings_for(tools="url_context"))
    gemini_emu.script(text="Read it.", thought="Opening the page.\nComparing the two versions",
                      tool_steps=[{"tool": "url_context", "urls": ["https://example.com/a"]}],
                      annotations=[{"url": "https://example.com/a", "title": "A"}])
    items = [item async for item in gemini.stream_turn("summarise https://example.com/a", None)]
    thoughts = [i.text for i in items if isinstance(i, Thought)]
    assert thoughts == ["Opening the page.", "Comparing the two versions"]  # whole lines only
    assert [i for i in items if isinstance(i, ToolActivity)] == [
        ToolActivity("url_context", "url_context", "call"),
        ToolActivity("url_context", "url_context", "result", (("https://example.com/a", ""),))]  # the URL it read
    assert [i for i in items if isinstance(i, Citation)] == [Citation("https://example.com/a", "A")]
    assert "".join(i.text for i in items if isinstance(i, Delta)) == "Read it."
    done = items[-1]
    assert isinstance(done, Done) and done.status == "completed"
    assert done.usage.output == 2 and done.usage.thought > 0 and done.usage.input > 0
