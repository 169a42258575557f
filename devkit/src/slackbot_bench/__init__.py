"""`slackbot bench`: the real bot, as N replica processes sharing one Redis, against both emulators.

Phases
A "answers": `--conversations` mentions at once, spread over `--channels` channels; waits until
  every answer is final (or failed, or nothing moves for a while, or the deadline).
B "intake": `--intake-rate` deliveries/s for `--intake-seconds`: a few new mentions and replies in
  the bot's threads (answered), replies in people's threads, channel chatter, message_changed, other
  bots' and the bot's own messages (all ignored), and Slack retries of answered events (must not be
  answered twice). Then waits for phase B's answers as for phase A.

`--scenario tools` runs answers that look things up in the workspace instead (tools.py): plain answers,
then answers making 2 function calls each; Slack calls per answer, search budget waits, final-text
latency against the plain figure, and leaks by the access rule.

`--scenario research` (research.py) starts `--jobs` `/research --now` jobs whose agents work
`--agent-seconds`, once with webhooks (each replica's SLACKBOT_PUBLIC_URL set) and once polling only at
the production poll settings: completion -> report message latency and polls per job (issue 22.5).

`--strategy` picks how the bot delivers answers (env `SLACKBOT_DELIVERY` of its processes):
`planner` (the delivery planner), `edits` (one message grown by chat.update), or `both`: the same
load twice, one table with a column each and their ratio.

The package: `runner` (processes, emulators, reading the outcome), `load` (what people say and
Gemini answers), `analysis` (pure arithmetic from records to figures), `report` (the table).
Prints the machine, the settings, ONE table and one JSON line. Exit 0 when the run completed
(whatever the figures), 2 on a harness failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

STRATEGIES = ("planner", "edits")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=100, help="phase A: concurrent mentions (default 100)")
    parser.add_argument("--replicas", type=int, default=2, help="bot processes sharing Redis (default 2)")
    parser.add_argument("--stream-seconds", type=float, default=20.0, help="length of each Gemini answer (default 20)")
    parser.add_argument("--intake-rate", type=float, default=200.0, help="phase B deliveries per second (default 200)")
    parser.add_argument("--intake-seconds", type=float, default=30.0, help="phase B duration (default 30)")
    parser.add_argument("--channels", type=int, default=20, help="channels the mentions are spread over (default 20)")
    parser.add_argument("--strategy", choices=[*STRATEGIES, "both"], default="planner",
                        help="how the bot delivers answers: planner, edits (one message grown by chat.update), "
                             "or both, one after the other, compared in one table (default planner)")
    parser.add_argument("--redis", choices=["single", "cluster"], default="single",
                        help="single: one Redis node (--redis-url); cluster: a throwaway 3-master Redis Cluster "
                             "on loopback, started for the run, REDIS_URL naming one of its nodes (default single)")
    parser.add_argument("--redis-url", default=None,
                        help="with --redis single, the Redis to share (default REDIS_URL, else "
                             "redis://127.0.0.1:6379/0); if it does not answer, a throwaway redis-server is started")
    parser.add_argument("--chars-per-second", type=float, default=60.0, help="Gemini pace (default 60)")
    parser.add_argument("--chunk-seconds", type=float, default=0.25, help="seconds between Gemini chunks (default 0.25)")
    parser.add_argument("--first-token", type=float, default=0.8,
                        help="mean first-token delay in s; each answer gets +-50%% (default 0.8)")
    parser.add_argument("--mention-share", type=float, default=0.0025,
                        help="phase B: share of deliveries that are new mentions (each mention is 2 deliveries)")
    parser.add_argument("--chain-reply-share", type=float, default=0.0025,
                        help="phase B: share of deliveries that are replies in the bot's threads (answered)")
    parser.add_argument("--scenario", choices=["answers", "tools", "research"], default="answers",
                        help="answers (phases A and B), tools: questions that each make 2 function calls, or "
                             "research: /research jobs with webhooks against polling only (default answers)")
    parser.add_argument("--people", type=int, default=10, help="tools: people asking (search is 10/min each)")
    parser.add_argument("--function-wait", type=float, default=5.0,
                        help="tools: SLACKBOT_FUNCTION_WAIT_SECONDS of the replicas (default 5)")
    parser.add_argument("--tool-steps", type=int, default=0,
                        help="web searches before each answer, with a thought summary: task cards on the native "
                             "stream (or the status when posting); the replicas get SLACKBOT_TOOLS=google_search "
                             "(default 0: plain answers)")
    parser.add_argument("--jobs", type=int, default=10, help="research: /research --now jobs at once (default 10)")
    parser.add_argument("--agent-seconds", default="20-40",
                        help="research: each agent's working time, spread evenly over this range (default 20-40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--details", default=None, metavar="PATH",
                        help="also write one JSON line per expected answer (timings, edits, status) to PATH")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slackbot_bench", description="slackbot load benchmark")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _validate(a: argparse.Namespace) -> None:
    from .runner import HarnessError

    if a.tool_steps < 0:
        raise HarnessError("--tool-steps must be >= 0")
    if a.jobs < 1:
        raise HarnessError("--jobs must be >= 1")
    if a.conversations < 1 or a.replicas < 1 or a.channels < 1:
        raise HarnessError("--conversations, --replicas and --channels must be >= 1")
    if a.stream_seconds <= 0 or a.intake_rate <= 0 or a.intake_seconds < 0 or a.chars_per_second <= 0:
        raise HarnessError("--stream-seconds, --intake-rate, --chars-per-second must be > 0")


def _print_header(a: argparse.Namespace, machine: dict) -> None:
    chunk_chars = max(1, round(a.chars_per_second * a.chunk_seconds))
    print(f"machine: {machine['cores']} cores ({machine['physical_cores']} physical), {machine['cpu_model']}, "
          f"{machine['ram_gb']} GB RAM, {machine['os']}, Python {machine['python']}")
    if a.scenario == "research":
        print(f"bench: research redis={a.redis} jobs={a.jobs} replicas={a.replicas} channels={a.channels} "
              f"agent working time {a.agent_seconds} s (after 1 s queued); modes webhooks then polling", flush=True)
        return
    print(f"bench: redis={a.redis} strategy={a.strategy} conversations={a.conversations} replicas={a.replicas} channels={a.channels} "
          f"stream_seconds={a.stream_seconds:g} intake_rate={a.intake_rate:g}/s intake_seconds={a.intake_seconds:g} "
          f"gemini={a.chars_per_second:g} chars/s in {chunk_chars}-char chunks every {a.chunk_seconds:g} s, "
          f"first token {a.first_token * 0.5:g}-{a.first_token * 1.5:g} s; "
          f"phase B answered shares: mentions {a.mention_share:g}, thread replies {a.chain_reply_share:g}; "
          f"tool steps per answer {a.tool_steps}; "
          f"seed={a.seed}")
    print("slack emulator limits: chat.update 50/min per team (burst 50), chat.postMessage 60/min per "
          "channel (burst 5), chat.startStream / chat.stopStream 20/min, chat.appendStream 100/min, "
          "assistant.threads.setStatus 600/min, conversations.replies 1/min", flush=True)


async def _main(a: argparse.Namespace) -> int:
    from . import report
    from .runner import Bench, HarnessError, machine_info

    try:
        _validate(a)
        machine = machine_info()
        _print_header(a, machine)
        if a.details:
            open(a.details, "w").close()  # each strategy's run appends its rows
        if a.scenario == "tools":
            from . import tools

            figures = await tools.ToolsBench(a, "planner").run(machine)
            print(tools.table(figures))
            for note in figures["notes"]:
                print(f"note: {note}")
            print(json.dumps(figures, separators=(",", ":")), flush=True)
            return 0
        if a.scenario == "research":
            from . import research

            research.agent_seconds(a.agent_seconds)  # a bad range fails before anything starts
            runs = await research.run_both(a, machine)
            print(research.table(runs))
            for f in runs.values():
                for note in f["notes"]:
                    print(f"note ({f['mode']}): {note}")
            print(json.dumps(runs, separators=(",", ":")), flush=True)
            return 0
        strategies = STRATEGIES if a.strategy == "both" else (a.strategy,)
        runs = [await Bench(a, strategy).run(machine) for strategy in strategies]
    except HarnessError as exc:
        print(f"slackbot bench: harness failure: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # a bug in the harness is a harness failure, with its traceback
        import traceback

        traceback.print_exc()
        print(f"slackbot bench: harness failure: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(report.table(runs[0]) if len(runs) == 1 else report.comparison(*runs))
    for f in runs:
        for note in f["notes"]:
            print(f"note ({f['strategy']}): {note}")
    print(flush=True)
    out = runs[0] if len(runs) == 1 else {f["strategy"]: f for f in runs}
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0
