"""Interactivity: the Cancel button on research status messages."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..research.status import CANCEL_ACTION


def register(app: AsyncApp, services) -> None:
    @app.action(CANCEL_ACTION)
    async def cancel(ack, body, action):
        await ack()
        if services.research is not None:
            services.tasks.spawn(services.research.handle_cancel(body, action), name="research-cancel")
