import random
import re
import time

import pytest

from slackbot.slack_out.answer import final_messages
from slackbot_sandbox import canvas_view
from slackbot.slack_out.render import (
    _SLACK_MARKUP,
    DEFAULT_MESSAGE_CHARS,
    block_end,
    close_open_fences,
    escape_mrkdwn,
    first_cut,
    mentioned_user_ids,
    message_payload,
    neutralize_slack_markup,
    open_token_at,
    render_span,
    slack_to_prompt,
    sources_section,
    split_markdown,
    split_report,
    starts_block,
    stable_split,
)

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
TABLE_SEP = re.compile(r"^\s*\|[-|: ]*-[-|: ]*$")
WORDS = "the of model token stream Slack answer thread message latency budget cache retry".split()


def fences_balanced(md: str) -> bool:
    marker = None
    for line in md.split("\n"):
        m = FENCE.match(line)
        if not m:
            continue
        if marker is None:
            marker = m.group(1)
        elif m.group(1)[0] == marker[0] and len(m.group(1)) >= len(marker) and not m.group(2).strip():
            marker = None
    return marker is None


def content(md: str) -> str:
    """Non-whitespace content, ignoring the lines split may add: fence lines and table headers."""
    lines = md.split("\n")
    sep = {i for i, l in enumerate(lines) if TABLE_SEP.match(l)}
    keep = [l for i, l in enumerate(lines) if not FENCE.match(l) and i not in sep and i + 1 not in sep]
    return re.sub(r"\s+", "", "\n".join(keep))


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def realistic(rng: random.Random, sections: int = 8) -> str:
    out = ["# Answer", "", sentence(rng, 12)]
    for s in range(sections):
        out += ["", f"## Section {s}", ""]
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.4:
                out += [" ".join(sentence(rng, rng.randint(5, 25)) for _ in range(rng.randint(1, 6))), ""]
            elif kind < 0.6:
                out += [f"- {sentence(rng, rng.randint(3, 12))}" for _ in range(rng.randint(2, 8))] + [""]
            elif kind < 0.8:
                out += ["```python"] + [f"    x{i} = compute({i}, 'value')  # step {i}" for i in range(rng.randint(3, 40))]
                out += ["```", ""]
            else:
                out += ["| name | value | note |", "|---|---|---|"]
                out += [f"| r{i} | {i * 7} | {sentence(rng, 4)} |" for i in range(rng.randint(2, 30))] + [""]
    return "\n".join(out)


def check_chunks(md: str, chunks: list[str], limit: int) -> None:
    assert chunks, "non-empty input must give chunks"
    for c in chunks:
        assert c.strip()
        assert len(c) <= limit
        assert fences_balanced(c), c
    assert content("\n".join(chunks)) == content(md)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("limit", [200, 700, DEFAULT_MESSAGE_CHARS])
def test_split_markdown_limits_fences_content(seed, limit):
    md = realistic(random.Random(seed))
    check_chunks(md, split_markdown(md, limit), limit)
    check_chunks(md, split_report(md, limit), limit)


def test_empty_and_short():
    assert split_markdown("") == []
    assert split_markdown(" \n\n  \n") == []
    assert split_markdown("\n\nhello *world*\n\n") == ["hello *world*"]
    assert stable_split("") == ([], "")
    assert stable_split("short") == ([], "short")
    with pytest.raises(ValueError):
        split_markdown("x", 10)


def test_prefers_paragraph_and_heading_boundaries():
    paras = [sentence(random.Random(i), 30) for i in range(12)]
    md = "\n\n".join(paras)
    chunks = split_markdown(md, 600)
    assert set(chunks) <= {"\n\n".join(paras[i:j]) for i in range(12) for j in range(i + 1, 13)}
    md = "\n\n".join(f"## H{i}\n{p}" for i, p in enumerate(paras))
    for c in split_markdown(md, 600)[1:]:
        assert c.startswith("## H")


def test_long_line_splits_at_spaces():
    md = " ".join(["word"] * 1000)
    chunks = split_markdown(md, 300)
    check_chunks(md, chunks, 300)
    assert all(c.startswith("word") and c.endswith("word") for c in chunks)


def test_hard_cut_without_boundaries():
    md = "x" * 1000
    chunks = split_markdown(md, 100)
    check_chunks(md, chunks, 100)
    assert "".join(chunks) == md


