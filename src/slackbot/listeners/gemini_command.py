"""/gemini: shows the person who runs it which profile is in effect in this channel (ephemeral);
`/gemini feedback` shows an operator (SLACKBOT_OPERATORS) the last 7 days' ratings per model and profile.

Why a command of its own: profiles change what the bot does per channel (model, tools, system
instruction), and people asking "why does it answer like that here?" should not need an operator.
The answer comes back in the ack itself, so only the caller sees it and no Web API call is made.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..agent.feedback import NOT_OPERATOR, report
from ..agent.surface import describe_profile
from ..chat.intake import installing_team
from ..store import RedisError
from .governance import gemini_subcommand

COMMAND = "/gemini"


def register(app: AsyncApp, services) -> None:
    @app.command(COMMAND)
    async def gemini_profile(ack, command, context):
        settings = services.settings
        if (command.get("text") or "").strip().lower() == "feedback":
            if command.get("user_id") not in settings.operator_ids:
                await ack(NOT_OPERATOR)
                return
            try:  # seven small reads, well within the 3 s ack
                rows = await services.store.agent.ratings(context.team_id or command.get("team_id") or "")
            except (RedisError, OSError):
                await ack("I can't reach my store right now. Please try again in a minute.")
                return
            await ack(report(rows))
            return
        if (answer := await gemini_subcommand(command, services)) is not None:
            await ack(answer)
            return
        channel, name = command.get("channel_id") or "", command.get("channel_name") or ""
        profile = settings.profile_map.for_channel(channel, name, installing_team(command)) or settings.default_profile
        label = f"#{name}" if name and name != "directmessage" else "this conversation"
        await ack(describe_profile(settings, profile, label))
