"""`slackbot bench` smoke test: the smallest run, end to end, in a subprocess.

Asserts only what must stay true whatever the machine (not timings): the run completes, prints
its table and JSON line, every answer is final and equal to Gemini's text, nothing is answered
twice or unasked, and no Redis key is left without a TTL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("redis", ["single", "cluster"])
def test_bench_smallest_run(redis_url, redis):
    # issue 18: `--redis cluster` starts a 3-master cluster of its own and says so in the table
    cmd = [sys.executable, "-m", "slackbot_bench", "--conversations", "3", "--replicas", "1",
           "--stream-seconds", "1", "--intake-rate", "20", "--intake-seconds", "2", "--channels", "2",
           "--redis", redis, "--redis-url", redis_url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr[-3000:]}"
    assert "figure" in out and "ack p50 / p99 (ms), B sustained" in out and "Redis keys without TTL" in out
    figures = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
    answers = figures["answers"]
    assert answers["expected"] >= 4  # 3 in phase A, at least one new mention and one thread reply in B
    assert answers["ok"] == answers["expected"], answers
    assert answers["failed"] == 0 and answers["incomplete"] == 0
    assert answers["wrong_text"] == 0
    assert answers["duplicates"] == 0
    assert answers["spurious_creates"] == 0 and answers["spurious_posts"] == 0
    assert answers["chain_errors"] == 0
    assert figures["redis_keys"]["no_ttl"] == 0
    assert figures["ack_ms"]["B"]["non_200"] == 0 and figures["ack_ms"]["B"]["n"] >= 30
    assert figures["bot_cpu_s"]["total"] > 0 and all(mb > 0 for mb in figures["peak_rss_mb"])
    assert figures["redis_commands"]["per_answer"] > 0
    per_node = figures["redis_keys"]["per_node"]
    if redis == "cluster":
        assert "cluster, 3 masters" in out and figures["redis_keys"]["cluster"]
        assert len(per_node) == 3 and sum(per_node.values()) == figures["redis_keys"]["total"]
    else:
        assert "single node" in out and list(per_node.values()) == [figures["redis_keys"]["total"]]


def test_bench_research_webhooks_against_polling(redis_url):
    # issue 22.5: the research scenario runs both modes and prints one table with a column each
    cmd = [sys.executable, "-m", "slackbot_bench", "--scenario", "research", "--jobs", "2", "--agent-seconds", "1-2",
           "--replicas", "1", "--channels", "1", "--redis-url", redis_url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr[-3000:]}"
    assert "completion -> first report message" in out and "webhooks" in out and "polling" in out
    runs = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
    for mode in ("webhooks", "polling"):
        assert runs[mode]["reported"] == 2, runs[mode]
        assert runs[mode]["completion_to_report_s"]["n"] == 2 and runs[mode]["polls_per_job"]["max"] >= 1
    assert runs["webhooks"]["webhooks"] == {"sent": 2, "accepted": 2}
    assert runs["polling"]["webhooks"]["sent"] == 0
