"""/gemini: shows the person who runs it which profile is in effect in this channel (ephemeral).

Why a command of its own: profiles change what the bot does per channel (model, tools, system
instruction), and people asking "why does it answer like that here?" should not need an operator.
The answer comes back in the ack itself, so only the caller sees it and no Web API call is made.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..chat.intake import installing_team
from ..config import Settings
from ..profiles import Profile

COMMAND = "/gemini"
_INSTRUCTION_CHARS = 300


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def describe_profile(settings: Settings, profile: Profile, channel_label: str) -> str:
    """The ephemeral text: one line per field, everything from config escaped for mrkdwn."""
    model = profile.model or settings.gemini_model
    tools = list(profile.tools if profile.tools is not None else settings.tool_names)
    tools += [f"{s.name} (MCP)" for s in settings.mcp_server_list
              if profile.mcp_servers is None or s.name in profile.mcp_servers]
    instruction = profile.system_instruction if profile.system_instruction is not None else settings.system_instruction
    if len(instruction) > _INSTRUCTION_CHARS:
        instruction = instruction[: _INSTRUCTION_CHARS - 1] + "…"
    lines = [
        f"*Gemini profile in {_esc(channel_label)}: {_esc(profile.name)}*",
        f"• Model: `{_esc(model)}`",
        f"• Tools: {_esc(', '.join(tools)) if tools else 'none'}",
        f"• Thinking level: {_esc(profile.thinking_level or 'model default')}",
        f"• Max output tokens: {profile.max_output_tokens or 'model default'}",
        f"• System instruction: {_esc(' '.join(instruction.split())) or '(none)'}",
    ]
    return "\n".join(lines)


def register(app: AsyncApp, services) -> None:
    @app.command(COMMAND)
    async def gemini_profile(ack, command):
        settings = services.settings
        channel, name = command.get("channel_id") or "", command.get("channel_name") or ""
        profile = settings.profile_map.for_channel(channel, name, installing_team(command)) or settings.default_profile
        label = f"#{name}" if name and name != "directmessage" else "this conversation"
        await ack(describe_profile(settings, profile, label))
