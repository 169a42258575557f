"""`slackbot serve | worker | sandbox | bench`."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys

from . import logs
from .config import ConfigError, load_settings

TABLE = "Every setting: README.md, section Configuration (also deploy/.env.example)."

SERVE_HELP = f"""\
Run the Slack bot: answers mentions, DMs and thread replies, runs /research.

HTTP mode serves POST /slack/events (and /healthz, /readyz, /metrics) on
SLACKBOT_HOST:PORT (0.0.0.0:3000). With SLACK_APP_TOKEN set it uses Socket Mode
instead (no public URL needed). The research worker runs in-process unless
SLACKBOT_RESEARCH_WORKER=false.

It never starts the sandbox: with no Slack setting at all it stops with one
line pointing to `slackbot sandbox` (scripts/run picks the sandbox for a blank
slate). Missing or bad settings stop start-up with one line naming them all; so
do a port in use, a Redis that does not answer and a token Slack refuses.
/readyz is 200 once Slack accepted the bot token (and, in Socket Mode, the
connection is up).

Settings that matter most:
  SLACK_BOT_TOKEN        bot token, xoxb-...
  SLACK_SIGNING_SECRET   HTTP mode: verifies Slack's requests
  SLACK_APP_TOKEN        Socket Mode: app-level token, xapp-...
  GEMINI_API_KEY         or GOOGLE_GENAI_USE_ENTERPRISE=true + GOOGLE_CLOUD_PROJECT
  REDIS_URL              redis://localhost:6379/0
  PORT, SLACKBOT_HOST    where to listen

{TABLE}"""

WORKER_HELP = f"""\
Run only the research worker: polls Deep Research jobs saved in Redis and posts
their reports and status updates to Slack. Run any number beside `slackbot serve`
with SLACKBOT_RESEARCH_WORKER=false; jobs are leased, so a dead worker's jobs are
taken over by another. Serves /healthz, /readyz and /metrics on SLACKBOT_HOST:PORT.

Settings that matter most:
  SLACK_BOT_TOKEN        bot token, xoxb-... (no signing secret needed)
  GEMINI_API_KEY         or GOOGLE_GENAI_USE_ENTERPRISE=true + GOOGLE_CLOUD_PROJECT
  REDIS_URL              the same Redis as `slackbot serve`
  PORT, SLACKBOT_HOST    where the health endpoints listen

{TABLE}"""

SANDBOX_HELP = f"""\
Try the bot without a Slack workspace: the real bot behind a local Slack-like
page (channels, threads, live edits, /research with Cancel). Prints the URL to
open, http://127.0.0.1:PORT/ (3000 by default).

The page listens on loopback (127.0.0.1) unless SLACKBOT_HOST is set: it can
spend a real GEMINI_API_KEY, so expose it only on purpose.

Settings that matter most:
  PORT                   the page's port (3000)
  SLACKBOT_HOST          the page's interface (127.0.0.1 unless set)
  GEMINI_API_KEY         real Gemini when set; else the built-in emulator
  REDIS_URL              used when it answers (keys under a per-run prefix,
                         deleted at exit); else an embedded store (needs the
                         `sandbox` extra: pip install 'slackbot[sandbox]')

{TABLE}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slackbot", description="Gemini in Slack.", epilog=TABLE)
    sub = parser.add_subparsers(dest="command", metavar="{serve,worker,sandbox,bench}")
    for name, summary, text in (
        ("serve", "run the bot (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)", SERVE_HELP),
        ("worker", "run only the research worker", WORKER_HELP),
        ("sandbox", "the real bot behind a local Slack-like page, no workspace needed", SANDBOX_HELP),
    ):
        sub.add_parser(name, help=summary, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench = sub.add_parser("bench", help="load benchmark against the emulators; prints one table")
    if _devkit():
        from slackbot_bench import add_arguments

        add_arguments(bench)
    return parser


_DEVKIT_MISSING = ("slackbot {command} needs the slackbot-devkit package (emulators, sandbox, bench), which the "
                   "production image leaves out: pip install -e ./devkit (scripts/run and scripts/test install it)")


def _devkit() -> bool:
    """The development kit (emulators, sandbox, bench) is its own package, absent from the production image."""
    return importlib.util.find_spec("slackbot_emulators") is not None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    try:
        settings = load_settings(needs=command)
        logs.setup(settings.log_level, settings.log_format)
        if command in ("bench", "sandbox") and not _devkit():
            raise ConfigError(_DEVKIT_MISSING.format(command=command))
        if command == "bench":
            from slackbot_bench import run as run_bench

            return run_bench(args)
        if command == "sandbox":
            from slackbot_sandbox.server import run_sandbox

            asyncio.run(run_sandbox(settings))
            return 0
        from .app import run_worker, serve

        asyncio.run(serve(settings) if command == "serve" else run_worker(settings))
        return 0
    except ConfigError as exc:
        print(f"slackbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
