"""One turn, top to bottom: admit the asker, talk with Gemini, land the answer in Slack, move the head.

`AnswerTurn` owns everything of one turn (its journal record, delivery, extras, Stop, profile); the
lifecycle (lifecycle.py) runs it holding the thread's lock and a turn slot. How it ends is decided
in outcome.py (pure). The conversation with Gemini is one method (`converse`): a loop of several
Gemini steps per turn replaces it without touching the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass


from .. import metrics
from ..agent.sessions import AgentSession
from ..config import Settings
from ..files.fetch import turn_parts
from ..governance import Governance, audit
from ..governance.policy import Who
from ..governance.spend import SPENT, tokens_of
from ..gemini import (Delta, Done, FunctionCalls, Gemini, GeminiError, Started, Thought, ToolActivity, Usage,
                      add_usage, function_results)
from ..images.make import TurnImages
from ..lookup.functions import TurnLookups
from ..profiles import Profile
from ..slack_out import calls
from ..slack_out.answer import Extras
from ..slack_out.delivery import AnswerDelivery, Target
from ..slack_out.plan import Intent, Policy
from ..slack_out.progress import AnswerTag, ToolCards
from ..slack_out.gateway import SlackGateway, WorkspaceSlack
from ..slack_out.render import render_span, step_gap, stream_piece
from ..store import RedisError, Store, TurnRecord
from ..store.turns import Admission
from .context import NameCache, TurnNames, thread_transcript, with_context, with_transcript
from .journal import TurnJournal, context
from .outcome import (ABANDONED, BUSY_USER, FAST_USER, FRESH_CHAIN, NO_READBACK, Ending, Landing, Outcome, Stopped,
                      ending_of, landed, stopped_in_slack)
from .profiles_lookup import channel_name

log = logging.getLogger(__name__)

_LANDING_SECONDS = 10.0  # the end of a turn's deadline kept for landing the answer (at most a quarter of it)


@dataclass(frozen=True)
class TurnDeps:
    """What every turn of a process shares."""

    settings: Settings
    store: Store
    gemini: Gemini
    slack: SlackGateway
    spawn: Callable  # TaskTracker.spawn: tidying that outlives the turn
    names: NameCache
    policy: Policy
    governance: Governance  # access policy, budgets, forgetting (issue 24)


class AnswerTurn:
    """One message's answer. `run` reads top to bottom; the Gemini and Slack details follow it in call order."""

    def __init__(self, deps: TurnDeps, record: TurnRecord, journal: TurnJournal):
        self.deps = deps
        self.settings = deps.settings
        self.record = record
        self.journal = journal
        self.recovered = record.state == "running"  # a dead process's turn, finished from its journal
        self.stop_requested = asyncio.Event()
        self.extras = Extras()  # citations, code runs, tool steps: shown with the final text
        self.delivery: AnswerDelivery | None = None
        self.profile: Profile = deps.settings.default_profile
        self.done: Done | None = None  # Gemini's completion (the last step's; usage summed over the steps)
        self.lookups: TurnLookups | None = None
        self.images: TurnImages | None = None
        self.step_ids: list[str] = list(record.steps) if self.recovered else []  # journalled as they start
        self.usage: Usage | None = None
        self._listed: list = []  # look-up sources already added to the extras
        self.cards = ToolCards()  # built-in tool steps as task cards
        self.session = AgentSession.of(deps.settings, self.slack, record)  # a Messages-tab turn's session
        self.used: set[str] = set()  # built-in tools and functions, for the audit line (never their results)
        self.functions_used: set[str] = set()

    def stop(self) -> None:
        """The asker pressed Stop (here or on another replica): reading Gemini ends, what is shown stays."""
        self.stop_requested.set()

    async def run(self) -> None:
        """The whole turn; the caller holds the thread's lock and a turn slot."""
        record = self.record
        if record.state == "done":
            return
        if record.created and time.time() - record.created > self.settings.turn_deadline_seconds:
            await self.say(ABANDONED)  # a turn found long after its process died
            await self.journal.done()
            return
        if not self.recovered and not await self._admit():
            await self.journal.done()
            return
        if not self.recovered:
            await self.journal.running(await self.deps.store.turns.chain_head(
                record.team, record.channel, record.chain_thread) or "")
        try:
            await self._answer()
        finally:
            await self._release_user()
            await self.journal.done()

    async def _answer(self) -> None:
        started = time.monotonic()
        metrics.ANSWERS.labels("started").inc()
        restored = self.journal.delivery_state()
        self.delivery = delivery = self._delivery(restored)
        if self.recovered and restored and restored.get("pending"):
            await self._reconcile(Intent.from_json(restored["pending"]))
        if self.session:
            await self.session.processing()  # first: the call that creates the session gives it its title
        await self._bind_context()
        await delivery.begin()
        delivery.start()
        self.profile = await self._profile()
        # The deadline covers the whole turn: reading Gemini stops early enough to land what it wrote, and
        # landing it (posts, continuations, the final layout) is bounded too, so nothing holds the thread
        # past the deadline
        ends_at = self.record.created + self.settings.turn_deadline_seconds
        landing = min(_LANDING_SECONDS, self.settings.turn_deadline_seconds / 4)
        ending = await self._conversation(until=ends_at - landing)
        moved = False
        try:
            result = await self._land(ending, within=max(landing, ends_at - time.time()))
            moved = await self._move_head(move=result.moves_head)
        finally:
            # tidying (a sealed stream's stop, a Stop button's removal) waits for budgets: not while
            # holding the thread or a turn slot
            self.deps.spawn(_tidy(delivery), name=f"tidy:{self.record.id}")
        if result.line:
            await self.say(result.line)
        if self.session:
            await self.session.end()
        await self._report(result.outcome, moved, started)

    async def _conversation(self, until: float) -> Ending:
        """Talk with Gemini until it is done, the asker stops it or the deadline comes; how it ended."""
        try:
            async with asyncio.timeout(max(1.0, until - time.time())):
                self.done, note = await self.converse()
            ending = Ending(Outcome.COMPLETED, note)
        except TimeoutError as exc:  # an OSError, but the deadline's
            ending = ending_of(exc)
        except (RedisError, OSError):
            raise
        except Exception as exc:
            ending = ending_of(exc)
            if isinstance(exc, GeminiError):
                log.warning("answer failed", extra={**context(self.record), "kind": exc.kind, "code": exc.code})
            elif ending.bug:
                log.exception("turn failed", extra=context(self.record))
        return stopped_in_slack(ending, self.delivery.user_stopped)

    async def _land(self, ending: Ending, within: float) -> Landing:
        """Finish the answer in Slack with its note, bounded by the deadline."""
        delivery, s = self.delivery, self.settings
        image_notes = self.images.notes if self.images else []
        note = " ".join(n for n in (self.extras.failure_note(), *image_notes, ending.note) if n)
        completed = ending.outcome is Outcome.COMPLETED
        late = False
        try:
            async with asyncio.timeout(within):
                await delivery.finish(note=note, extras=self.extras, max_sources=s.max_sources,
                                      output_chars=s.code_output_chars, interrupted=not completed,
                                      rating=self._tag() if completed and s.feedback_buttons else None)
        except TimeoutError:  # it could not land in time (budgets gone): stop here, say so after
            delivery.cancel()
            late = not delivery.landed  # else only tidying (the final layout, the status) was cut short
        return landed(ending, late=late, broken=delivery.broken, failed=delivery.failed, gave_up=delivery.gave_up)

    async def _move_head(self, *, move: bool) -> bool:
        """Compare-and-set from the head the turn started with: never a fork (`move`: only a complete
        answer moves it). The message is mapped to its interactions and answer messages in the same
        script either way, unless it was deleted (or its thread forgotten) meanwhile: then what this turn
        made is deleted too, so nothing brings it back."""
        r, ids = self.record, list(self.step_ids)
        bot = [seg.ts for seg in self.delivery.segments if seg.ts]
        files = (self.images.file_ids if self.images else []) + self.delivery.uploads
        if not move and not (ids or bot or files):
            return False
        if self.settings.retention_days:
            await self.deps.store.governance.retain(r.team, r.channel, r.chain_thread, self.settings.retention_days * 86400)
        moved = await self.deps.store.governance.move_and_map(
            r.team, r.channel, r.chain_thread, r.head_before or None, self.done.interaction_id if self.done else "",
            ts=r.ts, ids=ids, bot=bot, user=r.user, files=files, move=move)
        if moved < 0:
            await self.deps.store.governance.drop_journal(r.id)  # its later writes check the owner: none land
            await self.deps.governance.forget.owe(r.team, r.channel, r.chain_thread, ids, bot, files)
        return move and moved > 0

    def _tag(self) -> AnswerTag:
        """What a rating of this answer is about (carried by its feedback buttons)."""
        model = self.profile.model or self.settings.gemini_model
        return AnswerTag(self.done.interaction_id if self.done else "", model, self.profile.name)

    async def _bind_context(self) -> None:
        """A Messages-tab turn: the channel the person looks at (the message's app_context, bound to the
        session; else the session's; else the last one they looked at). Issue 20's tools read
        `record.context_channel`; the turn's input names it, so "summarise this" means that channel."""
        r = self.record
        if not (self.settings.agent_messaging and r.kind == "dm" and r.reply_thread_ts):
            return
        try:
            r.context_channel = await self.deps.store.agent.context(
                r.team, r.user, r.channel, r.chain_thread, r.context_channel if r.context_given else None)
        except (RedisError, OSError):
            return  # the question is answered without it
        await self.journal.note({"context_channel": r.context_channel})

    async def _report(self, outcome: Outcome, moved: bool, started: float) -> None:
        delivery, done = self.delivery, self.done
        metrics.ANSWERS.labels(outcome.value).inc()
        for kind, count in delivery.mix.items():
            metrics.DELIVERY_CALLS.labels(kind).inc(count)
        model = self.profile.model or self.settings.gemini_model
        usage = metrics.count_usage(model, self.profile.name, done.usage if done else None)
        if outcome is Outcome.COMPLETED:
            try:  # the person's own figures on App Home
                await self.deps.store.agent.count_answer(self.record.team, self.record.user,
                                                         usage.get("tokens_input", 0), usage.get("tokens_output", 0))
            except (RedisError, OSError):
                pass
        if self.images and self.images.usage:  # the image model's tokens, under its own name
            usage["tokens_image"] = metrics.count_usage(self.images.model, self.profile.name,
                                                        self.images.usage)["tokens_image"]
        r = self.record
        spent = tokens_of(done.usage if done else None, self.images.usage if self.images else None)
        self.deps.spawn(self.deps.governance.spend.charge(r.team, r.user, r.channel, spent), name=f"charge:{r.id}")
        audit.record(self.settings, "turn", team=r.team, user=r.user, channel=r.channel, thread=r.chain_thread,
                     model=model, outcome=outcome.value, interactions=list(self.step_ids), tokens=usage,
                     tools=sorted(self.used - self.functions_used), functions=sorted(self.functions_used),
                     text=r.text)
        log.info("answer done", extra={**context(self.record), "outcome": outcome.value,
                                       "interaction": done.interaction_id if done else "",
                                       "head_moved": moved, "delivery": delivery.mix, "recovered": self.recovered,
                                       "model": model, "profile": self.profile.name, **usage,
                                       "latency_ms": int((time.monotonic() - started) * 1000)})

    # --- the conversation with Gemini: a bounded loop of steps --------------------------------------
    async def converse(self) -> tuple[Done, str]:
        """Stream Gemini's answer into the delivery, step by step (a step that asks for function calls
        is answered by the next one); returns (the last step's Done, a note for the user)."""
        record = self.record
        head = record.head_before or None
        self.lookups = self._lookups()
        if self.images:
            await self.images.remember_shared()
        journalled = list(record.steps) or ([record.interaction_id] if record.interaction_id else [])
        if self.recovered and journalled:  # resume at the step the journal holds; answered calls are not run again
            return await self._steps(self.deps.gemini.replay_turn(journalled[0]), journalled[1:]), ""
        names = self.deps.names.for_turn(record.team)  # this turn's allowance of users.info calls
        message = with_context(await names.readable(record.text, record.bot_user_id or None), record.context_channel)
        if head is None and (record.in_existing_thread or record.kind == "reply"):
            reason = ("You were just mentioned in a Slack thread." if record.kind == "mention" else
                      "This Slack thread's earlier conversation is not in memory.")
            user_input, note = await self._with_thread(names, message, reason, NO_READBACK)
        else:  # files shared with this message go in as content parts; a follow-up has them in the chain
            given = await turn_parts(record.files, message, self.settings, bot_user_id=record.bot_user_id or None,
                                     token=await self.slack.bot_token())
            user_input, note = given.input, given.note
        try:
            return await self._steps(self._step(user_input, head)), note
        except GeminiError as exc:
            if exc.kind != "not_found" or head is None or self.step_ids:
                raise
        # Gemini's retention lapsed: rebuild from Slack and start a new chain
        user_input, note = await self._with_thread(names, message,
                                                   "Our earlier conversation in this Slack thread expired.", FRESH_CHAIN)
        self.extras = Extras()  # what the failed first try collected is not this answer's
        return await self._steps(self._step(user_input, None)), note

    def _lookups(self) -> TurnLookups:
        """The workspace look-ups this turn offers: the profile's, minus search without the asker's action_token."""
        on = self.profile.functions if self.profile.functions is not None else self.settings.function_names
        if not self.record.action_token:
            on = tuple(name for name in on if name != "search_slack")
        if {"generate_image", "edit_image"} & set(on):
            d = self.deps
            self.images = TurnImages(self.slack, self.settings, d.store, d.gemini, self.journal, self.profile)
        return TurnLookups(self.slack, self.settings, self.deps.names, self.record, tuple(on), images=self.images)

    def _step(self, user_input, previous: str | None, *, last: bool = False):
        return self.deps.gemini.stream_turn(user_input, previous, self.profile,
                                            functions=self.lookups.declarations(), last_step=last)

    async def _steps(self, stream, replays: list[str] = ()) -> Done:
        """Step after step until Gemini answers in text: each step's calls run concurrently and their
        results go into the next step, chained to it; at most SLACKBOT_MAX_FUNCTION_STEPS steps of calls,
        the last one telling Gemini to answer with what it has. `replays`: later steps a dead process
        journalled, replayed from Gemini instead of asked again."""
        replays, limit, steps = list(replays), self.settings.max_function_steps, 0
        while True:
            done, asked = await self._until_stopped(self._read(stream, later=steps > 0))
            if asked is None:
                return done
            steps += 1
            metrics.FUNCTION_STEPS.inc()
            self.functions_used.update(call.name for call in asked.calls)
            if replays:  # these calls were answered before the crash: their next step exists
                stream = self.deps.gemini.replay_turn(replays.pop(0))
                continue
            if steps > limit + 1:
                raise GeminiError("rejected", "function calls past the step limit")
            if steps > limit:  # asked again after being told to answer: nothing more is looked up
                results = [{"error": "no more look-ups in this answer: answer with what you have"}] * len(asked.calls)
            else:
                results = await self._until_stopped(self.lookups.run(steps, asked.calls, self.delivery.task))
                for source in self.lookups.sources[len(self._listed):]:
                    self.extras.add(source)
                self._listed = list(self.lookups.sources)
            stream = self._step(function_results(asked.calls, results), done.interaction_id, last=steps >= limit)

    async def _until_stopped(self, work):
        """`work`'s result, unless the asker presses Stop first (then Stopped; the work is cancelled)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise Stopped()
        finally:
            for t in (task, stopper):
                t.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)

    async def _read(self, items, *, later: bool = False) -> tuple[Done, FunctionCalls | None]:
        """One step's stream into the delivery: (its Done, the calls it asks for if any). `later`: not
        the turn's first step, whose words start a paragraph of their own."""
        delivery, asked, first = self.delivery, None, True
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Delta):
                    if first and later:
                        delivery.feed(step_gap(delivery.text))
                    first = False
                    delivery.feed(item.text)
                elif isinstance(item, Thought):
                    await delivery.thought(item.text)
                elif isinstance(item, Started):
                    if item.interaction_id not in self.step_ids:
                        self.step_ids.append(item.interaction_id)
                        await self.journal.started(item.interaction_id)
                elif isinstance(item, FunctionCalls):
                    asked = item
                elif isinstance(item, Done):
                    self.usage = add_usage(self.usage, item.usage)
                    return Done(item.interaction_id, item.status, self.usage), asked
                else:  # citations, code runs, tool steps: shown with the final text
                    self.extras.add(item)
                    if isinstance(item, ToolActivity):  # a task card on the stream, else the status
                        self.used.add(item.name)
                        for card in self.cards.updates(item):
                            await delivery.task(card.task_id, card.title, card.status, list(card.sources))
                if delivery.user_stopped:
                    raise Stopped()
        raise GeminiError("stream_failed", "no completion")

    async def _with_thread(self, names: TurnNames, message: str, reason: str,
                           fallback_note: str) -> tuple[str | list, str]:
        """(input, note): the thread as context when the shared budget allows, else the message alone;
        with the files of this message and, newest first within the caps, of the thread."""
        record, settings = self.record, self.settings
        bot = record.bot_user_id or None
        transcript = await thread_transcript(
            self.slack, settings, names, channel=record.channel,
            thread_ts=record.chain_thread, exclude_ts=record.ts, bot_user_id=bot)
        if transcript is None:
            given = await turn_parts(record.files, message, settings, bot_user_id=bot, token=await self.slack.bot_token())
            return given.input, "_\n_".join(filter(None, [given.note, fallback_note]))
        given = await turn_parts([*record.files, *reversed(transcript.files)],
                                 with_transcript(transcript.text, message, reason=reason), settings, bot_user_id=bot,
                                 token=await self.slack.bot_token())
        return given.input, given.note

    # --- Slack ------------------------------------------------------------------------------------------
    @property
    def slack(self) -> WorkspaceSlack:
        """Slack for this turn's workspace: every call pays its budget there."""
        return self.deps.slack.for_team(self.record.team)

    def _delivery(self, restored: dict | None) -> AnswerDelivery:
        record = self.record
        target = Target(record.channel, record.reply_thread_ts or None, record.id, record.user,
                        record.user_team or record.team)

        async def find(shown: str) -> str | None:
            if not record.reply_thread_ts:
                return None  # a DM's top level: no thread to read back cheaply; posted again
            return await find_bot_message(self.deps.slack, self.settings, record, shown)
        s = self.settings
        return AnswerDelivery(self.slack, target, self.deps.policy, journal=self.journal.delivered,
                              max_chars=int(s.max_messages_per_answer * s.message_chars * 0.9),
                              max_messages=s.max_messages_per_answer,
                              status=s.delivery == "planner", restored=restored, find=find)

    async def _reconcile(self, pending: Intent) -> None:
        """A crash between Slack accepting a message and the journal recording it? Look before posting again.

        The survivor reads the thread back (the shared conversations.replies budget) and adopts a bot
        message showing exactly what the intent said. If the budget can't be had in time, the message
        is posted again: that is the one case where a piece of an answer can appear twice."""
        record = self.record
        if not record.reply_thread_ts or not record.interaction_id:
            return
        text = await self._replayed_text(pending.end)
        if len(text) < pending.end:
            return
        if pending.op == "start":
            expected = stream_piece(text, pending.start, pending.end, first=True)
        else:
            expected = render_span(text, pending.start, pending.end, final=not pending.grows)
        ts = await find_bot_message(self.deps.slack, self.settings, record, expected)
        if ts:
            self.delivery.adopt(pending.op, ts, pending.start, pending.end, pending.grows)
            metrics.TURNS_RECONCILED.inc()
            log.info("found a message posted before a crash; not posting it again", extra=context(record))

    async def _replayed_text(self, wanted: int) -> str:
        """The answer's text as the journalled steps streamed it (up to `wanted` characters)."""
        text = ""
        for n, interaction_id in enumerate(self.record.steps or [self.record.interaction_id]):
            first = True
            async for item in self.deps.gemini.replay_turn(interaction_id):
                if isinstance(item, Delta):
                    text += (step_gap(text) if first and n else "") + item.text
                    first = False
                if len(text) >= wanted or isinstance(item, Done):
                    break
            if len(text) >= wanted:
                break
        return text

    async def _profile(self) -> Profile:
        """The channel's profile (SLACKBOT_PROFILES_FILE), else the settings' defaults."""
        profiles = self.settings.profile_map
        name = await channel_name(self.slack, self.record.channel) if profiles.needs_names else None
        return profiles.for_channel(self.record.channel, name, self.record.team) or self.settings.default_profile

    async def _admit(self) -> bool:
        return await self._allowed() and await self._within_quota()

    async def _allowed(self) -> bool:
        """The access policy and the day's budgets, before anything is asked of Gemini: outside them one
        plain ephemeral line (the policy's once per person and conversation) and nothing in the thread."""
        record, gov = self.record, self.deps.governance
        self.profile = await self._profile()
        who = Who(record.team, record.user, record.user_team or record.team, record.channel, record.kind == "dm")
        line = await gov.access.refusal(who, self.profile)
        if line:
            metrics.EVENTS.labels("turn", "refused", self.record.team).inc()
            if await self.deps.store.governance.first_telling(record.team, record.user, record.channel,
                                                               self.settings.chain_ttl_seconds):
                await self.slack.send(calls.ephemeral(record.channel, record.user, line,
                                                      record.reply_thread_ts or None))
            return False
        if await gov.spend.spent_up(record.team, record.user, record.channel, self.profile):
            metrics.EVENTS.labels("turn", "over_budget", self.record.team).inc()
            await self.slack.send(calls.ephemeral(record.channel, record.user, SPENT, record.reply_thread_ts or None))
            return False
        return True

    async def _within_quota(self) -> bool:
        record, s = self.record, self.settings
        verdict = await self.deps.store.turns.admit_user(
            record.team, record.user, record.id, max_active=s.user_max_active_answers,
            per_minute=s.user_turns_per_minute, hold=s.turn_deadline_seconds)
        if verdict is Admission.ADMITTED:
            return True
        line = BUSY_USER.format(n=s.user_max_active_answers) if verdict is Admission.BUSY else FAST_USER
        metrics.EVENTS.labels("turn", "over_quota", self.record.team).inc()
        await self.slack.send(calls.ephemeral(record.channel, record.user, line, record.reply_thread_ts or None))
        return False

    async def _release_user(self) -> None:
        try:
            await self.deps.store.turns.release_user(self.record.team, self.record.user, self.record.id)
        except (RedisError, OSError):
            pass  # the entry expires by itself

    async def waiting_status(self, why: str = "Finishing the answer above first…") -> None:
        """Waiting behind other answers: show at once that this message is next."""
        record = self.record
        if record.reply_thread_ts and self.settings.delivery == "planner":
            await self.slack.now(calls.set_status(record.channel, record.reply_thread_ts, "is thinking…", [why]))

    async def say(self, line: str) -> None:
        """One plain line in the turn's thread, through the channel's post budget."""
        from ..slack_out.render import message_payload

        await self.slack.send(calls.post(self.record.channel, message_payload(f"_{line}_"),
                                         self.record.reply_thread_ts or None))


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
