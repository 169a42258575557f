"""One answer growing in Slack as Gemini writes it.

Design (shaped by the shared edit budget, see poster.py):
* first words: the first message is posted with `chat.postMessage` as soon as text exists, so it
  never waits for the edit budget; only if Gemini is silent for `placeholder_after` seconds, and the
  edit budget has room, is a "thinking" placeholder posted (its replacement jumps the edit queue);
* growth: at most one `chat.update` per `min_interval` per answer, and only with a token from the
  workspace bucket; the text is rendered when the token is granted, so a late edit shows the latest
  text and costs no more than an early one;
* long answers: `stable_split` freezes chunks that will never change; a frozen chunk gets its final
  edit and the rest continues in a new message in the same thread;
* the final text of every message is a priority edit that retries through 429s until it lands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from .. import metrics
from .answer import final_messages
from .poster import SlackPoster
from .render import close_open_fences, message_payload, stable_split

log = logging.getLogger(__name__)

PLACEHOLDER = "_Thinking…_"
EMPTY_ANSWER = "_Gemini returned an empty answer. Try rephrasing?_"
MAX_IMAGES = 4  # images from code runs uploaded per answer


def _shown_key(payload: dict) -> str:
    """What a message shows, comparable with the streamed chunk text (`_Message.shown`)."""
    blocks = payload.get("blocks") or []
    if len(blocks) == 1 and blocks[0].get("type") == "markdown":
        return blocks[0]["text"]
    return json.dumps(blocks, sort_keys=True)


@dataclass
class _Message:
    ts: str
    shown: str
    placeholder: bool = False


class AnswerStream:
    def __init__(self, poster: SlackPoster, channel: str, thread_ts: str | None, *, limit: int,
                 min_interval: float, placeholder_after: float):
        self.poster = poster
        self.channel = channel
        self.thread_ts = thread_ts
        self.limit = limit
        self.min_interval = min_interval
        self.placeholder_after = placeholder_after
        self.member = uuid.uuid4().hex[:12]
        self.text = ""
        self.messages: list[_Message] = []
        self.edits = 0
        self.broken = False  # Slack refused a post (e.g. not_in_channel): stop trying
        self.first_text_at: float | None = None
        self.first_visible_at: float | None = None
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._split_memo: tuple[str | None, tuple[list[str], str]] = (None, ([], ""))

    # --- called by the turn runner ----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._pump())

    def feed(self, text: str) -> None:
        if self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self.text += text
        self._changed.set()

    async def finish(self, note: str = "", extras=None, *, max_sources: int = 10, output_chars: int = 1500) -> None:
        """Land the whole answer (plus an optional italic note line) and stop. `extras`
        (answer.Extras): citations and code runs shown with the final text, images uploaded."""
        if note:
            self.text = f"{self.text}\n\n_{note}_" if self.text.strip() else f"_{note}_"
        self._finished.set()
        if self._task:
            await self._task
        runs = list(extras.code_runs) if extras else []
        if not self.text.strip() and not runs:
            self.text = EMPTY_ANSWER
        await self.poster.leave(self.member)  # finals have their own queue: leave the intermediate one
        await self._sync_final(final_messages(self.text, extras.citations if extras else (), runs, self.limit,
                                              max_sources=max_sources, output_chars=output_chars))
        await self._upload_images(runs)
        if self.messages and self.messages[0].placeholder:  # never replaced (Slack refused): stop counting it
            await self.poster.release_placeholder(self.member)
        metrics.EDITS_PER_ANSWER.observe(self.edits)

    @property
    def visible(self) -> bool:
        return any(not m.placeholder for m in self.messages)

    # --- the pump -------------------------------------------------------------------------------
    async def _pump(self) -> None:
        try:
            await self._first_message()
            # after a placeholder the first words may replace it at once; after words, pace edits
            last_edit = 0.0 if self.messages and self.messages[0].placeholder else time.monotonic()
            while not self._finished.is_set() and not self.broken:
                await self._wait(self._changed.wait())
                self._changed.clear()
                await self._wait(asyncio.sleep(max(0.0, last_edit + self.min_interval - time.monotonic())))
                if self._finished.is_set():
                    return
                await self._sync(final=False)
                last_edit = time.monotonic()
        except Exception:  # the final sync still runs; never let the pump kill the turn
            log.exception("answer pump failed", extra={"channel": self.channel})

    async def _first_message(self) -> None:
        """Post the first words as soon as they exist; a placeholder only if Gemini is slow.

        A placeholder costs an edit later (its replacement), so it is posted only while the workspace's
        edit budget has room to spare; under load the first message waits for the first words instead.
        """
        if not self.text:
            await self._wait(self._changed.wait(), timeout=self.placeholder_after)
        if not self.text and not self._finished.is_set() and await self.poster.claim_placeholder(self.member):
            ts = await self.poster.post(self.channel, message_payload(PLACEHOLDER), self.thread_ts)
            if ts is None:
                self.broken = True
                await self.poster.release_placeholder(self.member)
                return
            self.messages.append(_Message(ts, PLACEHOLDER, placeholder=True))
            return
        if not self.text:
            await self._wait(self._changed.wait())
        if self.text and not self._finished.is_set():
            self._changed.clear()
            await self._sync(final=False)

    async def _wait(self, aw, timeout: float | None = None) -> None:
        """Await `aw`, but return early when the answer finishes."""
        finished = asyncio.ensure_future(self._finished.wait())
        other = asyncio.ensure_future(aw)
        await asyncio.wait({finished, other}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for fut in (finished, other):
            fut.cancel()

    # --- the final messages (tables, code runs, sources: answer.final_messages) ----------------
    async def _sync_final(self, payloads: list[dict]) -> None:
        """Post or edit one message per final payload; an edit only where it differs from what is
        shown (a plain answer costs no more edits than before); surplus messages are deleted."""
        if self.broken:
            return
        for index, payload in enumerate(payloads):
            key = _shown_key(payload)
            if index >= len(self.messages):
                ts = await self.poster.post(self.channel, payload, self.thread_ts)
                if ts is None:
                    self.broken = True
                    return
                self.messages.append(_Message(ts, key))
                self._mark_visible()
                continue
            message = self.messages[index]
            if message.shown == key:
                continue
            if not await self.poster.edit(self.channel, message.ts, payload, member=self.member, final=True):
                return
            message.shown = key
            self.edits += 1
            if message.placeholder:
                await self.poster.release_placeholder(self.member)
            message.placeholder = False
            self._mark_visible()
        for message in self.messages[len(payloads):]:  # the final layout needs fewer messages
            try:
                await self.poster.client.chat_delete(channel=self.channel, ts=message.ts)
            except (SlackApiError, OSError, asyncio.TimeoutError):  # untidy, not wrong: log and go on
                log.warning("could not delete a surplus answer message", extra={"channel": self.channel})
        del self.messages[len(payloads):]

    async def _upload_images(self, runs: list) -> None:
        """Images the code produced (plots), uploaded into the answer's thread."""
        images = [(n, i, img) for n, run in enumerate(runs, 1) for i, img in enumerate(run.images, 1)]
        for n, i, img in images[:MAX_IMAGES]:  # a loop that plots 50 times should not flood the thread
            ext = (img.mime_type.split("/")[-1] or "png").replace("jpeg", "jpg")
            try:
                await self.poster.client.files_upload_v2(
                    channel=self.channel, thread_ts=self.thread_ts, content=img.data,
                    filename=f"code-run-{n}-{i}.{ext}", title=f"Code run {n} output {i}")
            except (SlackApiError, OSError, asyncio.TimeoutError):
                log.warning("could not upload a code image", extra={"channel": self.channel})

    # --- bringing Slack in line with self.text ------------------------------------------------
    def _split(self) -> tuple[list[str], str]:
        """stable_split of the text as it is now, computed once per change of the text."""
        if self._split_memo[0] is not self.text:
            self._split_memo = (self.text, stable_split(self.text, self.limit))
        return self._split_memo[1]

    async def _sync(self, *, final: bool) -> None:
        if self.broken:
            return
        frozen, tail = self._split()
        count = len(frozen) + (1 if tail.strip() else 0)
        for index in range(count):
            if not await self._show(index, final=final):
                return

    def _chunk(self, index: int, *, final: bool) -> str:
        """What message `index` should show now: a frozen chunk, or the growing tail."""
        frozen, tail = self._split()
        if index < len(frozen):
            return frozen[index]
        return tail if final else close_open_fences(tail)

    async def _show(self, index: int, *, final: bool) -> bool:
        if index >= len(self.messages):
            posted: list[str] = []

            def render() -> dict:  # rendered when the channel's post token is ours: newest text
                posted.append(self._chunk(index, final=final))
                return message_payload(posted[-1])
            ts = await self.poster.post(self.channel, render, self.thread_ts)
            if ts is None:
                self.broken = True
                return False
            self.messages.append(_Message(ts, posted[-1]))
            self._mark_visible()
            return True
        message = self.messages[index]
        if message.shown == self._chunk(index, final=final):
            return True
        is_frozen = index < len(self._split()[0])
        if final or is_frozen or message.placeholder:
            sent: list[str] = []

            def render() -> dict | None:  # at grant time: the newest text, or nothing if already shown
                shown = self._chunk(index, final=final)
                if shown == message.shown:
                    return None
                sent.append(shown)
                return message_payload(shown)
            ok = await self.poster.edit(self.channel, message.ts, render, member=self.member, final=True)
            changed = ok and bool(sent)
            if changed:
                message.shown = sent[-1]
        else:
            ok = changed = await self._budgeted_edit(message)
        if changed:
            self.edits += 1
            if message.placeholder:
                await self.poster.release_placeholder(self.member)
            message.placeholder = False
            self._mark_visible()
        return ok

    async def _budgeted_edit(self, message: _Message) -> bool:
        """Queue for an intermediate edit; render the newest text once the token is ours."""
        while not self._finished.is_set():
            wait = await self.poster.take_edit_slot(self.member, priority=False)
            if wait <= 0:
                shown = self._chunk(self.messages.index(message), final=False)
                if shown == message.shown:
                    return False
                if await self.poster.update_now(self.channel, message.ts, message_payload(shown)):
                    message.shown = shown
                    return True
                return False
            await self._wait(asyncio.sleep(wait))
        return False

    def _mark_visible(self) -> None:
        if self.first_visible_at is None and self.first_text_at is not None and self.visible:
            self.first_visible_at = time.monotonic()
            metrics.FIRST_TEXT.observe(self.first_visible_at - self.first_text_at)
