"""Reading Slack for context: people's names, and (rarely) a thread's earlier messages.

`conversations.replies` is Tier 1 for non-Marketplace apps (1 call a minute, 15 messages), so
it pays its workspace's budget in the gateway (shared by every replica), and is spent only when
the bot has no chain for a thread: a mention inside a people's thread, or a chain Gemini forgot.
`users.info` (Tier 4) pays its own budget, and is called at most SLACKBOT_NAME_LOOKUPS_PER_TURN times a
turn: a message mentioning 1,500 people costs 20 calls, and the rest stay ids.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..config import Settings
from ..files.kinds import display_name
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway, WorkspaceSlack
from ..slack_out.render import mentioned_user_ids, slack_to_prompt

REPLIES_LIMIT = 15


class NameCache:
    """user id -> display name, bounded and expiring so the process stays flat. Look-ups go through
    a turn's `TurnNames`, which caps them."""

    def __init__(self, slack: SlackGateway, settings: Settings, size: int = 2000, ttl: float = 3600):
        self.slack = slack
        self.settings = settings
        self.size = size
        self.ttl = ttl
        self._names: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def for_turn(self, team: str) -> TurnNames:
        return TurnNames(self, team, self.settings.name_lookups_per_turn)

    def cached(self, user_id: str) -> str | None:
        hit = self._names.get(user_id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def remember(self, user_id: str, name: str) -> None:
        self._names[user_id] = (time.monotonic() + self.ttl, name)
        self._names.move_to_end(user_id)
        while len(self._names) > self.size:
            self._names.popitem(last=False)

    async def look_up(self, team: str, user_id: str) -> str | None:
        """users.info, if the workspace's shared budget has a token now (never waits: a name is not
        worth delaying an answer); None when there is no token or Slack did not answer."""
        out = await self.slack.for_team(team).now(calls.user_info(user_id))
        if out.wait or out.unsure:
            return None
        user = (out.data or {}).get("user") or {}  # user_not_found and the like: remembered as the id
        profile = user.get("profile") or {}
        name = (profile.get("real_name") or user.get("real_name") or profile.get("display_name")
                or user.get("name") or user_id)
        self.remember(user_id, str(name))
        return str(name)


class TurnNames:
    """One turn's name look-ups: cached names are free; at most `left` users.info calls, and none
    after the shared budget said no once."""

    def __init__(self, cache: NameCache, team: str, left: int):
        self.cache, self.team, self.left = cache, team, left

    async def name(self, user_id: str) -> str:
        return await self._name(user_id) or user_id

    async def _name(self, user_id: str) -> str | None:
        if (hit := self.cache.cached(user_id)) is not None:
            return hit
        if self.left <= 0:
            return None
        self.left -= 1
        found = await self.cache.look_up(self.team, user_id)
        if found is None:
            self.left = 0
        return found

    async def readable(self, text: str, bot_user_id: str | None) -> str:
        names = {}
        for uid in mentioned_user_ids(text):
            if uid != bot_user_id and (found := await self._name(uid)) is not None:
                names[uid] = found
        return slack_to_prompt(text, names, bot_user_id)


async def read_thread(slack: WorkspaceSlack, settings: Settings, *, channel: str, thread_ts: str,
                      oldest: str | None = None, wait: float | None = None) -> list[dict] | None:
    """A thread's messages (at most REPLIES_LIMIT), or None if the shared budget can't be had within `wait`
    seconds (default SLACKBOT_REPLIES_WAIT_SECONDS) or Slack did not answer (one try)."""
    out = await slack.send(calls.replies(channel, thread_ts, REPLIES_LIMIT, oldest), tries=1,
                           give_up_after=settings.replies_wait_seconds if wait is None else wait)
    return list((out.data or {}).get("messages") or []) if out.ok else None


@dataclass
class Transcript:
    text: str
    files: list[dict] = field(default_factory=list)  # people's files in those messages, oldest first


async def thread_transcript(slack: WorkspaceSlack, settings: Settings, names: TurnNames, *, channel: str,
                            thread_ts: str, exclude_ts: str, bot_user_id: str | None,
                            wait: float | None = None, skip: tuple[str, ...] = ()) -> Transcript | None:
    """The thread's recent messages as a transcript (with the files people shared in them), or None
    if the shared budget can't be had promptly (within `wait` seconds, when given). `exclude_ts` and
    `skip`: messages left out (the one being answered, a status message about this very work)."""
    messages = await read_thread(slack, settings, channel=channel, thread_ts=thread_ts, wait=wait)
    if messages is None:
        return None
    lines, files = [], []
    for msg in messages:
        if msg.get("ts") == exclude_ts or msg.get("ts") in skip or msg.get("subtype") in ("channel_join", "message_deleted"):
            continue
        text = await names.readable(message_text(msg), bot_user_id)
        is_bot = msg.get("bot_id") or msg.get("user") == bot_user_id
        shared = [] if is_bot else [f for f in msg.get("files") or [] if isinstance(f, dict)]  # never our own
        files.extend(shared)
        text += "".join(f" [shared the file “{display_name(f)}”]" for f in shared)
        if not text.strip():
            continue
        speaker = "Assistant" if is_bot else await names.name(msg.get("user", "someone"))
        lines.append(f"{speaker}: {text}")
    return Transcript("\n".join(lines), files)


def message_text(msg: dict) -> str:
    """A message's text, preferring our own markdown blocks (the `text` of bot messages is a fallback)."""
    parts = [b.get("text", "") for b in msg.get("blocks") or [] if b.get("type") == "markdown"]
    return "\n".join(parts) if parts else msg.get("text") or ""


def with_transcript(transcript: str, message: str, *, reason: str, asked: str = "The new message to answer") -> str:
    """A stateless turn's input: earlier messages first, then the new one (after `asked`)."""
    return (
        f"{reason} Here are the thread's earlier messages, oldest first:\n\n{transcript}\n\n"
        f"---\n{asked}:\n{message}"
    )


def with_context(message: str, channel: str) -> str:
    """A Messages-tab question with the channel the person looks at (app_context), so "summarise this"
    can mean that channel; the bare message when they look at none."""
    if not channel:
        return message
    return f"{message}\n\n(While asking, the person is looking at the Slack channel with id {channel}.)"
