"""Channel names for profiles keyed by name: one `conversations.info` per channel per process.

Only called when the profiles file maps a channel by name (ids need no lookup). A failure (e.g. a
missing `channels:read` scope) means "no name": the channel gets the default profile, and the
next turn tries again.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

_NAMES: dict[str, str] = {}  # channel id -> name; channel renames are rare and a restart picks them up


async def channel_name(client: AsyncWebClient, channel: str) -> str | None:
    if channel in _NAMES:
        return _NAMES[channel]
    if channel.startswith("D"):
        return None  # a DM has no name
    try:
        resp = await client.conversations_info(channel=channel)
    except (SlackApiError, OSError) as exc:
        log.warning("channel name lookup failed", extra={"channel": channel, "error": type(exc).__name__})
        return None
    name = (resp.get("channel") or {}).get("name")
    if name:
        _NAMES[channel] = name
    return name
