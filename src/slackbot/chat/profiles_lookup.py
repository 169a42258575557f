"""Channel names for profiles keyed by name: one `conversations.info` per channel per process.

Only called when the profiles file maps a channel by name (ids need no lookup). A failure (e.g. a
missing `channels:read` scope) means "no name": the channel gets the default profile, and the
next turn tries again.
"""

from __future__ import annotations

from ..slack_out import calls
from ..slack_out.gateway import WorkspaceSlack

_NAMES: dict[str, str] = {}  # channel id -> name; channel renames are rare and a restart picks them up
_WAIT_SECONDS = 2.0  # longest a turn waits for the workspace's conversations.info budget


async def channel_name(slack: WorkspaceSlack, channel: str) -> str | None:
    if channel in _NAMES:
        return _NAMES[channel]
    if channel.startswith("D"):
        return None  # a DM has no name
    out = await slack.send(calls.channel_info(channel), tries=1, give_up_after=_WAIT_SECONDS)
    name = ((out.data or {}).get("channel") or {}).get("name")
    if name:
        _NAMES[channel] = name
    return name