def test_huge_code_block():
    body = "\n".join(f"    value_{i} = function_call(argument_{i}, other={i})" for i in range(200))
    md = "Intro text.\n\n```python\n" + body + "\n```\n\nAfter the code."
    assert len(body) > 10_000
    chunks = split_markdown(md)
    check_chunks(md, chunks, DEFAULT_MESSAGE_CHARS)
    assert len(chunks) >= 4
    for c in chunks[1:-1]:
        assert c.startswith("```python\n") and c.endswith("\n```")
    # the code is cut only at line ends: every code line survives intact
    code_lines = {l for c in chunks for l in c.split("\n") if l.startswith("    value_")}
    assert code_lines == set(body.split("\n"))


def test_huge_code_line_inside_fence():
    md = "```\n" + "a" * 500 + "\n```"
    chunks = split_markdown(md, 120)
    check_chunks(md, chunks, 120)


def test_tables_split_between_rows():
    rows = [f"| row {i} | {i * i} | some descriptive text here |" for i in range(300)]
    md = "Table:\n\n| name | square | note |\n|---|---|---|\n" + "\n".join(rows)
    chunks = split_markdown(md, 1000)
    check_chunks(md, chunks, 1000)
    assert len(chunks) > 10
    for c in chunks[1:]:  # continuation chunks repeat the header so each renders as a table
        assert c.startswith("| name | square | note |\n|---|---|---|\n| row ")
        assert all(l.startswith("|") and l.endswith("|") for l in c.split("\n"))
    rows_out = [l for c in chunks for l in c.split("\n") if l.startswith("| row ")]
    assert rows_out == rows


def test_split_report_starts_chunks_at_sections():
    rng = random.Random(3)
    sections = [f"## Part {i}\n\n" + "\n\n".join(sentence(rng, 20) for _ in range(rng.randint(1, 5))) for i in range(20)]
    md = "# Report\n\nSummary line.\n\n" + "\n\n".join(sections)
    limit = 1200
    assert all(len(s) <= limit for s in sections)
    chunks = split_report(md, limit)
    check_chunks(md, chunks, limit)
    for c in chunks[1:]:
        assert c.startswith("## Part")
    # whole sections are packed: no chunk could have taken the next section too
    for a, b in zip(chunks, chunks[1:]):
        nxt = b.split("\n## ")[0]
        assert len(a) + 2 + len(nxt) > limit


def test_split_report_long_section_falls_back():
    rng = random.Random(5)
    md = "## Big\n\n" + "\n\n".join(sentence(rng, 30) for _ in range(40)) + "\n\n## Small\n\nend."
    chunks = split_report(md, 800)
    check_chunks(md, chunks, 800)
    assert chunks[-1].startswith("## Small") or chunks[-1].endswith("## Small\n\nend.")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("limit", [150, 400, 1500])
def test_stable_split_freezes_monotonically(seed, limit):
    rng = random.Random(seed)
    text = realistic(rng, sections=5) + "\n\n```js\n" + "\n".join(f"let v{i} = {i};" for i in range(120))
    final = split_markdown(text, limit)
    cuts = sorted(rng.sample(range(len(text) + 1), 80)) + [len(text)]
    prev_frozen: list[str] = []
    for n in cuts:
        frozen, tail = stable_split(text[:n], limit)
        assert frozen == final[: len(frozen)]
        assert frozen[: len(prev_frozen)] == prev_frozen
        assert len(tail) <= limit
        if frozen:
            assert len(text[:n]) > limit
        rendered = close_open_fences(tail)
        assert fences_balanced(rendered)
        prev_frozen = frozen
    assert stable_split(text, limit) == (final[:-1], final[-1])


def test_stable_split_every_prefix_small():
    rng = random.Random(11)
    text = realistic(rng, sections=2)[:2500]
    final = split_markdown(text, 100)
    for n in range(0, len(text) + 1, 3):
        frozen, _ = stable_split(text[:n], 100)
        assert frozen == final[: len(frozen)]


def test_close_open_fences():
    assert close_open_fences("hi") == "hi"
    assert close_open_fences("a\n```py\nx = 1") == "a\n```py\nx = 1\n```"
    assert close_open_fences("a\n```py\nx = 1\n") == "a\n```py\nx = 1\n```"
    assert close_open_fences("a\n```py\nx = 1\n``") == "a\n```py\nx = 1\n```"
    assert close_open_fences("a\n```py\nx\n```\nb\n`") == "a\n```py\nx\n```\nb"
    assert close_open_fences("text with ```inline``` code") == "text with ```inline``` code"
    assert close_open_fences("- item\n   ~~~~\n   code") == "- item\n   ~~~~\n   code\n   ~~~~"


