"""The Gemini emulator, driven only through the real google-genai SDK (plus /_emu controls)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

import aiohttp
import pytest
from google import genai
from google.genai import _interactions as gi
from google.genai import types

from slackbot_emulators.gemini import GeminiEmulator

MODEL = "gemini-3-flash-preview"
AGENT = "deep-research-pro-preview-12-2025"


@pytest.fixture
async def emu():
    emulator = GeminiEmulator(chunk_chars=8, chunk_delay=0.002)
    await emulator.start()
    yield emulator
    await emulator.stop()


def make_client(base_url: str, attempts: int = 3) -> genai.Client:
    retry = types.HttpRetryOptions(attempts=attempts, initial_delay=0.01, max_delay=0.05)
    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=base_url, retry_options=retry))


@pytest.fixture
def client(emu):
    # keep the Client referenced for the whole test: its async client dies with it
    return make_client(emu.base_url)


@pytest.fixture
def ai(client):
    return client.aio.interactions


async def collect(stream):
    return [event async for event in stream]


def text_of(events) -> str:
    return "".join(e.delta.text for e in events if e.event_type == "step.delta" and e.delta.type == "text")


async def wait_status(ai, iid, wanted: set[str], timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await ai.get(iid)
        if got.status in wanted or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- model turns
async def test_create_non_stream(ai, emu):
    r = await ai.create(model=MODEL, input="hello there")
    assert r.status == "completed"
    assert r.output_text == "Reply 1 to: hello there"
    assert [s.type for s in r.steps] == ["user_input", "model_output"]
    assert r.model == MODEL and r.id.startswith("v1_") and r.created and r.updated
    assert r.usage.total_output_tokens > 0 and r.usage.total_tokens >= r.usage.total_output_tokens
    assert emu.requests[0]["path"] == "/v1/interactions" and emu.requests[0]["status"] == 200
    assert emu.model_creates() == [{"model": MODEL, "input": "hello there"}]
    assert (await ai.get(r.id)).output_text == r.output_text


async def test_input_shapes(ai):
    block = {"type": "text", "text": "block"}
    assert (await ai.create(model=MODEL, input=block)).output_text == "Reply 1 to: block"
    two = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert (await ai.create(model=MODEL, input=two)).output_text == "Reply 1 to: a\nb"
    steps = [{"type": "user_input", "content": [{"type": "text", "text": "step"}]}]
    assert (await ai.create(model=MODEL, input=steps)).output_text == "Reply 1 to: step"


async def test_stream_deltas_equal_output(ai, emu):
    reply = "The quick brown fox jumps over the lazy dog. " * 3
    emu.script(text=reply, thought="Let me think about foxes.")
    events = await collect(await ai.create(model=MODEL, input="tell me", stream=True))
    kinds = [e.event_type for e in events]
    assert kinds[0] == "interaction.created" and kinds[-1] == "interaction.completed"
    assert kinds[-2] == "interaction.status_update" and events[-1].interaction.status == "completed"
    assert events[-1].interaction.usage.total_output_tokens > 0
    assert text_of(events) == reply
    thoughts = "".join(e.delta.content.text for e in events
                       if e.event_type == "step.delta" and e.delta.type == "thought_summary")
    assert thoughts == "Let me think about foxes."
    starts = [(e.index, e.step.type) for e in events if e.event_type == "step.start"]
    assert starts == [(1, "thought"), (2, "model_output")]  # index 0 is the user_input step
    assert [int(e.event_id.split("_")[1]) for e in events] == list(range(len(events)))
    got = await ai.get(events[0].interaction.id)
    assert got.output_text == reply and got.steps[1].summary[0].text == "Let me think about foxes."


async def test_scripts_are_fifo_and_matched(ai, emu):
    emu.script(match="weather", text="Sunny.")
    emu.script(text="First free plan.")
    assert (await ai.create(model=MODEL, input="hi")).output_text == "First free plan."
    assert (await ai.create(model=MODEL, input="the weather?")).output_text == "Sunny."
    assert (await ai.create(model=MODEL, input="hi")).output_text == "Reply 1 to: hi"


async def test_stream_pace(ai, emu):
    emu.script(text="x" * 40, chunk_chars=10, chunk_delay=0.05, first_token_delay=0.1)
    start = time.monotonic()
    stream = await ai.create(model=MODEL, input="slow", stream=True)
    first_text_at = None
    async for e in stream:
        if first_text_at is None and e.event_type == "step.delta":
            first_text_at = time.monotonic() - start
    assert first_text_at >= 0.09
    assert time.monotonic() - start >= 0.09 + 3 * 0.05 - 0.01


async def test_chain_depth(ai, emu):
    r1 = await ai.create(model=MODEL, input="one")
    r2 = await ai.create(model=MODEL, input="two", previous_interaction_id=r1.id)
    r3 = await ai.create(model=MODEL, input="three", previous_interaction_id=r2.id, stream=True)
    events = await collect(r3)
    assert r2.output_text == "Reply 2 to: two" and r2.previous_interaction_id == r1.id
    assert text_of(events) == "Reply 3 to: three"
    assert emu.model_creates()[2]["previous_interaction_id"] == r2.id


async def test_errors(ai, emu):
    with pytest.raises(gi.NotFoundError) as info:
        await ai.create(model=MODEL, input="x", previous_interaction_id="v1_nope")
    assert info.value.status_code == 404
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input="x", store=False, background=True)
    r = await ai.create(model=MODEL, input="unstored", store=False)
    assert r.output_text == "Reply 1 to: unstored"
    with pytest.raises(gi.NotFoundError):
        await ai.get(r.id)
    with pytest.raises(gi.BadRequestError):
        await ai.create(agent=AGENT, input="needs background")
    with pytest.raises(gi.NotFoundError):
        await ai.get("v1_unknown")
    assert [q["status"] for q in emu.requests] == [404, 400, 200, 404, 400, 404]


async def test_fail_status_is_retried_by_sdk(ai, emu):
    emu.script(fail_status=500, fail_times=2, text="finally")
    r = await ai.create(model=MODEL, input="flaky")
    assert r.output_text == "finally"
    assert [q["status"] for q in emu.requests] == [500, 500, 200]


async def test_fail_status_exhausts_retries(emu):
    client = make_client(emu.base_url, attempts=2)
    emu.script(fail_status=429, fail_times=5)
    with pytest.raises(gi.RateLimitError):
        await client.aio.interactions.create(model=MODEL, input="busy")
    assert [q["status"] for q in emu.requests] == [429, 429]


# ---------------------------------------------------------------- broken streams and resume
async def test_break_and_resume(ai, emu):
    reply = "Streaming answers get cut sometimes, and resume picks them up. " * 2
    emu.script(text=reply, break_after_events=5)
    stream = await ai.create(model=MODEL, input="cut me", stream=True)
    seen = []
    with pytest.raises(gi.APIConnectionError):
        async for e in stream:
            seen.append(e)
    assert len(seen) == 5
    iid = seen[0].interaction.id
    resumed = await collect(await ai.get(iid, stream=True, last_event_id=seen[-1].event_id))
    full = emu.interaction(iid)["events"]
    assert [e.event_id for e in resumed] == [e["event_id"] for e in full[5:]]
    assert text_of(seen + resumed) == reply
    assert resumed[-1].event_type == "interaction.completed"
    # a full replay (no last_event_id) is possible too
    assert len(await collect(await ai.get(iid, stream=True))) == len(full)


async def test_break_keeps_generating_server_side(ai, emu):
    emu.script(text="y" * 80, chunk_chars=8, chunk_delay=0.02, break_after_events=3)
    stream = await ai.create(model=MODEL, input="cut early", stream=True)
    seen = []
    with pytest.raises(gi.APIConnectionError):
        async for e in stream:
            seen.append(e)
    iid = seen[0].interaction.id
    assert (await ai.get(iid)).status == "in_progress"  # still generating
    resumed = await collect(await ai.get(iid, stream=True, last_event_id=seen[-1].event_id))
    assert text_of(seen + resumed) == "y" * 80


async def test_end_early_then_resume(ai, emu):
    emu.script(text="clean end early " * 3, end_early_after_events=4)
    seen = await collect(await ai.create(model=MODEL, input="short", stream=True))
    assert len(seen) == 4 and seen[-1].event_type != "interaction.completed"
    rest = await collect(await ai.get(seen[0].interaction.id, stream=True, last_event_id=seen[-1].event_id))
    assert text_of(seen + rest) == "clean end early " * 3


async def test_break_resume(ai, emu):
    emu.script(text="z" * 64, break_after_events=3, break_resume=True)
    stream = await ai.create(model=MODEL, input="doomed", stream=True)
    seen = []
    with pytest.raises(gi.APIConnectionError):
        async for e in stream:
            seen.append(e)
    iid = seen[0].interaction.id
    with pytest.raises(gi.APIConnectionError):
        await collect(await ai.get(iid, stream=True, last_event_id=seen[-1].event_id))
    assert (await wait_status(ai, iid, {"completed"})).output_text == "z" * 64  # polling still works


async def test_error_event(ai, emu):
    emu.script(text="half of this answer", error_event="model overloaded")
    events = await collect(await ai.create(model=MODEL, input="oops", stream=True))
    assert events[-1].event_type == "error" and events[-1].error.message == "model overloaded"
    got = await ai.get(events[0].interaction.id)
    assert got.status == "failed" and got.errors[0].message == "model overloaded"


# ---------------------------------------------------------------- agents
async def test_agent_progression(ai, emu):
    emu.script_agent(queued_for=0.15, run_for=0.6, thoughts=["Planning", "Searching", "Writing"])
    r = await ai.create(agent=AGENT, input="Research emulators", background=True,
                        agent_config={"type": "deep-research", "thinking_summaries": "auto"})
    assert r.status == "queued" and r.agent == AGENT
    statuses, thought_counts = [r.status], []
    while statuses[-1] not in ("completed", "failed"):
        await asyncio.sleep(0.03)
        got = await ai.get(r.id)
        statuses.append(got.status)
        thought_counts.append(sum(s.type == "thought" for s in got.steps))
    assert statuses[0] == "queued" and "in_progress" in statuses and statuses[-1] == "completed"
    assert thought_counts == sorted(thought_counts) and 0 < min(c for c in thought_counts if c) < 3
    assert [s.summary[0].text for s in got.steps if s.type == "thought"] == ["Planning", "Searching", "Writing"]
    report = got.output_text
    assert len(report) > 4500 and "## Sources" in report and "|---|" in report and "```" in report
    notes = got.steps[-1].content[0].annotations
    assert notes and all(n.type == "url_citation" for n in notes)
    assert all(report[n.start_index:n.end_index].startswith("[") for n in notes)


async def test_agent_stream_and_chain(ai, emu):
    emu.script_agent(queued_for=0.05, run_for=0.2, thoughts=["One", "Two"], report="# Short report")
    r = await ai.create(agent=AGENT, input="topic", background=True)
    events = await collect(await ai.get(r.id, stream=True))
    summaries = [e.delta.content.text for e in events if e.event_type == "step.delta"
                 and e.delta.type == "thought_summary"]
    assert summaries == ["One", "Two"] and text_of(events) == "# Short report"
    assert [e.status for e in events if e.event_type == "interaction.status_update"] == \
        ["queued", "in_progress", "completed"]
    follow = await ai.create(model=MODEL, input="summarise it", previous_interaction_id=r.id)
    assert follow.output_text == "Reply 2 to: summarise it"


async def test_agent_explicit_statuses(ai, emu):
    emu.script_agent(statuses=[["queued", 0.05], ["requires_action", 0.3], ["mystery_status", 0.1]],
                     final_status="incomplete")
    r = await ai.create(agent=AGENT, input="odd", background=True)
    assert (await wait_status(ai, r.id, {"requires_action"})).status == "requires_action"
    # the stream shows every phase; polling could miss a short one (client GC pauses reach 100 ms)
    events = await collect(await ai.get(r.id, stream=True))
    statuses = [e.status for e in events if e.event_type == "interaction.status_update"]
    assert statuses == ["queued", "requires_action", "mystery_status", "incomplete"]  # SDK keeps unknown strings
    assert events[-1].interaction.status == "incomplete"
    assert (await ai.get(r.id)).status == "incomplete"


async def test_agent_cancel(ai, emu):
    emu.script_agent(queued_for=0.0, run_for=30)
    r = await ai.create(agent=AGENT, input="long job", background=True)
    stream = await ai.get(r.id, stream=True)
    cancelled = await ai.cancel(r.id)
    assert cancelled.status == "cancelled"
    events = await asyncio.wait_for(collect(stream), 2)  # the open stream ends promptly
    assert events[-1].event_type == "interaction.completed" and events[-1].interaction.status == "cancelled"
    assert (await ai.get(r.id)).status == "cancelled"
    with pytest.raises(gi.BadRequestError):
        await ai.cancel(r.id)  # already terminal


# ---------------------------------------------------------------- retention and deletion
async def test_forget_and_delete(ai, emu):
    r1 = await ai.create(model=MODEL, input="remember me")
    r2 = await ai.create(model=MODEL, input="and me")
    emu.forget(r1.id)
    with pytest.raises(gi.NotFoundError):
        await ai.get(r1.id)
    with pytest.raises(gi.NotFoundError):
        await ai.create(model=MODEL, input="again", previous_interaction_id=r1.id)
    await ai.delete(r2.id)
    with pytest.raises(gi.NotFoundError):
        await ai.create(model=MODEL, input="again", previous_interaction_id=r2.id)
    assert emu.interaction(r1.id)["gone"] is True  # still inspectable


# ---------------------------------------------------------------- showcase answers (the sandbox without a key)
async def test_asking_for_a_table_code_or_a_list_gets_one_every_time(ai, emu):
    tables = [(await ai.create(model=MODEL, input="Show me a TABLE of databases")).output_text for _ in range(2)]
    assert tables[0] == tables[1], "deterministic: the same question, the same answer"
    assert "| Store | Best for | Trade-off |\n|---|---|---|\n| Redis |" in tables[0]
    code = (await ai.create(model=MODEL, input="write a function that retries")).output_text
    assert "```python\nimport time\n" in code and code.count("```") == 2
    checklist = (await ai.create(model=MODEL, input="a checklist for debugging")).output_text
    assert "\n1. **Reproduce**" in checklist and "\n- Keep the notes" in checklist
    everything = (await ai.create(model=MODEL, input="show off some markdown")).output_text
    assert all(part in everything for part in ("## show off some markdown", "**bold**", "|---|", "```python", "> "))
    assert (await ai.create(model=MODEL, input="tablet or laptop?")).output_text == "Reply 1 to: tablet or laptop?"
    emu.script(text="scripted")
    assert (await ai.create(model=MODEL, input="a table please")).output_text == "scripted"  # a script wins


async def test_showcase_sources_and_code_runs_need_their_tools_declared(ai):
    question = "search the latest news on heat pumps"
    assert (await ai.create(model=MODEL, input=question)).output_text == f"Reply 1 to: {question}"
    events = await collect(await ai.create(model=MODEL, input=question, stream=True,
                                           tools=[{"type": "google_search"}]))
    steps = [e.step.type for e in events if e.event_type == "step.start"]
    assert steps == ["google_search_call", "google_search_result", "model_output"]
    answer = (await ai.get(events[0].interaction.id)).steps[-1].content[0]
    notes = answer.annotations
    assert [n.title for n in notes] == ["News analysis", "Official guidance"]
    first = answer.text.encode()[notes[0].start_index:notes[0].end_index].decode()
    assert first == "agrees on the main trend"  # the citation anchors the words it supports
    run = await collect(await ai.create(model=MODEL, input="calculate the mean", stream=True,
                                        tools=[{"type": "code_execution"}]))
    [result] = [e.step for e in run if e.event_type == "step.start" and e.step.type == "code_execution_result"]
    assert result.result[0].text == "3.875\n" and result.result[1].mime_type == "image/png"
    assert base64.b64decode(result.result[1].data)[:8] == b"\x89PNG\r\n\x1a\n"  # a chart a page can show


# ---------------------------------------------------------------- load and out-of-process controls
async def test_many_concurrent_streams(ai, emu):
    async def one(n):
        return text_of(await collect(await ai.create(model=MODEL, input=f"n{n}", stream=True)))

    texts = await asyncio.gather(*(one(n) for n in range(60)))
    assert texts == [f"Reply 1 to: n{n}" for n in range(60)]


async def test_http_controls(ai, emu):
    async with aiohttp.ClientSession(emu.base_url) as http:
        assert (await http.post("/_emu/config", json={"chunk_chars": 5})).status == 200
        await http.post("/_emu/script", json={"text": "scripted over http"})
        await http.post("/_emu/script_agent", json={"queued_for": 0, "run_for": 0, "report": "R"})
        r = await ai.create(model=MODEL, input="q", stream=True)
        events = await collect(r)
        assert text_of(events) == "scripted over http"
        assert sum(e.event_type == "step.delta" for e in events) == 4  # 18 chars / 5
        iid = events[0].interaction.id
        record = await (await http.get(f"/_emu/interactions/{iid}")).json()
        assert record["output_text"] == "scripted over http" and record["status"] == "completed"
        a = await ai.create(agent=AGENT, input="a", background=True)
        assert (await wait_status(ai, a.id, {"completed"})).output_text == "R"
        log = await (await http.get("/_emu/requests")).json()
        assert {q["method"] for q in log} == {"POST", "GET"} and "/_emu" not in str(log)
        beta = await http.get(f"/v1beta/interactions/{iid}", headers={"x-goog-api-key": "k"})
        assert beta.status == 200 and (await beta.json())["status"] == "completed"  # other prefixes work
        logs = await (await http.get("/_emu/logs")).json()
        assert logs["stored_ids"] == [iid, a.id] and logs["deleted"] == logs["function_results"] == []
        await http.post(f"/_emu/forget/{iid}", json={})
        with pytest.raises(gi.NotFoundError):
            await ai.get(iid)
        await http.post("/_emu/reset", json={})
        assert await (await http.get("/_emu/requests")).json() == []
        raw = await http.get("/v1/interactions/whatever")  # no API key at all
        assert raw.status == 403 and (await raw.json())["error"]["status"] == "PERMISSION_DENIED"


async def test_cli_runs_standalone():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slackbot_emulators.gemini", "--port", "0", "--chunk-chars", "4",
        stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        url = line.strip().rsplit(" ", 1)[-1]
        client = make_client(url)
        r = await client.aio.interactions.create(model=MODEL, input="cli")
        assert r.output_text == "Reply 1 to: cli"
    finally:
        proc.terminate()
        await proc.wait()


# ---------------------------------------------------------------- Enterprise Agent Platform paths
def _jwt(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


async def test_enterprise_paths_take_only_a_token_the_emulator_issued(emu):
    from google.oauth2.credentials import Credentials

    claims = {"iss": "bot@p.iam.gserviceaccount.com", "aud": f"{emu.base_url}/token",
              "scope": "https://www.googleapis.com/auth/cloud-platform", "iat": time.time(), "exp": time.time() + 600}
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    async with aiohttp.ClientSession(emu.base_url) as http:
        wrong = await http.post("/token", data={"grant_type": "password", "assertion": _jwt(claims)})
        assert wrong.status == 400 and (await wrong.json())["error"] == "unsupported_grant_type"
        expired = await http.post("/token", data={"grant_type": grant, "assertion": _jwt({**claims, "exp": 1})})
        assert expired.status == 400 and (await expired.json())["error"] == "invalid_grant"
        issued = await (await http.post("/token", data={"grant_type": grant, "assertion": _jwt(claims)})).json()
        assert issued["token_type"] == "Bearer" and issued["expires_in"] > 0
        path = "/v1beta1/projects/p/locations/us-central1/interactions/x"
        for headers in ({"x-goog-api-key": "k"}, {"Authorization": "Bearer not-issued"}):
            refused = await http.get(path, headers=headers)
            assert refused.status == 401 and (await refused.json())["error"]["status"] == "UNAUTHENTICATED"
    client = genai.Client(enterprise=True, project="p", location="us-central1",
                          credentials=Credentials(token=issued["access_token"]),
                          http_options=types.HttpOptions(base_url=emu.base_url))
    r = await client.aio.interactions.create(model=MODEL, input="hi")
    assert r.output_text == "Reply 1 to: hi"
    assert (await client.aio.interactions.get(r.id)).status == "completed"
    sdk_calls = [q for q in emu.requests if q["status"] == 200]
    assert [q["path"] for q in sdk_calls] == ["/v1beta1/projects/p/locations/us-central1/interactions",
                                              f"/v1beta1/projects/p/locations/us-central1/interactions/{r.id}"]
    assert {q["bearer"] for q in sdk_calls} == {issued["access_token"]}


# ---------------------------------------------------------------- function calling (issue 20)
SEARCH = {"type": "function", "name": "search_slack", "description": "Search Slack messages",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                          "channels": {"type": "array", "items": {"type": "string"}}},
                         "required": ["query"]}}
WHO = {"type": "function", "name": "who_is", "parameters": {"type": "object", "properties": {"user": {"type": "string"}}}}


async def test_function_calls_stream_as_the_sdk_types_them_and_chain_to_a_final_answer(ai, emu):
    emu.script(match="launch", calls=[{"name": "search_slack", "arguments": {"query": "Q3 launch"}, "id": "c1"},
                                      {"name": "who_is", "arguments": {"user": "U123"}}],
               then_text="The launch moved to October [1].")
    events = await collect(await ai.create(model=MODEL, input="what about the launch?", stream=True,
                                           tools=[SEARCH, WHO]))
    starts = [e for e in events if e.event_type == "step.start"]
    assert [(e.index, e.step.type, e.step.name) for e in starts] == [(1, "function_call", "search_slack"),
                                                                     (2, "function_call", "who_is")]
    assert starts[0].step.id == "c1" and starts[0].step.arguments == {}  # arguments stream as deltas
    streamed = {}
    for e in events:
        if e.event_type == "step.delta":
            assert e.delta.type == "arguments_delta"
            streamed[e.index] = streamed.get(e.index, "") + e.delta.arguments
    assert json.loads(streamed[1]) == {"query": "Q3 launch"} and json.loads(streamed[2]) == {"user": "U123"}
    assert events[-1].interaction.status == "requires_action"
    first = await ai.get(events[0].interaction.id)
    calls = [s for s in first.steps if s.type == "function_call"]
    assert [(c.id, c.name, c.arguments) for c in calls][0] == ("c1", "search_slack", {"query": "Q3 launch"})
    assert calls[1].id.startswith("call_") and first.status == "requires_action"

    results = [{"type": "function_result", "call_id": "c1", "name": "search_slack", "result": "Bob: launch is Oct 3"},
               {"type": "function_result", "call_id": calls[1].id, "result": [{"type": "text", "text": "Bob, PM"}]}]
    final = await collect(await ai.create(model=MODEL, input=results, previous_interaction_id=first.id,
                                          tools=[SEARCH, WHO], stream=True))
    assert text_of(final) == "The launch moved to October [1]." and final[-1].interaction.status == "completed"
    got = await ai.get(final[0].interaction.id)
    assert [s.type for s in got.steps] == ["function_result", "function_result", "model_output"]
    assert [(r["call_id"], r["name"], r["result"]) for r in emu.function_results] == [
        ("c1", "search_slack", "Bob: launch is Oct 3"), (calls[1].id, "who_is", [{"type": "text", "text": "Bob, PM"}])]


async def test_function_results_are_checked_against_the_pending_calls(ai, emu):
    emu.script(calls=[{"name": "search_slack", "arguments": {"query": "x"}, "id": "c1"},
                      {"name": "who_is", "arguments": {"user": "U1"}, "id": "c2"}])
    first = await ai.create(model=MODEL, input="q", tools=[SEARCH, WHO])
    assert first.status == "requires_action"

    def result(call_id, name=None):
        return {"type": "function_result", "call_id": call_id, "result": "r", **({"name": name} if name else {})}
    for wrong in ([result("c1")],  # one call left unanswered
                  [result("c1"), result("c2"), result("c9")],  # an id nobody called
                  [result("c1", "who_is"), result("c2")],  # the wrong function's name
                  "just text, no results"):
        with pytest.raises(gi.BadRequestError) as info:
            await ai.create(model=MODEL, input=wrong, previous_interaction_id=first.id)
        assert info.value.body["error"]["status"] == "INVALID_ARGUMENT"
    done = await ai.create(model=MODEL, input=[result("c2"), result("c1")], previous_interaction_id=first.id)
    assert done.status == "completed" and done.output_text == "Reply 2 to: r\nr"  # the default echoes results
    plain = await ai.create(model=MODEL, input="no calls pending here")
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input=[result("c1")], previous_interaction_id=plain.id)


async def test_several_call_steps_then_text_and_undeclared_functions_are_never_called(ai, emu):
    emu.script(calls=[[{"name": "search_slack", "arguments": {"query": "a"}}],
                      [{"name": "who_is", "arguments": {"user": "U2"}}]], then_text="Two steps later.")
    one = await ai.create(model=MODEL, input="q", tools=[SEARCH, WHO])
    [c1] = [s for s in one.steps if s.type == "function_call"]
    two = await ai.create(model=MODEL, input=[{"type": "function_result", "call_id": c1.id, "result": "A"}],
                          previous_interaction_id=one.id, tools=[SEARCH, WHO])
    [c2] = [s for s in two.steps if s.type == "function_call"]
    assert two.status == "requires_action" and c2.name == "who_is"
    three = await ai.create(model=MODEL, input=[{"type": "function_result", "call_id": c2.id, "result": "B"}],
                            previous_interaction_id=two.id, tools=[SEARCH, WHO])
    assert three.output_text == "Two steps later."
    # a profile that does not offer who_is (or tool_choice none) gets no call for it
    emu.script(calls=[{"name": "who_is", "arguments": {}}], then_text="Answered without calling.")
    r = await ai.create(model=MODEL, input="q", tools=[SEARCH])
    assert r.status == "completed" and r.output_text == "Answered without calling."
    emu.script(calls=[{"name": "search_slack", "arguments": {}}], then_text="No tools today.")
    r = await ai.create(model=MODEL, input="q", tools=[SEARCH], generation_config={"tool_choice": "none"})
    assert r.output_text == "No tools today."


@pytest.mark.parametrize("tool", [
    {"type": "function"},  # no name
    {"type": "function", "name": "9lives"},
    {"type": "function", "name": "x" * 65},
    {"type": "function", "name": "f", "parameters": {"type": "string"}},
    {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "text"}}}},
    {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}},
    {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}, "required": ["a"]}},
    {"type": "function", "name": "f", "strict": True},
])
async def test_function_declarations_are_validated(ai, tool):
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input="q", tools=[tool])


async def test_duplicate_function_names_and_bad_tool_choice_are_refused(ai):
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input="q", tools=[SEARCH, SEARCH])
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input="q", tools=[SEARCH], generation_config={"tool_choice": "sometimes"})


# ---------------------------------------------------------------- images (issue 21)
IMAGE_MODEL = "gemini-3-pro-image-preview"


def image_of(interaction):
    [image] = [c for s in interaction.steps if s.type == "model_output" for c in s.content or [] if c.type == "image"]
    return image


async def test_image_models_return_decodable_pngs_that_encode_the_prompt(ai, emu):
    from slackbot_emulators.gemini_images import read_png

    r = await ai.create(model=IMAGE_MODEL, input="a lighthouse at dusk", response_modalities=["image"],
                        generation_config={"image_config": {"aspect_ratio": "16:9", "image_size": "1K"}})
    image = image_of(r)
    assert r.status == "completed" and image.mime_type == "image/png" and r.output_image.data == image.data
    assert r.output_text == ""  # images only, as asked
    width, height, pixel = read_png(base64.b64decode(image.data))
    assert (width, height) == (85, 48)  # 1K 16:9 (1360x768 at full size), shrunk 16 times by default
    [asked] = emu.image_requests
    assert pixel(0, 0) == asked["colours"][0] and pixel(0, height - 1) == asked["colours"][3]
    again = await ai.create(model=IMAGE_MODEL, input="a lighthouse at dusk", response_modalities=["image"],
                            generation_config={"image_config": {"aspect_ratio": "16:9", "image_size": "1K"}})
    assert image_of(again).data == image.data  # deterministic
    other = await ai.create(model=IMAGE_MODEL, input="a lighthouse at dawn", response_modalities=["image"])
    assert read_png(base64.b64decode(image_of(other).data))[:2] == (64, 64)  # 1:1 1K by default
    usage = r.usage
    assert {m.modality: m.tokens for m in usage.output_tokens_by_modality}["image"] == 1120
    assert usage.total_output_tokens >= 1120


async def test_image_stream_text_and_image_and_response_format(ai, emu):
    emu.script(text="Here is your banner.")
    events = await collect(await ai.create(model="gemini-3.1-flash-image-preview", input="a banner", stream=True,
                                           response_format={"type": "image", "aspect_ratio": "4:1", "image_size": "2K"}))
    deltas = [e.delta for e in events if e.event_type == "step.delta"]
    assert text_of(events) == "Here is your banner." and deltas[-1].type == "image"
    assert deltas[-1].mime_type == "image/png" and base64.b64decode(deltas[-1].data)[:4] == b"\x89PNG"
    assert emu.image_requests[-1]["aspect_ratio"] == "4:1" and emu.image_requests[-1]["image_size"] == "2K"
    got = await ai.get(events[0].interaction.id)
    assert [c.type for c in got.steps[-1].content] == ["text", "image"] and got.output_text == "Here is your banner."


async def test_image_edits_take_the_input_image_and_differ_from_a_generation(ai, emu):
    shot = base64.b64encode(b"\x89PNG fake screenshot bytes").decode()
    edit = await ai.create(model=IMAGE_MODEL, response_modalities=["image"], input=[
        {"type": "text", "text": "make the background white"}, {"type": "image", "mime_type": "image/png", "data": shot}])
    plain = await ai.create(model=IMAGE_MODEL, response_modalities=["image"], input="make the background white")
    assert image_of(edit).data != image_of(plain).data
    asked = emu.image_requests[0]
    assert asked["prompt"] == "make the background white" and asked["input_images"][0]["bytes"] == 26


async def test_image_refusals_and_requests_the_api_refuses(ai, emu):
    emu.script(refuse_image=True, text="I can't make that picture.")
    r = await ai.create(model=IMAGE_MODEL, input="something unsafe")
    output = r.steps[-1]
    assert r.status == "completed" and r.output_image is None and all(c.type != "image" for c in output.content)
    assert output.error.details[0]["reason"] == "IMAGE_SAFETY" and r.output_text == "I can't make that picture."
    assert emu.image_requests[-1]["refused"] is True
    with pytest.raises(gi.BadRequestError) as info:
        await ai.create(model=MODEL, input="draw a cat", response_modalities=["image"])
    assert info.value.body["error"]["message"] == "Model does not support the requested response modalities: image"
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=MODEL, input="draw", response_format={"type": "image"})
    for config in ({"aspect_ratio": "7:3"}, {"image_size": "8K"}):
        with pytest.raises(gi.BadRequestError):
            await ai.create(model=IMAGE_MODEL, input="x", generation_config={"image_config": config})
    with pytest.raises(gi.BadRequestError):
        await ai.create(model=IMAGE_MODEL, input="x", response_modalities=["IMAGE"])  # the SDK spells it "image"


async def test_a_4k_image_at_full_size_for_the_memory_benchmark(ai, emu):
    from slackbot_emulators.gemini_images import read_png

    emu.script(image_scale=1, image_noise=True)
    r = await ai.create(model=IMAGE_MODEL, input="a detailed city map", response_modalities=["image"],
                        generation_config={"image_config": {"image_size": "4K"}})
    png = base64.b64decode(image_of(r).data)
    width, height, pixel = read_png(png)
    assert (width, height) == (4096, 4096) and len(png) > 20_000_000  # as large as a photograph
    assert {m.modality: m.tokens for m in r.usage.output_tokens_by_modality}["image"] == 2000


# ---------------------------------------------------------------- Deep Research options and webhooks (issue 22)
PLANNING = {"type": "deep-research", "collaborative_planning": True, "thinking_summaries": "auto"}


async def test_collaborative_planning_waits_for_the_plan_then_reports_on_it(ai, emu):
    emu.script_agent(queued_for=0, run_for=0.05, plan_steps=["Read the EU AI Act", "Compare national rules"])
    plan = await ai.create(agent="deep-research-preview-04-2026", input="AI rules in Europe", background=True,
                           agent_config=PLANNING)
    plan = await wait_status(ai, plan.id, {"completed"})
    assert "1. Read the EU AI Act\n2. Compare national rules" in plan.output_text and "## " not in plan.output_text
    emu.script_agent(queued_for=0, run_for=0.05, plan_steps=["Read the EU AI Act", "Add the UK"])
    revised = await ai.create(agent="deep-research-preview-04-2026", input="Add the UK too", background=True,
                              agent_config=PLANNING, previous_interaction_id=plan.id)
    revised = await wait_status(ai, revised.id, {"completed"})
    assert "2. Add the UK" in revised.output_text and "Revised as asked: Add the UK too" in revised.output_text
    emu.script_agent(queued_for=0, run_for=0.05)
    run = await ai.create(agent="deep-research-preview-04-2026", input="Looks good, start.", background=True,
                          agent_config={**PLANNING, "collaborative_planning": False},
                          previous_interaction_id=revised.id)
    report = (await wait_status(ai, run.id, {"completed"})).output_text
    assert report.startswith("# Research report: AI rules in Europe")  # the chain's question, not "start"
    assert "## Plan followed" in report and "2. Add the UK" in report and "Looks good, start." in report


async def test_visualization_puts_charts_in_the_report_where_the_text_refers_to_them(ai, emu):
    from slackbot_emulators.gemini_images import read_png

    emu.script_agent(queued_for=0, run_for=0.05, charts=2)
    r = await ai.create(agent="deep-research-max-preview-04-2026", input="heat pumps", background=True,
                        agent_config={"type": "deep-research", "visualization": "auto", "thinking_summaries": "none"})
    got = await wait_status(ai, r.id, {"completed"})
    assert not [s for s in got.steps if s.type == "thought"]  # thinking_summaries none
    content = got.steps[-1].content
    assert [c.type for c in content] == ["text", "image", "text", "image", "text"]
    for n, at in ((1, 0), (2, 2)):
        assert f"Figure {n}:" in content[at].text and content[at].text.rstrip().endswith("is shown below.")
        assert read_png(base64.b64decode(content[at + 1].data))[0] > 0
    assert sum(len(c.annotations or []) for c in content if c.type == "text") == 6  # citations kept, per part
    for part in (c for c in content if c.type == "text"):
        for note in part.annotations or []:
            assert part.text[note.start_index:note.end_index].startswith("[")
    events = await collect(await ai.get(r.id, stream=True))
    assert [e.delta.type for e in events if e.event_type == "step.delta"].count("image") == 2


@pytest.mark.parametrize("config", [{"type": "deep-research", "visualization": "always"},
                                    {"type": "deep-research", "planning": True}])
async def test_agent_config_is_validated(ai, config):
    with pytest.raises(gi.BadRequestError):
        await ai.create(agent=AGENT, input="x", background=True, agent_config=config)


async def test_unknown_agents_are_not_found(ai):
    with pytest.raises(gi.NotFoundError):
        await ai.create(agent="deep-research-ultra", input="x", background=True)


@pytest.fixture
async def hook_server():
    """A loopback receiver that records each webhook POST (headers and JSON body)."""
    from aiohttp import web

    got: list[dict] = []
    arrived = asyncio.Event()

    async def receive(request):
        got.append({"path": request.path, "headers": dict(request.headers), "body": await request.json()})
        arrived.set()
        return web.json_response({})
    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", got, arrived
    await runner.cleanup()


async def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_webhooks_fire_when_a_background_interaction_completes_fails_or_needs_action(ai, emu, hook_server):
    base, got, _ = hook_server
    hook = {"uris": [f"{base}/gemini/webhook", "https://example.com/hook"], "user_metadata": {"job": "j1"}}
    emu.script_agent(queued_for=0.05, run_for=0.1)
    done = await ai.create(agent=AGENT, input="topic", background=True, webhook_config=hook)
    await wait_for(lambda: len(got) == 1)
    assert got[0]["path"] == "/gemini/webhook"
    assert got[0]["body"]["type"] == "interaction.completed"
    assert got[0]["body"]["data"] == {"id": done.id, "status": "completed", "user_metadata": {"job": "j1"}}
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(got[0]["headers"])
    assert (await ai.get(done.id)).status == "completed"  # the hint came after completion
    assert [d.get("skipped") for d in emu.webhook_deliveries] == [None, "not a loopback address"]

    emu.script_agent(queued_for=0, run_for=0.05, final_status="failed")
    failed = await ai.create(agent=AGENT, input="doomed", background=True, webhook_config=hook)
    emu.script(calls=[{"name": "search_slack", "arguments": {"query": "q"}}])
    waiting = await ai.create(model=MODEL, input="q", tools=[SEARCH], background=True, webhook_config=hook)
    await wait_for(lambda: len(got) == 3)
    assert {(g["body"]["data"]["id"], g["body"]["type"]) for g in got[1:]} == {
        (failed.id, "interaction.failed"), (waiting.id, "interaction.requires_action")}

    emu.script_agent(queued_for=0, run_for=30)
    cancelled = await ai.create(agent=AGENT, input="stop me", background=True, webhook_config=hook)
    await ai.cancel(cancelled.id)
    emu.script_agent(queued_for=0, run_for=0.05)
    last = await ai.create(agent=AGENT, input="sentinel", background=True, webhook_config=hook)
    await wait_for(lambda: len(got) == 4)
    assert got[3]["body"]["data"]["id"] == last.id  # no event for the cancelled one


async def test_webhook_config_is_validated(ai):
    for config in ({"uris": ["ftp://127.0.0.1/x"]}, {"uris": ["not a url"]}, {"url": "http://127.0.0.1/x"}):
        with pytest.raises(gi.BadRequestError):
            await ai.create(agent=AGENT, input="x", background=True, webhook_config=config)


# ---------------------------------------------------------------- deletion (issue 24)
async def test_delete_is_recorded_scrubs_the_text_and_answers_404_afterwards(ai, emu):
    emu.script(calls=[{"name": "search_slack", "arguments": {"query": "salaries"}, "id": "c1"}])
    asked = await ai.create(model=MODEL, input="secret plans for Project Falcon", tools=[SEARCH])
    answered = await ai.create(model=MODEL, previous_interaction_id=asked.id, tools=[SEARCH],
                               input=[{"type": "function_result", "call_id": "c1", "result": "Falcon budget 3M"}])
    kept = await ai.create(model=MODEL, input="an unrelated question")
    assert emu.contains_text("Project Falcon") and emu.contains_text("Falcon budget 3M")
    await ai.delete(answered.id)
    await ai.delete(asked.id)
    assert [d["id"] for d in emu.deleted] == [answered.id, asked.id]
    assert emu.stored_ids() == [kept.id]
    assert not emu.contains_text("Project Falcon") and not emu.contains_text("Falcon budget 3M")
    assert emu.contains_text("an unrelated question")
    for gone in (asked.id, answered.id):
        with pytest.raises(gi.NotFoundError):
            await ai.get(gone)
        with pytest.raises(gi.NotFoundError):
            await collect(await ai.get(gone, stream=True))
        with pytest.raises(gi.NotFoundError):
            await ai.create(model=MODEL, input="go on", previous_interaction_id=gone)
        with pytest.raises(gi.NotFoundError):
            await ai.delete(gone)  # a second delete finds nothing
    assert emu.interaction(asked.id)["gone"] is True and emu.interaction(asked.id)["status"] == "requires_action"
