"""Who may see what a function returns: the answer's audience against where the content lives. Pure.

An answer is read by everyone in its conversation, not only by the asker. So content comes back to
Gemini only if every reader of the answer can read it in Slack:
* the answer is in a public channel: public-channel content, and this conversation's own;
* in a private channel or a group DM: the same, and that conversation's own messages;
* in a DM with the bot (or its agent tab): whatever the asker can read (and the bot could reach).
Anything else is withheld with `NOT_SHAREABLE`. Unknown is treated as private: a conversation the
bot cannot describe never counts as public.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

NOT_SHAREABLE = "not shareable here: ask me in a DM"


class Reach(Enum):
    PUBLIC = "public channel"
    PRIVATE = "private channel or group DM"
    DM = "DM or agent tab"


@dataclass(frozen=True)
class Audience:
    """Who reads the answer: everyone in `channel`, a conversation of kind `reach`."""

    channel: str
    reach: Reach


@dataclass(frozen=True)
class Place:
    """Where a piece of content lives. `public`: a public channel (None: unknown, counts as not);
    `asker_reads`: Slack says the asker can read it (their own search, or their membership)."""

    channel: str
    public: bool | None
    asker_reads: bool = False


def reach_of(channel: str, info: dict | None) -> Reach:
    """The kind of conversation, from conversations.info's `channel` object (None: unknown, so the
    strictest reading: public, whose readers are anyone in the workspace)."""
    if channel.startswith("D") or (info or {}).get("is_im"):
        return Reach.DM
    if info and (info.get("is_private") or info.get("is_mpim") or info.get("is_group")):
        return Reach.PRIVATE
    return Reach.PUBLIC


def is_public(info: dict | None) -> bool | None:
    """Whether conversations.info describes a public channel (None when the bot could not tell)."""
    if not info:
        return None
    return not (info.get("is_private") or info.get("is_im") or info.get("is_mpim") or info.get("is_group"))


def shareable(audience: Audience, place: Place) -> bool:
    """May content from `place` appear in an answer read by `audience`?"""
    if place.public is True or place.channel == audience.channel:
        return True
    return audience.reach is Reach.DM and place.asker_reads
