"""Issue 20, the pure parts: the access rule, declarations from signatures, permalinks, Slack sources."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from slackbot.lookup.access import Audience, Place, Reach, is_public, reach_of, shareable
from slackbot.lookup.declare import bind, declaration
from slackbot.lookup.functions import TurnLookups
from slackbot.lookup.links import parse_permalink, permalink, workspace_base
from slackbot.slack_out.answer import sources_markdown
from slackbot.slack_out.progress import Source
from slackbot.slack_out.render import step_gap

PUBLIC, PRIVATE, DM = Audience("C_PUB", Reach.PUBLIC), Audience("C_PRIV", Reach.PRIVATE), Audience("D_ME", Reach.DM)


@pytest.mark.parametrize("audience, place, allowed", [
    # a public thread: public-channel content and this conversation, nothing else
    (PUBLIC, Place("C_OTHER", True), True),
    (PUBLIC, Place("C_PUB", True), True),
    (PUBLIC, Place("C_SECRET", False, asker_reads=True), False),
    (PUBLIC, Place("G_GROUP", False, asker_reads=True), False),
    (PUBLIC, Place("D_OTHER", False, asker_reads=True), False),
    (PUBLIC, Place("C_UNKNOWN", None, asker_reads=True), False),
    # a private channel or group DM: additionally its own messages
    (PRIVATE, Place("C_PRIV", False), True),
    (PRIVATE, Place("C_OTHER", True), True),
    (PRIVATE, Place("C_SECRET", False, asker_reads=True), False),
    # a DM or the agent tab: what the asker can read
    (DM, Place("C_SECRET", False, asker_reads=True), True),
    (DM, Place("C_SECRET", False, asker_reads=False), False),
    (DM, Place("C_UNKNOWN", None, asker_reads=False), False),
    (DM, Place("D_ME", False), True),
])
def test_the_access_rule(audience, place, allowed):
    assert shareable(audience, place) is allowed


def test_audience_and_publicness_from_conversations_info():
    assert reach_of("D123", None) is Reach.DM
    assert reach_of("C1", {"is_private": False}) is Reach.PUBLIC
    assert reach_of("C1", {"is_private": True}) is Reach.PRIVATE
    assert reach_of("G1", {"is_mpim": True, "is_private": True}) is Reach.PRIVATE
    assert reach_of("C1", None) is Reach.PUBLIC, "unknown: the widest audience, so the strictest rule"
    assert is_public({"is_private": False, "is_im": False}) is True
    assert is_public({"is_private": True}) is False and is_public(None) is None


async def example(self, query: Annotated[str, "What to find."], kind: Literal["a", "b"] = "a",
                  days: Annotated[int, "How many days."] = 1, tags: list[str] | None = None) -> dict:
    """Find things.

    More words that Gemini does not need."""


def test_declarations_come_from_typed_signatures():
    assert declaration(example) == {
        "type": "function", "name": "example", "description": "Find things.",
        "parameters": {"type": "object", "required": ["query"], "properties": {
            "query": {"type": "string", "description": "What to find."},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "days": {"type": "integer", "description": "How many days."},
            "tags": {"type": "array", "items": {"type": "string"}}}}}
    search = declaration(TurnLookups.search_slack)  # the bot's own functions declare themselves the same way
    assert search["parameters"]["required"] == ["query"]
    assert set(search["parameters"]["properties"]) == {"query", "after", "before"}


def test_calls_are_bound_to_the_signature_or_refused_in_words():
    assert bind(example, {"query": "x", "days": 2.0}) == {"query": "x", "days": 2}
    for wrong, said in (({}, "'query' is required"), ({"query": "x", "sudo": True}, "unknown argument 'sudo'"),
                        ({"query": 3}, "'query' must be a string"), ({"query": "x", "kind": "c"}, "one of a, b"),
                        ({"query": "x", "days": 1.5}, "'days' must be a integer"), ("nope", "must be an object")):
        with pytest.raises(ValueError, match=said):
            bind(example, wrong)


def test_permalinks_read_and_built():
    ref = parse_permalink("https://acme.slack.com/archives/C0123ABC/p1700000000123456")
    assert (ref.channel, ref.ts, ref.thread_ts) == ("C0123ABC", "1700000000.123456", "")
    reply = parse_permalink("<https://acme.slack.com/archives/C1X/p1700000001000001?thread_ts=1700000000.123456&cid=C1X|see>")
    assert (reply.ts, reply.thread_ts) == ("1700000001.000001", "1700000000.123456")
    for bad in ("https://acme.slack.com/archives/C1/x1", "javascript:alert(1)", "see the thread", "",
                "https://acme.slack.com/archives/c1lower/p1700000000123456", "https://x/archives/C1/p12"):
        assert parse_permalink(bad) is None
    base = workspace_base("https://acme.slack.com/archives/C1/p1700000000123456")
    assert base == "https://acme.slack.com"
    assert permalink(base, "C1", "1700000001.000001", "1700000000.123456") == \
        "https://acme.slack.com/archives/C1/p1700000001000001?thread_ts=1700000000.123456&cid=C1"


def test_slack_sources_are_numbered_deduplicated_escaped_and_beside_web_sources():
    link = "https://acme.slack.com/archives/C1/p1700000000123456"
    md = sources_markdown([Source(link, "#launch · Bob *Brown* · 2026-12-01", True),
                           Source(link, "#launch · Bob · again", True),
                           Source("https://news.example.org/a", "News <b>", False)])
    assert md.splitlines() == ["**Sources**", f"1. [#launch · Bob \\*Brown\\* · 2026-12-01]({link})",
                               "2. [News &lt;b&gt;](https://news.example.org/a) · news.example.org"]


def test_a_later_steps_words_start_a_paragraph():
    assert [step_gap(t) for t in ("", "  ", "Let me look.", "Let me look.\n", "Done.\n\n")] == ["", "", "\n\n", "\n", ""]
