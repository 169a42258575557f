"""Forgetting: a message deleted in Slack (message_deleted, or message_changed to a tombstone), a
"forget" mention, the "Forget this thread" shortcut or `/gemini forget`.

Redis first, in one script (store/governance.py: the entries go, a tombstone stays, the chain is cut),
so a turn still running, a retry or another replica can never bring the text back; the same script
records what is still to delete, and a deletion schedule entry written just before it makes a worker
finish those deletes if this process dies. Then Gemini (interactions.delete of every interaction those
messages started), Slack (the bot's answers to them) and research jobs' text, each marked done as it is
confirmed. The next message in the thread starts a new chain, rebuilt from what is left in Slack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..chat.intake import DM_THREAD
from ..gemini import Gemini, GeminiError
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway
from ..store.governance import Answered, GovernanceStore, Pending
from ..store.jobs import JobStore

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
    def __init__(self, store: GovernanceStore, gemini: Gemini, slack: SlackGateway, spawn, *,
                 jobs: JobStore | None = None, retry_in: float = 60.0):
        self.store = store
        self.spawn = spawn  # TaskTracker.spawn: the deletions at Gemini and in Slack outlive the ack
        self.gemini = gemini
        self.slack = slack
        self.jobs = jobs  # research jobs of a forgotten thread: cancelled, their text cleared
        self.retry_in = retry_in  # a worker finishes what is not confirmed by then

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

    async def owe(self, team: str, channel: str, thread: str, ids: list[str], bot: list[str],
                  files: list[str] = ()) -> None:
        """A turn (or a research job) made these after its message or thread was forgotten: delete them,
        durably like a forgetting."""
        member = await self.store.to_purge(team, channel, thread, ids, bot, files, retry_in=self.retry_in)
        await self.purge(team, channel, thread, member)

    async def _forget(self, team: str, channel: str, thread: str, ts: str | None, cutoff: str) -> list[Answered]:
        taken, member = await self.store.forget(team, channel, thread, ts, cutoff, retry_in=self.retry_in)
        if taken:  # before the ack: Redis decided; the deletes outlive it
            self.spawn(self.purge(team, channel, thread, member), name=f"forget:{team}:{channel}:{thread}")
        else:
            await self.store.purge_settled(member)
        return taken

    async def purge(self, team: str, channel: str, thread: str, member: str, *, pace: float = 0.0) -> bool:
        """Carry out what the thread still owes (whoever forgot it); True when nothing is left and the
        schedule member is off. Each delete is marked done as it is confirmed, so a crash repeats at most
        the one in flight (and a repeat is harmless: Gemini answers 404, Slack message_not_found)."""
        pending = await self.store.pending(team, channel, thread)
        owed = await self._with_jobs(pending)
        ids = await self.at_gemini(owed.ids, pace=pace)
        bot = await self.in_slack(team, channel, owed.bot)
        files = await self.files_in_slack(team, owed.files)
        complete = (len(ids), len(bot), len(files)) == (len(owed.ids), len(owed.bot), len(owed.files))
        jobs = pending.jobs if complete else []  # a job is done once all it made is
        await self.store.purged(team, channel, thread, ids=[i for i in ids if i in pending.ids],
                                bot=[b for b in bot if b in pending.bot], jobs=jobs,
                                files=[f for f in files if f in pending.files])
        if not complete:
            return False  # the member stays scheduled: a worker tries again after `retry_in`
        await self.store.purge_settled(member)
        if pending:
            log.info("forgot", extra={"team": team, "channel": channel, "thread_ts": thread, "interactions": len(ids),
                                      "answers": len(bot), "uploads": len(files), "research_jobs": len(jobs)})
        return True

    async def _with_jobs(self, pending: Pending) -> Pending:
        """What is owed, with what each forgotten research job made so far: its text goes and, still
        running, it is cancelled (when it ends, the worker owes whatever it made after this)."""
        ids, bot, files = list(pending.ids), list(pending.bot), list(pending.files)
        for job_id in pending.jobs if self.jobs else []:
            job = await self.jobs.forget(job_id)
            if job is None:
                continue
            if job.cancelled_by and not job.finished:
                if job.interaction_id:
                    try:
                        await self.gemini.cancel(job.interaction_id)
                    except GeminiError:
                        pass  # the worker sees the cancel request and ends the job anyway
                await self.jobs.poke(job_id)  # a plan waiting for approval is due only at its timeout
            ids += [i for i in job.interaction_ids if i not in ids]
            bot += [ts for ts in job.messages if ts not in bot]
            files += [f for f in job.upload_ids if f not in files]
        return Pending(ids, bot, pending.jobs, files)

    async def at_gemini(self, ids: list[str], *, pace: float = 0.0) -> list[str]:
        """The interactions now gone at Gemini (deleted, or already gone); the rest stay owed."""
        done = []
        for interaction_id in dict.fromkeys(ids):
            try:
                await self.gemini.delete(interaction_id)
                done.append(interaction_id)
            except GeminiError as exc:
                log.warning("could not delete an interaction", extra={"interaction": interaction_id,
                                                                       "kind": exc.kind})
            if pace:
                await asyncio.sleep(pace)
        return done

    async def in_slack(self, team: str, channel: str, bot_ts: list[str]) -> list[str]:
        """The bot's answer messages now gone in Slack (deleted, or already gone)."""
        slack, done = self.slack.for_team(team), []
        for ts in bot_ts:
            out = await slack.send(calls.delete(channel, ts), give_up_after=30.0)
            if out.ok or out.error in GONE:
                done.append(ts)
            else:
                log.warning("could not delete an answer", extra={"channel": channel, "error": out.error})
        return done


    async def files_in_slack(self, team: str, file_ids: list[str]) -> list[str]:
        """The bot's uploads now gone in Slack (their file-only messages go with them)."""
        slack, done = self.slack.for_team(team), []
        for file_id in file_ids:
            out = await slack.send(calls.delete_file(file_id), give_up_after=30.0)
            if out.ok or out.error in GONE + ("file_not_found", "file_deleted", "cant_delete_file"):
                done.append(file_id)
            else:
                log.warning("could not delete an upload", extra={"error": out.error})
        return done


# Slack's answers to chat.delete after which trying again cannot help: the message (or the workspace's
# token) is gone, or Slack will never let the bot delete it.
GONE = ("message_not_found", "channel_not_found", "cant_delete_message", "is_archived", "account_inactive",
        "token_revoked", "invalid_auth")


def _now_ts() -> str:
    return f"{time.time():.6f}"


def forgotten_line(taken: list[Answered]) -> str:
    """The one line the person reads."""
    n = len(taken)
    if not n:
        return "There was nothing of this conversation to forget."
    return (f"Forgotten: {n} answered message{'s' if n != 1 else ''} of this conversation, deleted at Gemini "
            "and here.")
