"""Forgetting: a message deleted in Slack (message_deleted, or message_changed to a tombstone), a
"forget" mention, the "Forget this thread" shortcut or `/gemini forget`.

Redis first, in one script (store/governance.py: the entries go, a tombstone stays, the chain is cut),
so a turn still running, a retry or another replica can never bring the text back; then Gemini
(interactions.delete of every interaction those messages started) and Slack (the bot's answers to
them). The next message in the thread starts a new chain, rebuilt from what is left in Slack.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..chat.intake import DM_THREAD
from ..gemini import Gemini, GeminiError
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway
from ..store.governance import Answered, GovernanceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deleted:
    """Which message of which thread a deletion event is about."""

    channel: str
    thread: str  # the chain's thread key
    ts: str
    whole_thread: bool


def deleted_message(event: dict) -> Deleted | None:
    """Pure: the deletion an event reports, or None. A deleted thread parent (or a tombstone, which is a
    parent deleted with replies left) forgets the whole thread."""
    if not isinstance(event, dict) or event.get("type") != "message" or not event.get("channel"):
        return None
    channel, subtype = str(event["channel"]), event.get("subtype")
    if subtype == "message_changed" and (event.get("message") or {}).get("subtype") == "tombstone":
        ts = str(event["message"].get("ts") or "")
        return Deleted(channel, ts, ts, True) if ts else None
    if subtype != "message_deleted" or not event.get("deleted_ts"):
        return None
    ts = str(event["deleted_ts"])
    previous = event.get("previous_message") or {}
    thread = str(previous.get("thread_ts") or "")
    if not thread and event.get("channel_type") == "im":
        return Deleted(channel, DM_THREAD, ts, False)  # a top-level DM message: the DM is one conversation
    if not thread or thread == ts:
        return Deleted(channel, ts, ts, True)
    return Deleted(channel, thread, ts, False)


class Forgetter:
    def __init__(self, store: GovernanceStore, gemini: Gemini, slack: SlackGateway, spawn):
        self.store = store
        self.spawn = spawn  # TaskTracker.spawn: the deletions at Gemini and in Slack outlive the ack
        self.gemini = gemini
        self.slack = slack

    async def on_deleted(self, team: str, d: Deleted) -> list[Answered]:
        """A message deleted in Slack: if the bot answered it, forget it and what followed it."""
        if d.whole_thread:
            return await self.thread(team, d.channel, d.thread, cutoff=_now_ts())
        answered = [a.ts for a in await self.store.answered(team, d.channel, d.thread)]
        if d.ts not in answered:
            return []
        return await self._forget(team, d.channel, d.thread, d.ts, _now_ts())

    async def thread(self, team: str, channel: str, thread: str, *, cutoff: str) -> list[Answered]:
        """Forget a whole thread (every message up to `cutoff`)."""
        return await self._forget(team, channel, thread, None, cutoff)

    async def conversation(self, team: str, channel: str, *, cutoff: str) -> list[Answered]:
        """Every thread of a DM (its top level and the agent tab's threads): `/gemini forget` there."""
        taken: list[Answered] = []
        for thread in await self.store.threads_of(team, channel):
            taken += await self.thread(team, channel, thread, cutoff=cutoff)
        return taken

    async def _forget(self, team: str, channel: str, thread: str, ts: str | None, cutoff: str) -> list[Answered]:
        taken = await self.store.forget(team, channel, thread, ts, cutoff)  # before the ack: Redis decides
        if taken:
            self.spawn(self._delete(team, channel, thread, taken), name=f"forget:{team}:{channel}:{thread}")
        return taken

    async def _delete(self, team: str, channel: str, thread: str, taken: list[Answered]) -> None:
        await self.at_gemini([i for a in taken for i in a.ids])
        await self.in_slack(team, channel, [b for a in taken for b in a.bot])
        log.info("forgot", extra={"team": team, "channel": channel, "thread_ts": thread,
                                  "messages": len(taken), "interactions": sum(len(a.ids) for a in taken)})

    async def at_gemini(self, ids: list[str]) -> None:
        for interaction_id in dict.fromkeys(ids):
            try:
                await self.gemini.delete(interaction_id)
            except GeminiError as exc:
                log.warning("could not delete an interaction", extra={"interaction": interaction_id,
                                                                       "kind": exc.kind})

    async def in_slack(self, team: str, channel: str, bot_ts: list[str]) -> None:
        slack = self.slack.for_team(team)
        for ts in bot_ts:
            out = await slack.send(calls.delete(channel, ts), give_up_after=30.0)
            if not out.ok and out.error not in ("message_not_found",):
                log.warning("could not delete an answer", extra={"channel": channel, "error": out.error})


def _now_ts() -> str:
    return f"{time.time():.6f}"


def forgotten_line(taken: list[Answered]) -> str:
    """The one line the person reads."""
    n = len(taken)
    if not n:
        return "There was nothing of this conversation to forget."
    return (f"Forgotten: {n} answered message{'s' if n != 1 else ''} of this conversation, deleted at Gemini "
            "and here.")
