"""`slackbot bench`: placeholder until the load benchmark lands."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=100)


def run(args: argparse.Namespace) -> int:
    print("benchmark not implemented yet")
    return 1