def test_message_payload():
    p = message_payload("**Hi** <!channel> & you")
    assert p["blocks"] == [{"type": "markdown", "text": "**Hi** &lt;!channel&gt; & you"}]
    assert p["text"] == "**Hi** &lt;!channel&gt; &amp; you"
    long = message_payload("y" * 3500)
    assert len(long["text"]) == 3000 and long["text"].endswith("…")
    assert long["blocks"][0]["text"] == "y" * 3500
    amp = message_payload("&" * 3500, fallback_chars=100)
    assert len(amp["text"]) <= 100 and amp["text"].endswith("&amp;…")
    for blank in ("", "  \n"):
        p = message_payload(blank)
        assert p["text"] and p["blocks"][0]["text"].strip()


def test_nobody_elses_text_becomes_slack_markup():
    # Pings, broadcasts and disguised links show as typed, in the block and in the fallback.
    hostile = ("<!channel> <!here> <!everyone> <!here|here> <@U123> <@W9|boss> <!subteam^S1|@devs> "
               "<!date^1^{date}|x> <https://evil.example|Slack login> <mailto:a@evil.example|IT desk>")
    p = message_payload(hostile)
    block = p["blocks"][0]["text"]
    assert "<" not in block and ">" not in block
    assert block.replace("&lt;", "<").replace("&gt;", ">") == hostile
    assert "<" not in p["text"] and ">" not in p["text"]
    # Code and ordinary text keep their angle brackets: Markdown autolinks, generics, HTML.
    plain = ("See <https://ok.example> and `List<String>`, `Map<@NonNull K, V>`\n```html\n<!DOCTYPE html>\n"
             "<!doctype html>\n<!-- x -->\n<a href=\"#\">\n```")
    assert message_payload(plain)["blocks"][0]["text"] == plain
    assert neutralize_slack_markup("<" * 5 + "<@U1>" + ">" * 5) == "<" * 5 + "&lt;@U1&gt;" + ">" * 5
    assert len(neutralize_slack_markup("<@U1>" * 780)) <= 3 * 3900  # stays under the block's 12,000
    assert escape_mrkdwn("a <@U1> & <b>") == "a &lt;@U1&gt; &amp; &lt;b&gt;"
    # Read back from the thread (a rebuilt conversation), Gemini sees what it wrote, not the entities.
    assert slack_to_prompt(block, {}) == hostile


def test_slack_to_prompt():
    names = {"U1": "Alice Adams", "U2": "Bob"}
    assert slack_to_prompt("<@UBOT> what does <@U1> think?", names, "UBOT") == "what does @Alice Adams think?"
    assert slack_to_prompt("<@UBOT>: summarize", names, "UBOT") == "summarize"
    assert slack_to_prompt("hey <@UBOT>, help <@U9>", names, "UBOT") == "hey, help @U9"
    assert slack_to_prompt("thanks <@UBOT>!", names, "UBOT") == "thanks!"
    assert slack_to_prompt("ask <@UBOT> about it", names, "UBOT") == "ask about it"
    assert slack_to_prompt("<@UBOT>", names, "UBOT") == ""
    assert slack_to_prompt("<@UBOT> hi", names) == "@UBOT hi"
    assert slack_to_prompt("see <https://x.io/a?b=1&amp;c=2|the docs>", {}) == "see [the docs](https://x.io/a?b=1&c=2)"
    assert slack_to_prompt("<https://x.io>", {}) == "https://x.io"
    assert slack_to_prompt("<https://x.io|x.io>", {}) == "https://x.io"
    assert slack_to_prompt("mail <mailto:a@b.com|a@b.com>", {}) == "mail a@b.com"
    assert slack_to_prompt("in <#C123|general> and <#C9>", {}) == "in #general and #C9"
    assert slack_to_prompt("<!here> <!channel> <!everyone>", {}) == "@here @channel @everyone"
    assert slack_to_prompt("<!subteam^S1|@devs> ok", {}) == "@devs ok"
    assert slack_to_prompt("a &lt; b &amp;&amp; c &gt; d", {}) == "a < b && c > d"
    assert slack_to_prompt("&amp;lt;", {}) == "&lt;"
    assert slack_to_prompt("line1\n<@UBOT> line2\n    code", names, "UBOT") == "line1\nline2\n    code"


