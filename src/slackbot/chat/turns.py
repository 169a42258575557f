"""The turn runner: lock the thread, call Gemini, stream into Slack, move the chain head.

Guarantees (all enforced in Redis, so they hold across replicas):
* one turn at a time per thread (a lock renewed while the answer streams), so two messages that
  arrive together are answered one after the other, each chained to the answer before it;
* the head moves by compare-and-set from the value the turn started with: never a fork;
* a failed turn leaves the head where it was, so the next message in the thread works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from slack_sdk.web.async_client import AsyncWebClient

from .. import metrics
from ..config import Settings
from ..files.fetch import turn_parts
from ..gemini import Delta, Gemini, GeminiError
from ..slack_out.poster import SlackPoster
from ..slack_out.render import message_payload
from ..slack_out.streamer import AnswerStream
from ..store import RedisError, Store
from .context import NameCache, thread_transcript, with_transcript
from .intake import Turn

log = logging.getLogger(__name__)

FAILURE_LINES = {
    "rate_limited": "Gemini is over its rate limit right now. Please try again in a minute.",
    "unavailable": "I couldn't reach Gemini just now. Please try again in a moment.",
    "stream_failed": "My connection to Gemini broke before the answer was complete. Please ask again.",
    "rejected": "Gemini couldn't answer that request. Try rephrasing it.",
    "not_found": "I lost track of this conversation. Please ask again.",
}
STORE_DOWN = "I can't reach my memory store right now. Please try again in a minute."
NO_READBACK = "I couldn't read this thread's earlier messages just now, so I only saw your message."
FRESH_CHAIN = "I no longer remember this thread's earlier conversation, so I'm starting fresh."
_LOCK_WAIT_LIMIT = 900.0  # seconds a turn waits behind others in its thread


class TurnRunner:
    def __init__(self, settings: Settings, store: Store, gemini: Gemini, client: AsyncWebClient):
        self.settings = settings
        self.store = store
        self.gemini = gemini
        self.client = client
        self.names = NameCache(client)

    def poster(self, team: str) -> SlackPoster:
        return SlackPoster(self.client, self.store, self.settings, team)

    async def run(self, turn: Turn, bot_user_id: str | None) -> None:
        lock = f"thread:{turn.team}:{turn.channel}:{turn.chain_thread}"
        try:
            async with self._thread_lock(lock):
                head = await self.store.chain_head(turn.team, turn.channel, turn.chain_thread)
                if turn.kind == "reply" and head is None:
                    return  # a people's thread the bot was never asked into
                await self._answer(turn, head, bot_user_id)
        except (RedisError, OSError):
            log.warning("redis unavailable during a turn", extra=_ctx(turn), exc_info=True)
            await self.poster(turn.team).post(turn.channel, message_payload(f"_{STORE_DOWN}_"), turn.reply_thread_ts)

    async def _answer(self, turn: Turn, head: str | None, bot_user_id: str | None) -> None:
        started = time.monotonic()
        metrics.ANSWERS.labels("started").inc()
        s = self.settings
        stream = AnswerStream(self.poster(turn.team), turn.channel, turn.reply_thread_ts, limit=s.message_chars,
                              min_interval=s.edit_min_interval, placeholder_after=s.placeholder_after_seconds)
        stream.start()
        message = await self.names.readable(turn.text, bot_user_id)
        if head is None and turn.in_existing_thread:
            user_input, note = await self._with_thread(turn, message, bot_user_id,
                                                       "You were just mentioned in a Slack thread.", NO_READBACK)
        else:  # files shared with this message go in as content parts; a follow-up has them in the chain
            given = await turn_parts(turn.files, message, self.settings, bot_user_id=bot_user_id)
            user_input, note = given.input, given.note
        try:
            try:
                new_id = await self._stream(stream, user_input, head)
            except GeminiError as exc:
                if exc.kind != "not_found" or head is None:
                    raise
                # Gemini's retention lapsed: rebuild from Slack and start a new chain
                user_input, note = await self._with_thread(turn, message, bot_user_id,
                                                           "Our earlier conversation in this Slack thread expired.",
                                                           FRESH_CHAIN)
                new_id = await self._stream(stream, user_input, None)
        except GeminiError as exc:
            metrics.ANSWERS.labels("failed").inc()
            log.warning("answer failed", extra={**_ctx(turn), "kind": exc.kind, "code": exc.code})
            await stream.finish(note=FAILURE_LINES.get(exc.kind, FAILURE_LINES["unavailable"]))
            return
        await stream.finish(note=note)
        moved = await self.store.move_head(turn.team, turn.channel, turn.chain_thread, head, new_id)
        metrics.ANSWERS.labels("completed").inc()
        log.info("answer done", extra={**_ctx(turn), "interaction": new_id, "head_moved": moved,
                                       "edits": stream.edits, "latency_ms": int((time.monotonic() - started) * 1000)})

    async def _stream(self, stream: AnswerStream, user_input: str | list, head: str | None) -> str:
        async for item in self.gemini.stream_turn(user_input, head):
            if isinstance(item, Delta):
                stream.feed(item.text)
            else:
                return item.interaction_id
        raise GeminiError("stream_failed", "no completion")

    async def _with_thread(self, turn: Turn, message: str, bot_user_id: str | None, reason: str,
                           fallback_note: str) -> tuple[str | list, str]:
        """(input, note): the thread as context when the shared budget allows, else the message alone."""
        transcript = await thread_transcript(
            self.client, self.store, self.settings, self.names, team=turn.team, channel=turn.channel,
            thread_ts=turn.chain_thread, exclude_ts=turn.ts, bot_user_id=bot_user_id)
        if transcript is None:
            given = await turn_parts(turn.files, message, self.settings, bot_user_id=bot_user_id)
            return given.input, "_\n_".join(filter(None, [given.note, fallback_note]))
        # this message's files first, then the thread's newest first: the caps keep the most recent
        given = await turn_parts([*turn.files, *reversed(transcript.files)],
                                 with_transcript(transcript.text, message, reason=reason),
                                 self.settings, bot_user_id=bot_user_id)
        return given.input, given.note

    @asynccontextmanager
    async def _thread_lock(self, name: str):
        ttl = self.settings.thread_lock_seconds
        deadline = time.monotonic() + _LOCK_WAIT_LIMIT
        while (token := await self.store.try_lock(name, ttl)) is None:
            if time.monotonic() > deadline:
                raise RedisError(f"gave up waiting for {name}")
            await asyncio.sleep(0.1)
        renewer = asyncio.create_task(self._renew(name, token, ttl))
        try:
            yield
        finally:
            renewer.cancel()
            try:
                await self.store.release_lock(name, token)
            except (RedisError, OSError):
                pass  # it expires by itself

    async def _renew(self, name: str, token: str, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.store.renew_lock(name, token, ttl)
            except (RedisError, OSError):
                log.warning("could not renew thread lock", extra={"lock": name})


def _ctx(turn: Turn) -> dict:
    return {"team": turn.team, "channel": turn.channel, "thread_ts": turn.chain_thread, "kind": turn.kind}
