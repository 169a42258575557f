"""Interactivity: the Cancel button on research status messages, the Stop button on answers."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..chat.intake import installing_team
from ..research.status import CANCEL_ACTION
from ..slack_out import calls
from ..slack_out.delivery import STOP_ACTION


def register(app: AsyncApp, services) -> None:
    @app.action(CANCEL_ACTION)
    async def cancel(ack, body, action):
        await ack()
        if services.research is not None:
            services.tasks.spawn(services.research.handle_cancel(body, action), name="research-cancel")

    @app.action(STOP_ACTION)
    async def stop(ack, body, action, context):
        await ack()
        user = (body.get("user") or {}).get("id", "")
        reply = await services.lifecycle.request_stop(action.get("value") or "", user)
        if not reply.stopping:
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
            team = installing_team(body, context.team_id)
            await services.slack.for_team(team).send(calls.ephemeral(channel, user, reply.line))