def _old_drop_bot_mentions(text: str, bot_user_id: str) -> str:
    """The three regex passes slack_to_prompt used before (quadratic on blank runs): the reference
    behaviour on short texts."""
    bot = rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>"
    text = re.sub(rf"^[ \t]*{bot}[ \t]*[,:]?[ \t]*", "", text, flags=re.M)
    text = re.sub(rf"[ \t]*{bot}(?=[ \t]*(?:[,.;:!?)]|$))", "", text, flags=re.M)
    return re.sub(rf"[ \t]*{bot}[ \t]*", " ", text)


def test_bot_mention_rules_match_the_regex_reference():
    # The linear rewrite keeps the rules: same text wherever the mention was, up to how many blanks stand
    # where two adjacent mentions were (one now, two before).
    alphabet = [" ", "\t", "\n", ",", ".", ":", "!", ")", "a", "<@UBOT>", "<@UBOT|bot>", "<@UX>"]
    blanks = lambda t: re.sub(r"[ \t]+", " ", t).strip()
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert blanks(slack_to_prompt(text, {}, "UBOT")) == blanks(slack_to_prompt(
            _old_drop_bot_mentions(text, "UBOT"), {})), text


N = 100_000
PATHOLOGICAL = {  # shapes that made a regex or the splitter super-linear (or a message per character)
    "spaces": " " * N, "tabs": "\t" * N, "mention then spaces": "<@UBOT>" + " " * N + "x",
    "spaces then mention": " " * N + "<@UBOT>", "fence then spaces": "```" + " " * N,
    "word spaces backtick": "a" + " " * N + "`", "backticks": "`" * N, "tildes": "~" * N,
    "unclosed labels": "<@U1|" * (N // 5), "unclosed bot labels": "<@UBOT|" * (N // 7),
    "bot mentions": "<@UBOT> " * (N // 8) + ".", "open brackets": "<" * N, "newlines": "\n" * N,
    "blank lines": " \n" * (N // 2), "backtick lines": ("`" * 5000 + "\n") * 20, "pipes": "|" * N,
    "hashes": "#" * N, "fence lines": "\n```" * (N // 4), "long info string": "```" + "p" * N,
    "indented fence": " " * 5000 + "```\n" + "x " * (N // 2),
    "token starts": "<@" * (N // 2), "link starts": "<a:b" * (N // 4), "bang starts": "<!here" * (N // 6),
    "id starts": "<@U1" * (N // 4), "subteam starts": "<!subteam^" * (N // 10),
    # the final layout's table patterns (slack_out/answer.py) see only table rows and cells cut short first
    "table rows": "| a | b |\n|---|---|\n" + "| **x** | `y` |\n" * (N // 16), "row of pipes": "|" + " |" * (N // 2),
    "bold cell": "| " + "**" * (N // 2) + " |\n|---|\n| x |", "link cell": "| " + "[a](" * (N // 4) + " |\n|---|\n",
    "one unfinished link": "<https://" + "a" * N, "one unfinished label": "<https://a|" + "b " * (N // 2),
    "text then backtick line": "Here you go:\n" + "`" * N,
    # the sandbox's canvas view (a report's Markdown as a page)
    "emphasis starts": " _a" * (N // 3), "stars": "* " * (N // 2), "one long emphasis": "_" + "a " * (N // 2),
    "link labels": "[" + "a" * N, "link urls": "[a](https://" + "b" * N, "list lines": "- x\n  - y\n" * (N // 10),
    "rule lines": "- - -\n" * (N // 6), "dashes": "-" * N + "x",
}


def _guarded(fn, *args):
    # Not a timing assertion: linear code takes milliseconds here, the quadratic versions took 3-17 s on a
    # single one of these inputs. The guard only catches a relapse into something absurd.
    started = time.process_time()
    result = fn(*args)
    assert time.process_time() - started < 1.5, f"{fn.__name__} is not linear"
    return result


@pytest.mark.parametrize("shape", PATHOLOGICAL)
def test_pathological_text_is_linear(shape):
    text = PATHOLOGICAL[shape]
    prompt = _guarded(slack_to_prompt, text, {"U1": "Al"}, "UBOT")
    assert "<@UBOT>" not in prompt and prompt == prompt.strip()
    assert set(_guarded(mentioned_user_ids, text)) <= {"UBOT"}
    for split in (split_markdown, split_report):
        for limit in (DEFAULT_MESSAGE_CHARS, 200):
            chunks = _guarded(split, text, limit)
            # Structural: a chunk is cut from a window of limit + 1 chars and holds at least a quarter of
            # it, so the work is linear and a pathological answer cannot flood a thread.
            assert len(chunks) <= 4 * len(text) / limit + 4, (shape, limit, len(chunks))
            assert all(len(c) <= limit for c in chunks)
            visible = lambda t: re.sub(r"[\s`~]", "", t)  # fences are closed and reopened at cuts
            assert len(visible("".join(chunks))) >= len(visible(text))  # nothing is lost
    _guarded(close_open_fences, text)
    _guarded(message_payload, text)
    _guarded(neutralize_slack_markup, text)
    _guarded(final_messages, text)
    _guarded(block_end, text, 0, len(text))
    _guarded(starts_block, text, len(text) // 2)
    _guarded(canvas_view.page, text)


def test_mentioned_user_ids():
    assert mentioned_user_ids("<@U1> and <@W2|bob> and <@U1> <#C1> <!here>") == ["U1", "W2"]
    assert mentioned_user_ids("nobody") == []


def test_sources_section():
    assert sources_section([]) == ""
    assert sources_section([{"url": ""}]) == ""
    s = sources_section([
        {"url": "https://a.com/x", "title": "A [site]"},
        {"url": "https://b.com/y (z)", "title": ""},
        {"url": "https://a.com/x", "title": "dup"},
    ])
    assert s == "**Sources**\n1. [A (site)](https://a.com/x)\n2. [b.com/y (z)](https://b.com/y%20%28z%29)"


# Every regex that sees user or Gemini text, with the reason it is linear; the proof is
# test_pathological_text_is_linear, which runs each shape through every function that uses them. A new
# pattern in either module fails the test below until it is audited here (and given a shape above).
AUDITED_REGEXES = {
    "slackbot.slack_out.render": {
        "_FENCE": "match() at a line start only; the indent run is backtracked over once",
        "_HEADING": "match() at a line start; bounded repeats",
        "_SPACES": "a lookbehind lets a blank run match only from its first char, so each run is scanned once",
        "_LEADING_WS": "match() at one offset",
        "_PARTIAL_FENCE": "fullmatch() of one line; the indent run is backtracked over once",
        "_SLACK_TOKEN": "a scan from each '<' stops at the next '<' or '>'",
        "_USER_MENTION": "a scan from each '<@' stops at the next '<' or '>'",
        "_BLANKS": "match() at one offset",
        "_LIST_LINE": "match() at a line start, on two lines per block start; bounded repeats, the indent run "
                      "is backtracked over once",
        "_SLACK_MARKUP": "the lookahead and the body scan from each '<' stop at the next '<' or '>'",
    },
    # run only on table rows, and on cells cut to a bounded length first (_plain)
    "slackbot.slack_out.answer": {
        "_ROW": "match() at a line start", "_SEP_CELL": "match() of one cell", "_BOLD": "a bounded cell",
        "_CODE_SPAN": "a bounded cell", "_LINK": "a bounded cell",
    },
    "slackbot_sandbox.server": {"FILE_ID": "a bounded fullmatch of a URL path part",
                                "TEAM_ID": "a bounded fullmatch of a URL path part"},
    "slackbot_sandbox.canvas_view": {
        "_LIST": "fullmatch() of one line; bounded repeats, then one greedy run to the end",
        "_RULE": "fullmatch() of one line; each repeat takes one fixed char (and an optional space before it)",
        "_LINK": "a scan from each '[' stops at the next bracket or after 500 chars; the URL after 2000",
        "_CODE": "a scan from each backtick stops at the next one",
        "_EMPHASIS": "a scan from each '_'/'*' not inside a word stops at the next one or after 500 chars",
    },
    "slackbot.files.kinds": {"_FILE_ID": "a bounded fullmatch of a URL path part"},
    # rendered_links (tests read what a reader could click)
    "slackbot_emulators.slack_model": {
        "_FENCE_LINE": "match() at a line start with bounded repeats",
        "_BACKTICKS": "takes each run once",
        "_MD_LINK": "scans from a fixed prefix '](' to the first space or bracket",
        "_ANGLE_LINK": "scans from '<' to the first space or bracket",
        "_BARE_URL": "scans from 'http'/'www.' to the first space or bracket",
    },
}
# (Plus the bot-mention pattern _drop_bot_mentions builds: a scan from each "<@BOT" stops at "<" or ">";
# the blanks around a mention are measured from it, never searched for.)


@pytest.mark.parametrize("module", AUDITED_REGEXES)
def test_every_regex_on_user_or_gemini_text_is_audited(module):
    import importlib

    patterns = {name for name, value in vars(importlib.import_module(module)).items() if isinstance(value, re.Pattern)}
    assert patterns == set(AUDITED_REGEXES[module])


# --- issue 25: pathological answers are cut into full messages; pieces never carry half a token ----------
FLOODING = {  # answers a black-box probe used to flood a thread with one-character messages
    "backtick line": "Here you go:\n" + "`" * 9000,
    "backtick run": "Here you go: " + "`" * 9000,
    "tilde line": "Here you go:\n" + "~" * 9000,
    "endless fence": "Here you go:\n```\n" + "y" * 20_000,
    "endless fence, huge info": "Here you go:\n```" + "p" * 20_000,
    "one word": "Here you go: " + "x" * 20_000,
}


@pytest.mark.parametrize("limit", [200, 400, DEFAULT_MESSAGE_CHARS])
@pytest.mark.parametrize("shape", FLOODING)
def test_pathological_answers_are_cut_into_full_messages(shape, limit):
    text = FLOODING[shape]
    for chunks in (split_markdown(text, limit), _first_cut_chunks(text, limit)):
        assert all(len(c) <= limit for c in chunks)
        assert all(len(c) >= limit * 0.9 for c in chunks[:-1]), (shape, [len(c) for c in chunks][:6])
        assert len(chunks) <= len(text) // int(limit * 0.8) + 1  # reopened fences take some room


def _first_cut_chunks(text: str, limit: int) -> list[str]:
    """What the planner's messages show for a finished text: one message per first_cut, as rendered."""
    chunks, start = [], 0
    while (cut := first_cut(text, start, limit)) is not None:
        chunks.append(render_span(text, start, cut, final=True))
        start = cut
    return chunks + [render_span(text, start, len(text), final=True)]


def test_a_fence_marker_too_long_for_a_message_is_text():
    # A closing copy and a reopening copy of a 9,000-backtick marker cannot fit a message: such a line is
    # cut like a long word. Ordinary markers (nested in lists, four or five backticks) are fences.
    assert close_open_fences("x\n" + "`" * 17 + "\ncode") == "x\n" + "`" * 17 + "\ncode"
    assert close_open_fences("x\n" + "`" * 5 + "js\ncode") == "x\n" + "`" * 5 + "js\ncode\n" + "`" * 5
    assert close_open_fences("  - item\n        ```\n        code") .endswith("\n        ```")


HOSTILE_PIECES = ("Sign in: <https://evil.example/" + "a" * 400 + "|Slack login page> and <@U123|boss> or "
                  "<!channel> then <!subteam^S1|@devs>, <mailto:x@evil.example|IT> and `List<String>` <b")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 299, 301, 1000])
def test_stream_pieces_joined_never_hold_a_live_token(size):
    # A native stream shows its appends joined: whatever the piece size and however long the token,
    # the joined pieces hold no token Slack would draw (each piece is neutralised on its own).
    pieces = [HOSTILE_PIECES[i : i + size] for i in range(0, len(HOSTILE_PIECES), size)]
    shown = "".join(neutralize_slack_markup(p) for p in pieces)
    assert _SLACK_MARKUP.search(shown) is None, shown[:200]
    assert "<https://evil" not in shown and "<@U123" not in shown and "<!channel" not in shown
    readable = shown.replace("&lt;", "<").replace("&gt;", ">")
    assert readable == HOSTILE_PIECES


def test_a_token_begun_is_neutralised_but_code_keeps_its_brackets():
    assert neutralize_slack_markup("see <https://evil.example/aaa") == "see &lt;https://evil.example/aaa"
    assert neutralize_slack_markup("ping <@U1") == "ping &lt;@U1"
    assert neutralize_slack_markup("ping <!chan") == "ping &lt;!chan"
    assert neutralize_slack_markup("x <") == "x &lt;"
    for code in ("`a <b c`", "<div class", "<!doctype html", "Map<@NonNull K", "if a < b", "<br/>"):
        assert neutralize_slack_markup(code) == code
    assert open_token_at("ab <https://x|label", 0, 19) == 3
    assert open_token_at("ab <https://x|label> c", 0, 22) is None
    assert open_token_at("ab <https://x|label", 4, 19) is None, "only a token begun at or after start"
