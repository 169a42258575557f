"""The turn runner: journal the turn, lock the thread, call Gemini, deliver into Slack, move the head.

Guarantees (enforced in Redis, so they hold across replicas):
* every accepted message is answered at least once and shown once: intake journals the turn before
  the ack; the process running it holds a lease it renews; when a process dies, a survivor claims
  the turn after the lease and finishes it from the journal (replaying Gemini's stored stream);
* one turn at a time per thread: a Redis lock held by the turn's id (so a survivor finishing a dead
  process's turn takes the lock over instead of waiting behind it); waiters in one process queue on
  a local lock, and only the first of them asks Redis, with backoff;
* the head moves by compare-and-set from the value the turn started with: never a fork; a failed or
  stopped turn leaves the head where it was, so the next message in the thread works;
* every turn ends with its answer or one plain line, within `SLACKBOT_TURN_DEADLINE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

from .. import metrics
from ..config import Settings
from ..files.fetch import turn_parts
from ..gemini import Delta, Done, Gemini, GeminiError, Started, Thought, ToolActivity
from ..profiles import Profile
from ..slack_out.answer import Extras, tool_status
from ..slack_out.delivery import AnswerDelivery, Target
from ..slack_out.plan import Policy
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway
from ..slack_out.render import render_span, stream_piece
from ..store import RedisError, Store, TurnRecord
from .context import NameCache, TurnNames, thread_transcript, with_transcript
from .intake import Turn
from .profiles_lookup import channel_name

log = logging.getLogger(__name__)

FAILURE_LINES = {
    "rate_limited": "Gemini is over its rate limit right now. Please try again in a minute.",
    "unavailable": "I couldn't reach Gemini just now. Please try again in a moment.",
    "stream_failed": "My connection to Gemini broke before the answer was complete. Please ask again.",
    "lost": "Gemini lost this answer partway through, so it ends here. Please ask again.",
    "rejected": "Gemini couldn't answer that request. Try rephrasing it.",
    "not_found": "I lost track of this conversation. Please ask again.",
}
UNEXPECTED = "Something went wrong on my side while answering. Please try again."
TOO_SLOW = "This answer took too long, so I stopped it here."
ABANDONED = "I couldn't finish this answer in time. Please ask again."
STOPPED = "Stopped at the asker's request."
SLACK_DOWN = "Slack didn't take my answer just now, so it isn't shown. Please ask again."
STORE_DOWN = "I can't reach my memory store right now. Please try again in a minute."
NO_READBACK = "I couldn't read this thread's earlier messages just now, so I only saw your message."
FRESH_CHAIN = "I no longer remember this thread's earlier conversation, so I'm starting fresh."
BUSY_USER = "You already have {n} answers in progress. Please wait for one to finish."
FAST_USER = "You're sending messages faster than I can answer. Please wait a minute and try again."
_LOCK_POLL = (0.2, 2.0)  # backoff bounds while another replica holds a thread's lock
_LANDING_SECONDS = 10.0  # the end of a turn's deadline kept for landing the answer (at most a quarter of it)


class Stopped(Exception):
    """The asker pressed Stop."""


@dataclass
class _Active:
    lock_key: str
    task: asyncio.Task | None = None
    stop_event: asyncio.Event | None = None


class TurnRunner:
    def __init__(self, settings: Settings, store: Store, gemini: Gemini, slack: SlackGateway, tasks):
        self.settings = settings
        self.store = store
        self.turns = store.turns
        self.gemini = gemini
        self.slack = slack
        self.tasks = tasks
        self.owner = f"r-{uuid.uuid4().hex[:10]}"
        self.names = NameCache(slack, settings)
        self.slots = asyncio.Semaphore(settings.max_concurrent_turns)
        self._active: dict[str, _Active] = {}
        self._local_locks: dict[str, asyncio.Lock] = {}
        s = settings
        self.policy = Policy(limit=s.message_chars, min_interval=s.edit_min_interval, stall_after=s.stall_seconds,
                             stream_max_age=s.stream_max_seconds, native=s.delivery == "planner",
                             edits_only=s.delivery == "edits")

    @property
    def lease(self) -> float:
        return self.settings.turn_lease_seconds

    # --- intake ------------------------------------------------------------------------------------
    async def accept(self, turn: Turn, bot_user_id: str | None) -> int:
        """Journal a turn before the ack: 1 = ours to run now, 0 = seen before, -1 = a reply not for the bot."""
        record = TurnRecord(
            id=turn.dedup_key.removeprefix("msg:"), team=turn.team, channel=turn.channel, user=turn.user,
            text=turn.text, ts=turn.ts, reply_thread_ts=turn.reply_thread_ts or "", chain_thread=turn.chain_thread,
            kind=turn.kind, in_existing_thread=turn.in_existing_thread, files=list(turn.files),
            owned_by_parent=bool(bot_user_id) and turn.parent_user == bot_user_id, owner=self.owner,
            user_team=turn.user_team or turn.team, bot_user_id=bot_user_id or "", created=time.time())
        outcome = await self.turns.accept(record, role=turn.role, lease=self.lease)
        if outcome == 1:
            self.launch(record)
        return outcome

    def launch(self, record: TurnRecord) -> None:
        self._active[record.id] = _Active(self.turns.lock_key(record.team, record.channel, record.chain_thread))
        self._active[record.id].task = self.tasks.spawn(self._run(record), name=f"turn:{record.id}")

    # --- leases and recovery --------------------------------------------------------------------------
    async def maintain(self, stopping: asyncio.Event) -> None:
        """Renew this process's leases (one call), act on Stop requests, and finish dead processes' turns."""
        tick = max(0.2, min(self.lease / 3, 2.0))
        while not stopping.is_set():
            try:
                await self._renew()
                if self.tasks.accepting:
                    for turn_id in await self.turns.claim_due(self.owner, self.lease, limit=10):
                        record = await self.turns.load(turn_id)
                        if record is not None and turn_id not in self._active:
                            metrics.TURNS_RECOVERED.inc()
                            log.info("recovering a turn", extra={"turn": turn_id, "state": record.state})
                            self.launch(record)
            except (RedisError, OSError):
                log.warning("could not renew turn leases")
            try:
                await asyncio.wait_for(stopping.wait(), tick)
            except asyncio.TimeoutError:
                pass

    async def _renew(self) -> None:
        pairs = [(turn_id, a.lock_key) for turn_id, a in self._active.items()]
        stopped, lost = await self.turns.renew(self.owner, self.lease, self._lock_ttl, pairs)
        for turn_id in stopped:
            self._signal_stop(turn_id)
        for turn_id in lost:  # another replica took it over (we were too slow to renew): let it
            active = self._active.get(turn_id)
            if active and active.task:
                log.warning("lost a turn's lease; another replica finishes it", extra={"turn": turn_id})
                active.task.cancel()

    @property
    def _lock_ttl(self) -> float:
        # longer than a lease, so after a crash the survivor of the turn gets its thread first
        return self.lease * 3

    # --- Stop ----------------------------------------------------------------------------------------
    async def request_stop(self, turn_id: str, user: str) -> str:
        """The Stop button: '' when stopping, else the one line to show the clicker."""
        record = await self.turns.request_stop(turn_id, user)
        if record is None or record.state == "done":
            return "That answer has already finished."
        if record.user != user:
            return f"Only <@{record.user}> can stop this answer."
        self._signal_stop(turn_id)  # at once if it runs here; else its owner sees it within a tick
        return ""

    def _signal_stop(self, turn_id: str) -> None:
        active = self._active.get(turn_id)
        if active and active.stop_event:
            active.stop_event.set()

    # --- one turn ----------------------------------------------------------------------------------------
    async def _run(self, record: TurnRecord) -> None:
        active = self._active[record.id]
        try:
            async with self._thread_lock(active.lock_key, record.id, lambda: self._waiting_status(record)):
                if self.slots.locked():  # this process is at SLACKBOT_MAX_CONCURRENT_TURNS: say so while waiting
                    await self._waiting_status(record, "Answering other questions first…")
                async with self.slots:
                    await self._turn(record, active)
        except (RedisError, OSError):
            log.warning("redis unavailable during a turn", extra=_ctx(record), exc_info=True)
            await self._say(record, STORE_DOWN)
        finally:
            self._active.pop(record.id, None)

    async def _turn(self, record: TurnRecord, active: _Active) -> None:
        recovered = record.state == "running"
        if record.state == "done":
            return
        if record.created and time.time() - record.created > self.settings.turn_deadline_seconds:
            await self._say(record, ABANDONED)  # a turn found long after its process died
            await self._end(record, active)
            return
        if not recovered and not await self._admit(record):
            await self._end(record, active)
            return
        if not recovered:
            record.head_before = await self.turns.chain_head(record.team, record.channel, record.chain_thread) or ""
            record.state = "running"
            await self.turns.write(record.id, self.owner, {"state": "running", "head_before": record.head_before})
        try:
            await self._answer(record, active, recovered)
        finally:
            await self._release_user(record)
            await self._end(record, active)

    async def _answer(self, record: TurnRecord, active: _Active, recovered: bool) -> None:
        started = time.monotonic()
        metrics.ANSWERS.labels("started").inc()
        restored = json.loads(record.delivery) if record.delivery else None
        delivery = self._delivery(record, restored)
        if recovered and restored and restored.get("pending"):
            await self._reconcile(record, delivery, restored["pending"])
        active.stop_event = asyncio.Event()
        await delivery.begin()
        delivery.start()
        profile, extras = await self._profile(record), Extras()
        outcome, note, done = "completed", "", None
        # The deadline covers the whole turn: reading Gemini stops early enough to land what it wrote, and
        # landing it (posts, continuations, the final layout) is bounded too, so nothing holds the thread
        # past the deadline
        ends_at = record.created + self.settings.turn_deadline_seconds
        landing = min(_LANDING_SECONDS, self.settings.turn_deadline_seconds / 4)
        try:
            async with asyncio.timeout(max(1.0, ends_at - landing - time.time())):
                done, note = await self._converse(record, delivery, active.stop_event, recovered, profile, extras)
        except Stopped:
            outcome, note = "stopped", STOPPED
        except TimeoutError:
            outcome, note = "failed", TOO_SLOW
        except GeminiError as exc:
            outcome, note = "failed", FAILURE_LINES.get(exc.kind, FAILURE_LINES["unavailable"])
            log.warning("answer failed", extra={**_ctx(record), "kind": exc.kind, "code": exc.code})
        except (RedisError, OSError):
            raise
        except Exception:
            outcome, note = "failed", UNEXPECTED
            log.exception("turn failed", extra=_ctx(record))
        if delivery.user_stopped and outcome == "completed":
            outcome, note = "stopped", STOPPED
        moved = late = False
        new_id = done.interaction_id if done else ""
        s = self.settings
        try:
            note = " ".join(n for n in (extras.failure_note(), note) if n)
            try:
                async with asyncio.timeout(max(landing, ends_at - time.time())):
                    await delivery.finish(note=note, extras=extras, max_sources=s.max_sources,
                                          output_chars=s.code_output_chars)
            except TimeoutError:  # it could not land in time (budgets gone): stop here, say so below
                delivery.cancel()
                late = not delivery.landed  # else only tidying (the final layout, the status) was cut short
                outcome = "failed" if late else outcome
            if delivery.broken:  # Slack refused or kept failing: the answer is not (all) there
                outcome = "failed"
            moved = outcome == "completed" and await self.turns.move_head(
                record.team, record.channel, record.chain_thread, record.head_before or None, new_id)
        finally:
            # tidying (a sealed stream's stop, a Stop button's removal) waits for budgets: not while
            # holding the thread or a turn slot
            self.tasks.spawn(_tidy(delivery), name=f"tidy:{record.id}")
        if late:
            await self._say(record, TOO_SLOW)
        elif delivery.failed:
            outcome = "failed"
            await self._say(record, UNEXPECTED)
        elif delivery.gave_up:
            await self._say(record, SLACK_DOWN)
        metrics.ANSWERS.labels(outcome).inc()
        for kind, count in delivery.mix.items():
            metrics.DELIVERY_CALLS.labels(kind).inc(count)
        model = profile.model or s.gemini_model
        usage = metrics.count_usage(model, profile.name, done.usage if done else None)
        log.info("answer done", extra={**_ctx(record), "outcome": outcome, "interaction": new_id,
                                       "head_moved": moved, "delivery": delivery.mix, "recovered": recovered,
                                       "model": model, "profile": profile.name, **usage,
                                       "latency_ms": int((time.monotonic() - started) * 1000)})

    def _delivery(self, record: TurnRecord, restored: dict | None) -> AnswerDelivery:
        target = Target(record.channel, record.reply_thread_ts or None, record.id, record.user,
                        record.user_team or record.team)

        async def journal(state: dict) -> None:
            await self._note(record, {"delivery": json.dumps(state)})

        async def find(shown: str) -> str | None:
            if not record.reply_thread_ts:
                return None  # a DM's top level: no thread to read back cheaply; posted again
            return await find_bot_message(self.slack, self.settings, record, shown)
        s = self.settings
        return AnswerDelivery(self.slack.for_team(record.team), target, self.policy, journal=journal,
                              max_chars=int(s.max_messages_per_answer * s.message_chars * 0.9),
                              max_messages=s.max_messages_per_answer,
                              status=s.delivery == "planner", restored=restored, find=find)

    async def _converse(self, record: TurnRecord, delivery: AnswerDelivery, stop: asyncio.Event, recovered: bool,
                        profile: Profile, extras: Extras) -> tuple[Done, str]:
        """Stream Gemini's answer into the delivery; returns (its Done, a note for the user)."""
        head = record.head_before or None

        def consume(items):
            return self._consume(record, delivery, stop, items, extras)
        if recovered and record.interaction_id:
            return await consume(self.gemini.replay_turn(record.interaction_id)), ""
        names = self.names.for_turn(record.team)  # this turn's allowance of users.info calls
        message = await names.readable(record.text, record.bot_user_id or None)
        if head is None and (record.in_existing_thread or record.kind == "reply"):
            reason = ("You were just mentioned in a Slack thread." if record.kind == "mention" else
                      "This Slack thread's earlier conversation is not in memory.")
            user_input, note = await self._with_thread(record, names, message, reason, NO_READBACK)
        else:  # files shared with this message go in as content parts; a follow-up has them in the chain
            given = await turn_parts(record.files, message, self.settings, bot_user_id=record.bot_user_id or None)
            user_input, note = given.input, given.note
        try:
            return await consume(self.gemini.stream_turn(user_input, head, profile)), note
        except GeminiError as exc:
            if exc.kind != "not_found" or head is None:
                raise
        # Gemini's retention lapsed: rebuild from Slack and start a new chain
        user_input, note = await self._with_thread(record, names, message,
                                                   "Our earlier conversation in this Slack thread expired.", FRESH_CHAIN)
        extras.__init__()  # what the failed first try collected is not this answer's
        return await consume(self.gemini.stream_turn(user_input, None, profile)), note

    async def _consume(self, record: TurnRecord, delivery: AnswerDelivery, stop: asyncio.Event, items,
                       extras: Extras) -> Done:
        """Feed Gemini's stream into the delivery until Done; a Stop click cancels the reading."""
        reader = asyncio.ensure_future(self._read(record, delivery, items, extras))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                return reader.result()
            raise Stopped()
        finally:
            for task in (reader, stopper):
                task.cancel()
            await asyncio.gather(reader, stopper, return_exceptions=True)

    async def _read(self, record: TurnRecord, delivery: AnswerDelivery, items, extras: Extras) -> Done:
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Delta):
                    delivery.feed(item.text)
                elif isinstance(item, Thought):
                    await delivery.thought(item.text)
                elif isinstance(item, Started):
                    record.interaction_id = item.interaction_id
                    await self._note(record, {"interaction_id": item.interaction_id})
                elif isinstance(item, Done):
                    return item
                else:  # citations, code runs, tool steps: shown with the final text
                    extras.add(item)
                    if isinstance(item, ToolActivity):
                        await delivery.tool(tool_status(item))
                if delivery.user_stopped:
                    raise Stopped()
        raise GeminiError("stream_failed", "no completion")

    async def _with_thread(self, record: TurnRecord, names: TurnNames, message: str, reason: str,
                           fallback_note: str) -> tuple[str | list, str]:
        """(input, note): the thread as context when the shared budget allows, else the message alone;
        with the files of this message and, newest first within the caps, of the thread."""
        bot = record.bot_user_id or None
        transcript = await thread_transcript(
            self.slack.for_team(record.team), self.settings, names, channel=record.channel,
            thread_ts=record.chain_thread, exclude_ts=record.ts, bot_user_id=bot)
        if transcript is None:
            given = await turn_parts(record.files, message, self.settings, bot_user_id=bot)
            return given.input, "_\n_".join(filter(None, [given.note, fallback_note]))
        given = await turn_parts([*record.files, *reversed(transcript.files)],
                                 with_transcript(transcript.text, message, reason=reason), self.settings, bot_user_id=bot)
        return given.input, given.note

    async def _reconcile(self, record: TurnRecord, delivery: AnswerDelivery, pending: dict) -> None:
        """A crash between Slack accepting a message and the journal recording it? Look before posting again.

        The survivor reads the thread back (the shared conversations.replies budget) and adopts a bot
        message showing exactly what the intent said. If the budget can't be had in time, the message
        is posted again: that is the one case where a piece of an answer can appear twice."""
        if not record.reply_thread_ts or not record.interaction_id:
            return
        text = ""
        async for item in self.gemini.replay_turn(record.interaction_id):
            if isinstance(item, Delta):
                text += item.text
            if len(text) >= pending["e"] or isinstance(item, Done):
                break
        if len(text) < pending["e"]:
            return
        grows = bool(pending.get("grows"))
        if pending["op"] == "start":
            expected = stream_piece(text, pending["s"], pending["e"], first=True)
        else:
            expected = render_span(text, pending["s"], pending["e"], final=not grows)
        ts = await find_bot_message(self.slack, self.settings, record, expected)
        if ts:
            delivery.adopt(pending["op"], ts, pending["s"], pending["e"], grows)
            metrics.TURNS_RECONCILED.inc()
            log.info("found a message posted before a crash; not posting it again", extra=_ctx(record))

    # --- small steps -----------------------------------------------------------------------------------
    async def _profile(self, record: TurnRecord) -> Profile:
        """The channel's profile (SLACKBOT_PROFILES_FILE), else the settings' defaults."""
        profiles = self.settings.profile_map
        name = await channel_name(self.slack.for_team(record.team), record.channel) if profiles.needs_names else None
        return profiles.for_channel(record.channel, name) or self.settings.default_profile

    async def _admit(self, record: TurnRecord) -> bool:
        s = self.settings
        verdict = await self.turns.admit_user(record.team, record.user, record.id, max_active=s.user_max_active_answers,
                                              per_minute=s.user_turns_per_minute, hold=s.turn_deadline_seconds)
        if verdict == 1:
            return True
        line = BUSY_USER.format(n=s.user_max_active_answers) if verdict == 0 else FAST_USER
        metrics.EVENTS.labels("turn", "over_quota").inc()
        await self.slack.for_team(record.team).send(calls.ephemeral(record.channel, record.user, line,
                                                                    record.reply_thread_ts or None))
        return False

    async def _waiting_status(self, record: TurnRecord, why: str = "Finishing the answer above first…") -> None:
        """Waiting behind other answers: show at once that this message is next."""
        if record.reply_thread_ts and self.settings.delivery == "planner":
            await self.slack.for_team(record.team).now(
                calls.set_status(record.channel, record.reply_thread_ts, "is thinking…", [why]))

    async def _note(self, record: TurnRecord, fields: dict[str, str]) -> None:
        """Journal progress. Best effort: while Redis is away the answer goes on (only a crash then loses it)."""
        try:
            await self.turns.write(record.id, self.owner, fields)
        except (RedisError, OSError):
            log.warning("could not journal a turn's progress", extra=_ctx(record))

    async def _release_user(self, record: TurnRecord) -> None:
        try:
            await self.turns.release_user(record.team, record.user, record.id)
        except (RedisError, OSError):
            pass  # the entry expires by itself

    async def _end(self, record: TurnRecord, active: _Active) -> None:
        try:
            await self.turns.done(record.id, self.owner, active.lock_key)
        except (RedisError, OSError):
            log.warning("could not close a turn's journal entry; it expires", extra=_ctx(record))

    async def _say(self, record: TurnRecord, line: str) -> None:
        """One plain line in the turn's thread, through the channel's post budget."""
        from ..slack_out.render import message_payload

        await self.slack.for_team(record.team).send(calls.post(record.channel, message_payload(f"_{line}_"),
                                                               record.reply_thread_ts or None))

    @asynccontextmanager
    async def _thread_lock(self, lock_key: str, turn_id: str, on_wait):
        local = self._local_locks.setdefault(lock_key, asyncio.Lock())
        try:
            waited = local.locked()
            if waited:  # an answer in this thread runs in this process
                await on_wait()
            async with local:
                delay = _LOCK_POLL[0]
                while not await self.turns.try_lock(lock_key, turn_id, self._lock_ttl):
                    if not waited:  # ... or in another replica
                        waited = True
                        await on_wait()
                    await asyncio.sleep(delay)
                    delay = min(_LOCK_POLL[1], delay * 1.5)
                yield
        finally:
            if not local.locked() and not getattr(local, "_waiters", None):
                self._local_locks.pop(lock_key, None)


async def find_bot_message(slack: SlackGateway, settings: Settings, record: TurnRecord,
                           expected: str) -> str | None:
    """The ts of a bot message in the turn's thread that shows `expected`, or None (budgeted read)."""
    from .context import read_thread

    messages = await read_thread(slack.for_team(record.team), settings, channel=record.channel,
                                 thread_ts=record.reply_thread_ts, oldest=record.ts)
    for msg in messages or []:
        shown = [b.get("text", "") for b in msg.get("blocks") or [] if b.get("type") == "markdown"]
        if msg.get("bot_id") and shown and shown[0].strip() == expected.strip():
            return msg.get("ts")
    return None


async def _tidy(delivery: AnswerDelivery) -> None:
    try:
        await delivery.close()
    finally:
        delivery.cancel()


def _ctx(record: TurnRecord) -> dict:
    return {"team": record.team, "channel": record.channel, "thread_ts": record.chain_thread, "kind": record.kind}
