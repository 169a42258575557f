"""The benchmark's arithmetic, on hand-made records: what each figure means, not how fast anything is."""

import random

import pytest

from slackbot_bench import analysis as an
from slackbot_bench import report
from slackbot_bench.load import answer_text, build_schedule

STOPS = ["Thinking…", "Sorry, Gemini failed."]


def test_percentiles_and_summary():
    assert an.pct([], 0.5) is None
    assert an.pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert an.pct([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert an.summary([1.0, 2.0, 3.0, 4.0]) == {"n": 4, "p50": 2.5, "p95": 3.85, "max": 4.0}
    assert an.summary([]) == {"n": 0, "p50": None, "p95": None, "max": None}


def test_ack_stats():
    rows = [("A", "mention", 200, 0.010, None, 0.0), ("A", "mention", 200, 0.030, None, 0.0),
            ("A", "mention", 0, 5.0, "ClientError", 0.0), ("B", "chatter", 200, 4.0, None, 0.0)]
    a = an.ack_stats(rows, "A")
    assert a["n"] == 3 and a["p50_ms"] == 20.0 and a["max_ms"] == 30.0  # no answer is not a latency
    assert a["non_200"] == 1 and a["over_3s"] == 1 and a["statuses"] == {"200": 2, "0": 1}
    assert an.ack_stats(rows, "B")["over_3s"] == 1


def test_visible_text_prefers_markdown_blocks():
    assert an.visible("fallback", [{"type": "markdown", "text": "a"}, {"type": "divider"},
                                   {"type": "markdown", "text": "b"}]) == "a\nb"
    assert an.visible("fallback", None) == "fallback"


@pytest.mark.parametrize("final, want, expected", [
    ("Answer m000001: all", "Answer m000001: all", ("ok", True)),
    ("Answer m000001:\n\nall", "Answer m000001:\nall", ("ok", True)),  # split answers differ in blank lines
    ("Answer m000001: al", "Answer m000001: all", ("incomplete", False)),
    ("Answer m000001: other", "Answer m000001: all", ("wrong", False)),
    ("Answer m000001: al\n\nSorry, Gemini failed.", "Answer m000001: all", ("failed", True)),
])
def test_classify(final, want, expected):
    assert an.classify(final, want, STOPS) == expected


def test_group_segments_joins_continuations_and_counts_strays():
    texts = ["Answer m000001: part one", "part two", "Answer m000002: other", "Sorry, Gemini failed.",
             "Answer m000001: again"]
    groups, untagged = an.group_segments(texts, STOPS)
    assert groups == {"m000001": [[0, 1], [4]], "m000002": [[2]]}
    assert untagged == 1


def test_message_timeline_merges_post_edits_and_stream_keeping_changes_only():
    tl = an.message_timeline((1.0, "Thinking…"), [(3.0, "Hello world"), (4.0, "Hello world")],
                             [(2.0, "Hello")])
    assert tl == [(1.0, "Thinking…"), (2.0, "Hello"), (3.0, "Hello world")]
    assert an.first_visible([tl], ["Thinking…"]) == 2.0
    assert an.final_at([tl, [(5.0, "continued")]]) == 5.0  # the later message finished last
    assert an.final_at([]) is None


def test_longest_stall_counts_the_wait_for_the_first_change_and_after_the_last():
    # Gemini writes from 10 to 20; the reader sees changes at 12, 13 and 19.
    assert an.longest_stall([12.0, 13.0, 19.0], 10.0, 20.0) == pytest.approx(6.0)
    assert an.longest_stall([], 10.0, 20.0) == pytest.approx(10.0)  # nothing moved while it wrote
    assert an.longest_stall([9.0, 25.0], 10.0, 20.0) == pytest.approx(10.0)  # changes outside do not help
    assert an.longest_stall([11.0], 10.0, 9.0) is None


def test_sign_of_life_is_the_first_status_or_post_after_the_message():
    assert an.sign_of_life(100.0, [100.4, 101.0], [100.9]) == pytest.approx(0.4)
    assert an.sign_of_life(100.0, [], [100.9, 102.0]) == pytest.approx(0.9)
    assert an.sign_of_life(100.0, [50.0], [60.0]) is None  # an earlier turn's, in the same thread


def test_delivery_kinds_and_mix():
    assert an.delivery_kinds([True], [0]) == {"native"}
    assert an.delivery_kinds([True, False], [1, 0]) == {"native", "edits"}  # changed course mid-answer
    assert an.delivery_kinds([False, False], [0, 0]) == {"posts"}
    assert an.delivery_mix([{"native"}, {"native", "edits"}, {"posts"}]) == {"native": 2, "edits": 1, "posts": 1}


def test_message_counts():
    got = an.message_counts([[100], [300, 200], [], [50]])
    assert got == {"answers": 3, "mean": 1.33, "p95": 1.9, "max": 2, "one_message_share": 0.667, "chars_p50": 150.0}
    assert an.message_counts([])["mean"] is None


def test_calls_by_method():
    calls = [("chat.update", 200), ("chat.update", 429), ("chat.startStream", 200)]
    assert an.calls_by_method(calls) == {"chat.startStream": {"calls": 1, "429": 0},
                                         "chat.update": {"calls": 2, "429": 1}}


def test_compare_rows_divides_headline_numbers():
    a = [("final p95", "1.00 / 2.00", 2.0), ("429s", "0", 0), ("only a", "x", None)]
    b = [("final p95", "4.00 / 8.00", 8.0), ("429s", "0", 0), ("only b", "y", 1.0)]
    assert an.compare_rows(a, b) == [("final p95", "1.00 / 2.00", "4.00 / 8.00", "0.25"),
                                     ("429s", "0", "0", "-"), ("only a", "x", "-", "-"), ("only b", "-", "y", "-")]


def _figures(strategy: str, final_p95: float) -> dict:
    pcts = {"n": 2, "p50": 0.5, "p95": final_p95, "max": final_p95}
    return {
        "strategy": strategy, "conversations": 2, "replicas": 1,
        "answers": {"phase_a": 2, "phase_b": 0, "expected": 2, "placeholder_first": 0, "failed": 0,
                    "incomplete": 0, "wrong_text": 0, "duplicates": 0, "spurious_creates": 0, "spurious_posts": 0},
        "durations_s": {"phase_a": 10.0, "phase_b": 5.0},
        "ack_ms": {p: {"p50_ms": 1.0, "p99_ms": 2.0, "n": 4, "non_200": 0, "over_3s": 0} for p in "AB"},
        "intake": {"achieved_rate": 20.0}, "bench_loop_max_stall_ms": {"A": 1.0, "B": 2.0},
        "sign_of_life_s": pcts, "first_text_s": pcts, "gemini_done_to_final_s": pcts, "longest_stall_s": pcts,
        "delivery_mix": {"native": 2, "edits": 0, "posts": 0},
        "visible_updates_per_answer": {"mean": 3.0, "max": 4},
        "messages_per_answer": {"mean": 1.5, "p95": 2.0, "max": 2, "one_message_share": 0.5, "chars_p50": 900.0}, "edits_per_answer": {"mean": 0.0, "max": 0},
        "slack_429": {"total": 0}, "slack_methods": {"chat.startStream": {"calls": 2, "429": 0}},
        "bot_cpu_s": {"per_answer": 0.1, "per_answer_phase_a": 0.1, "per_1000_deliveries_phase_b": 1.0, "total": 0.2},
        "peak_rss_mb": [100.0], "redis_commands": {"total": 200, "per_answer": 100.0},
        "redis_keys": {"no_ttl": 0, "total": 5, "per_node": {"a:1": 2, "b:2": 3}, "cluster": True, "bytes": 2048},
    }


def test_report_table_and_comparison():
    one = report.table(_figures("planner", 1.0))
    assert "answers in one message" in one and "50 %" in one
    assert "Gemini done -> final text p50 / p95 (s)" in one and "Slack chat.startStream calls / 429s" in one
    assert "cluster, 2 masters" in one and "40 % / 60 %" in one  # issue 18: which Redis, each master's share
    both = report.comparison(_figures("planner", 1.0), _figures("edits", 4.0)).splitlines()
    assert both[1].split() == ["figure", "planner", "edits", "planner", "/", "edits"]
    final = next(line for line in both if line.startswith("Gemini done -> final text"))
    assert final.rstrip().endswith("0.25")


def test_load_schedule_and_answers_are_reproducible():
    schedule = build_schedule(40, 2, 3, random.Random(1))
    assert len(schedule) == 40 and schedule.count("mention") == 2 and schedule.count(None) == 2
    assert schedule.count("chain_reply") == 3
    assert all(schedule[i + 1] is None for i, k in enumerate(schedule) if k == "mention")
    assert schedule == build_schedule(40, 2, 3, random.Random(1))
    text = answer_text("m000007", 2000, random.Random(2))  # Markdown with a list and a code block
    assert text.startswith("Answer m000007:") and 1900 <= len(text) <= 2020
    assert "\n- " in text and "```bash" in text
