"""Slash commands: /research."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp


def register(app: AsyncApp, services) -> None:
    @app.command("/research")
    async def research(ack, command, respond):
        if services.research is None:
            await ack("Research is not enabled on this bot.")
            return
        await services.research.handle_command(ack, command)
