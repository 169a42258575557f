"""Bolt listeners grouped by kind, each group with its own register(app, services)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from . import actions, agent, commands, events, gemini_command, governance, installs


def register(app: AsyncApp, services) -> None:
    events.register(app, services)
    commands.register(app, services)
    actions.register(app, services)
    gemini_command.register(app, services)
    agent.register(app, services)
    governance.register(app, services)
    installs.register(app, services)
