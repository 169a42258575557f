"""Unit tests of the pure final-answer rendering (slack_out/answer.py): tables, sources, code runs."""

from __future__ import annotations

import pytest

from slackbot_emulators.slack import SlackError, parse_blocks
from slackbot.gemini import Citation, CodeRun, Image
from slackbot.slack_out.answer import final_messages, sources_markdown, split_tables

TABLE = "| Feature | Postgres | MySQL |\n|:---|:---:|---:|\n| Replication | **streaming** | `binlog` |\n| Failover | Patroni | [Orchestrator](https://x.example) |"


def tables_in(payload):
    return [b for b in payload["blocks"] if b["type"] == "table"]


def markdown_of(payload):
    return "".join(b["text"] for b in payload["blocks"] if b["type"] == "markdown")


def test_plain_answer_is_one_markdown_message():
    [msg] = final_messages("Hello **there**", limit=3500)
    assert msg["blocks"] == [{"type": "markdown", "text": "Hello **there**"}]
    assert msg["text"] == "Hello **there**"


def test_markdown_table_becomes_a_table_block_closing_the_text_before_it():
    msgs = final_messages(f"Compare:\n\n{TABLE}\n\nIn short: both work.", limit=3500)
    assert len(msgs) == 2  # one table per message: the text after it starts the next message
    first, second = msgs
    assert markdown_of(first).strip() == "Compare:"
    [table] = tables_in(first)
    assert first["blocks"][-1] is table  # drawn after the message's text
    assert [c["text"] for c in table["rows"][0]] == ["Feature", "Postgres", "MySQL"]
    assert [c["text"] for c in table["rows"][1]] == ["Replication", "streaming", "binlog"]  # no raw markup
    assert table["rows"][2][2]["text"] == "Orchestrator"
    assert [s["align"] for s in table["column_settings"]] == ["left", "center", "right"]
    assert "| Replication |" in first["text"]  # the fallback keeps the table readable
    assert markdown_of(second).strip() == "In short: both work."
    for m in msgs:
        parse_blocks(m["blocks"])  # valid as the Slack emulator (Slack's documented limits) sees it


def test_two_tables_go_to_two_messages():
    msgs = final_messages(f"{TABLE}\n\nand\n\n{TABLE}", limit=3500)
    assert [len(tables_in(m)) for m in msgs] == [1, 1]
    assert markdown_of(msgs[1]).strip() == "and"


def test_table_beyond_slack_limits_falls_back_to_code_block():
    wide = "|" + "|".join(f"c{i}" for i in range(21)) + "|\n|" + "---|" * 21 + "\n|" + "x|" * 21
    long = "| n | sq |\n|---|---|\n" + "\n".join(f"| {i} | {i*i} |" for i in range(120))
    for md in (wide, long):
        msgs = final_messages(md, limit=3500)
        assert not any(tables_in(m) for m in msgs)
        assert markdown_of(msgs[0]).startswith("```\n")
        for m in msgs:
            parse_blocks(m["blocks"])


def test_table_in_code_block_stays_code():
    md = f"```\n{TABLE}\n```"
    assert split_tables(md) == [md]


def test_sources_numbered_deduplicated_escaped_with_host():
    cites = [Citation("https://www.example.com/a", "Alpha <b>&"), Citation("https://www.example.com/a/", "dup"),
             Citation("https://news.example.org/x(1)", "News [breaking]"), Citation("javascript:alert(1)", "bad"),
             Citation("", "handbook.pdf")]
    md = sources_markdown(cites)
    lines = md.splitlines()
    assert lines[0] == "**Sources**"
    assert lines[1] == "1. [Alpha &lt;b&gt;&amp;](https://www.example.com/a) · example.com"
    assert lines[2] == "2. [News (breaking)](https://news.example.org/x%281%29) · news.example.org"
    assert lines[3] == "3. handbook.pdf"
    assert len(lines) == 4  # the duplicate and the non-http link are gone


def test_sources_bounded_and_last():
    cites = [Citation(f"https://s{i}.example/", f"Source {i}") for i in range(30)]
    msgs = final_messages("Answer.", cites, limit=3500, max_sources=5)
    md = markdown_of(msgs[-1])
    assert md.startswith("Answer.")
    assert "5. [Source 4]" in md and "6. [" not in md and "…and 25 more" in md


def test_code_run_is_a_labelled_block_with_trimmed_output():
    run = CodeRun(code="for i in range(10000): print(i)", output="\n".join(map(str, range(10000))), outcome="ok",
                  images=[Image("image/png", b"png")])
    msgs = final_messages("Done.", code_runs=[run], limit=3500, output_chars=200)
    md = "".join(markdown_of(m) for m in msgs)
    assert "**Code run** (python, ran)" in md
    assert "```python\nfor i in range(10000): print(i)\n```" in md
    assert "more characters of output not shown" in md
    assert "1 image attached below" in md
    assert len(md) < 1000


def test_code_with_backticks_gets_a_longer_fence():
    run = CodeRun(code='print("```")', output="```", outcome="error")
    md = markdown_of(final_messages("", code_runs=[run])[0])
    assert "(python, failed)" in md and "````python" in md


def test_long_answer_with_table_respects_limit():
    para = ("word " * 150).strip()
    md = "\n\n".join([para] * 4 + [TABLE] + [para] * 4)
    msgs = final_messages(md, [Citation("https://a.example/", "A")], limit=1000)
    assert sum(len(tables_in(m)) for m in msgs) == 1
    assert all(len(markdown_of(m)) <= 1000 for m in msgs)
    assert all(len(m["text"]) <= 3000 for m in msgs)


def test_slack_emulator_validates_table_blocks():
    ok = {"type": "table", "rows": [[{"type": "raw_text", "text": "a"}]]}
    parse_blocks([ok])
    bad_cases = [
        {"type": "table", "rows": []},
        {"type": "table", "rows": [[{"type": "raw_text", "text": "a"}]] * 101},
        {"type": "table", "rows": [[{"type": "raw_text", "text": "a"}] * 21]},
        {"type": "table", "rows": [[{"type": "plain_text", "text": "a"}]]},
        {"type": "table", "rows": [[{"type": "raw_text", "text": "a"}]], "column_settings": [{"align": "middle"}]},
    ]
    for bad in bad_cases:
        with pytest.raises(SlackError) as err:
            parse_blocks([bad])
        assert err.value.error == "invalid_blocks"
    with pytest.raises(SlackError) as err:
        parse_blocks([ok, ok])
    assert err.value.error == "only_one_table_allowed"


def test_tool_status_lines_and_failure_note():
    from slackbot.gemini import ToolActivity
    from slackbot.slack_out.answer import Extras, tool_status
    assert tool_status(ToolActivity("mcp_server", "crm.lookup", "call")) == "Calling crm.lookup…"
    assert tool_status(ToolActivity("google_search", "google_search", "call")) == "Searching the web…"
    assert tool_status(ToolActivity("code_execution", "code_execution", "result")) is None
    extras = Extras()
    for item in (ToolActivity("mcp_server", "a.x", "failed"), ToolActivity("mcp_server", "b<y>", "failed"),
                 ToolActivity("mcp_server", "a.x", "failed"), ToolActivity("google_search", "g", "result")):
        extras.add(item)
    assert extras.failure_note() == ("The a.x and b&lt;y&gt; tools failed, so this answer may be missing what "
                                     "they would have added.")
