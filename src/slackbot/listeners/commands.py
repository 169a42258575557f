"""Slash commands: /research."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp


def register(app: AsyncApp, services) -> None:
    @app.command("/research")
    async def research(ack, command, request):
        if services.research is None:
            await ack("Research is not enabled on this bot.")
            return
        # the signature identifies a replayed request when a command carries no trigger_id
        signature = (request.headers.get("x-slack-signature") or [""])[0]
        await services.research.handle_command(ack, command, signature)
