"""Reading Slack for context: people's names, and (rarely) a thread's earlier messages.

`conversations.replies` is Tier 1 for non-Marketplace apps (1 call a minute, 15 messages), so
it is spent through one Redis bucket per workspace shared by every replica, and only when the
bot has no chain for a thread: a mention inside a people's thread, or a chain Gemini forgot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from ..config import Settings
from ..slack_out.poster import slack_error
from ..slack_out.render import mentioned_user_ids, slack_to_prompt
from ..store import Budget, RedisError, Store

log = logging.getLogger(__name__)

REPLIES_LIMIT = 15


class NameCache:
    """user id -> display name, bounded and expiring so the process stays flat."""

    def __init__(self, client: AsyncWebClient, size: int = 2000, ttl: float = 3600):
        self.client = client
        self.size = size
        self.ttl = ttl
        self._names: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def name(self, user_id: str) -> str:
        hit = self._names.get(user_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            resp = await self.client.users_info(user=user_id)
            user = resp["user"]
            profile = user.get("profile") or {}
            name = profile.get("real_name") or user.get("real_name") or profile.get("display_name") or user.get("name")
        except (SlackApiError, KeyError, TypeError):
            name = None
        name = name or user_id
        self._names[user_id] = (time.monotonic() + self.ttl, name)
        self._names.move_to_end(user_id)
        while len(self._names) > self.size:
            self._names.popitem(last=False)
        return name

    async def readable(self, text: str, bot_user_id: str | None) -> str:
        ids = [u for u in mentioned_user_ids(text) if u != bot_user_id]
        names = {u: await self.name(u) for u in ids}
        return slack_to_prompt(text, names, bot_user_id)


async def read_thread(client: AsyncWebClient, store: Store, settings: Settings, *, team: str, channel: str,
                      thread_ts: str, oldest: str | None = None) -> list[dict] | None:
    """A thread's messages (at most REPLIES_LIMIT), or None if the shared budget can't be had promptly."""
    budget = Budget(settings.replies_budget_per_minute / 60.0, 1.0)
    deadline = time.monotonic() + settings.replies_wait_seconds
    extra = {"oldest": oldest} if oldest else {}
    try:
        while (wait := await store.take(f"replies:{team}", budget)) > 0:
            if time.monotonic() + wait > deadline:
                return None
            await asyncio.sleep(wait)
        resp = await client.conversations_replies(channel=channel, ts=thread_ts, limit=REPLIES_LIMIT, **extra)
    except (RedisError, OSError):
        return None
    except SlackApiError as exc:
        if exc.response is not None and exc.response.status_code == 429:
            await store.penalize(f"replies:{team}", float(exc.response.headers.get("Retry-After", 60)))
        log.warning("conversations.replies failed", extra={"channel": channel, "error": slack_error(exc)[1]})
        return None
    return list(resp.get("messages") or [])


@dataclass
class Transcript:
    text: str
    files: list[dict] = field(default_factory=list)  # people's files in those messages, oldest first


async def thread_transcript(client: AsyncWebClient, store: Store, settings: Settings, names: NameCache, *,
                            team: str, channel: str, thread_ts: str, exclude_ts: str,
                            bot_user_id: str | None) -> Transcript | None:
    """The thread's recent messages as a transcript (with the files people shared in them), or None
    if the shared budget can't be had promptly."""
    messages = await read_thread(client, store, settings, team=team, channel=channel, thread_ts=thread_ts)
    if messages is None:
        return None
    lines, files = [], []
    for msg in messages:
        if msg.get("ts") == exclude_ts or msg.get("subtype") in ("channel_join", "message_deleted"):
            continue
        text = await names.readable(_message_text(msg), bot_user_id)
        is_bot = msg.get("bot_id") or msg.get("user") == bot_user_id
        shared = [] if is_bot else [f for f in msg.get("files") or [] if isinstance(f, dict)]  # never our own
        files.extend(shared)
        text += "".join(f" [shared the file “{f.get('name') or f.get('title') or 'file'}”]" for f in shared)
        if not text.strip():
            continue
        speaker = "Assistant" if is_bot else await names.name(msg.get("user", "someone"))
        lines.append(f"{speaker}: {text}")
    return Transcript("\n".join(lines), files)


def _message_text(msg: dict) -> str:
    """A message's text, preferring our own markdown blocks (the `text` of bot messages is a fallback)."""
    parts = [b.get("text", "") for b in msg.get("blocks") or [] if b.get("type") == "markdown"]
    return "\n".join(parts) if parts else msg.get("text") or ""


def with_transcript(transcript: str, message: str, *, reason: str) -> str:
    """A stateless turn's input: earlier messages first, then the new one."""
    return (
        f"{reason} Here are the thread's earlier messages, oldest first:\n\n{transcript}\n\n"
        f"---\nThe new message to answer:\n{message}"
    )
