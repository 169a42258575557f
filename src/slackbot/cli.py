"""`slackbot serve | worker | sandbox | bench`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import logs
from .config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slackbot", description="Gemini in Slack.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the bot (HTTP, or Socket Mode when SLACK_APP_TOKEN is set); "
                                 "with no Slack tokens, runs the sandbox")
    sub.add_parser("worker", help="run only the research worker")
    sub.add_parser("sandbox", help="the real bot behind a local Slack-like page, no workspace needed")
    bench = sub.add_parser("bench", help="load benchmark against the emulators; prints one table")
    from .bench import add_arguments

    add_arguments(bench)
    args = parser.parse_args(argv)
    command = args.command or "serve"
    try:
        settings = load_settings()
        logs.setup(settings.log_level, settings.log_format)
        if command == "bench":
            from .bench import run as run_bench

            return run_bench(args)
        if command == "sandbox" or (command == "serve" and not settings.has_slack_credentials):
            from .sandbox.server import run_sandbox

            asyncio.run(run_sandbox(settings))
            return 0
        settings.require_slack()
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
