"""One answer reaching Slack: carries out the planner's steps (plan.py) against the Redis budgets.

The planner decides; this module only makes the calls it asks for, records what Slack accepted,
and tells the journal (so a survivor can finish the answer if this process dies):
* before a message is posted, the intent (`pending`: which span) is journalled, so a survivor can
  look the message up instead of posting it twice;
* after a message is posted or a segment sealed, the segment list is journalled. Growth of an open
  segment is not: edits are idempotent, and a survivor re-renders an open segment whole.
The thread status ("<app> is thinking…") is the sign of life while nothing else is visible.

When Slack breaks mid-call (poster.py: a 5xx or a dropped connection; retried with backoff, each try
paying its budget), a new message may exist although the call failed: before posting it again, the
thread is read back (`find`, the shared conversations.replies budget) and a message found is adopted.
An append that may have landed is never repeated: the stream is stopped and its span shown whole by
edits. If Slack keeps failing, the answer gives up (`gave_up`) and the runner says so in one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .. import metrics
from .answer import final_messages, split_tables
from .plan import Intent, Policy, Segment, Step, View, next_step
from .poster import SlackPoster
from .render import message_payload, neutralize_slack_markup, render_span, stream_closing, stream_piece

log = logging.getLogger(__name__)

STOP_ACTION = "answer_stop"
LOADING_MESSAGES = ["Reading your message…", "Thinking it through…", "Writing an answer…"]
_STATUS_EVERY = 2.0  # seconds between thought-summary status updates
_CLEANUP_SECONDS = 30.0  # how long a sealed stream's stop or a Stop button's removal keeps trying
MAX_IMAGES = 4  # images from code runs uploaded per answer
TOO_LONG = "The answer was too long for Slack, so I stopped here."
_CREATES = ("start", "post", "post_open")  # the planner's steps that make a new Slack message


@dataclass(frozen=True)
class Target:
    channel: str
    thread_ts: str | None  # None: top level of a DM
    turn_id: str
    recipient_user: str
    recipient_team: str
    stop_button: bool = True


Journal = Callable[[dict], Awaitable[None]]
Find = Callable[[str], Awaitable[str | None]]  # a bot message in the thread showing this text -> its ts


class AnswerDelivery:
    def __init__(self, poster: SlackPoster, client: AsyncWebClient, target: Target, policy: Policy, *,
                 journal: Journal, max_chars: int, max_messages: int, status: bool = True,
                 restored: dict | None = None, find: Find | None = None):
        self.poster = poster
        self.client = client
        self.target = target
        self.policy = policy if target.thread_ts else dataclasses.replace(policy, native=False)
        self.journal = journal
        self.find = find
        self.max_chars = max_chars
        self.max_messages = max_messages
        self.capped = False  # the answer used all its messages: what is shown is where it ends
        self._layout_posts = 0  # messages the final layout added beyond the segments
        self.use_status = status and target.thread_ts is not None
        self.text = ""
        self.done = False
        self.truncated = False
        self.broken = False  # Slack refused to post here (e.g. not_in_channel): nothing more to try
        self.failed = False  # the delivery itself broke (a bug): the runner says so in one line
        self.gave_up = False  # Slack kept breaking (5xx, connection) on a new message: the answer is not shown
        self.user_stopped = False  # the native stream's own Stop was pressed
        self.segments = [Segment.from_json(s) for s in (restored or {}).get("segs", [])]
        self.free_at: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.first_text_at: float | None = None
        self.first_visible_at: float | None = None
        self.last_visible = time.monotonic()
        self._status_live = False
        self._status_at = 0.0
        self._thought_at = 0.0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cleanup: list[asyncio.Task] = []
        self._reopen_restored()

    def _reopen_restored(self) -> None:
        """After a crash, open segments are re-rendered whole: how far they had grown is not journalled.

        An open native stream may have taken appends nobody recorded, so it is not appended to again:
        it is stopped and then finished like an edited message (chat.update replaces its text whole)."""
        self._restored_streams: list[Segment] = []
        for seg in self.segments:
            if seg.open:
                if seg.kind == "stream":
                    self._restored_streams.append(seg)
                    seg.kind = "edit"
                seg.end = seg.start
                seg.final = False

    def adopt(self, op: str, ts: str, start: int, end: int, grows: bool) -> Segment:
        """A message found in Slack that a dead process posted but never journalled: continue it."""
        if op == "start":
            seg = Segment("edit", ts, start, start)
            self._restored_streams.append(seg)
        elif grows:
            seg = Segment("edit", ts, start, start, has_button=True)
        else:
            seg = Segment("post", ts, start, end, open=False, final=True)
        self.segments.append(seg)
        return seg

    # --- fed by the turn runner --------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def feed(self, text: str) -> None:
        if self.truncated:
            return
        if self.first_text_at is None:
            self.first_text_at = time.monotonic()
        room = self.max_chars - len(self.text)
        if len(text) > room:  # one answer never floods a thread
            text, self.truncated = text[:max(0, room)], True
        self.text += text
        self._changed.set()

    async def begin(self) -> None:
        """Sign of life: the thread status with rotating loading messages, as soon as its budget allows
        (in the background: Gemini is not kept waiting for it)."""
        if self.use_status and not self.visible:
            self._tidy(self._set_status("is thinking…", LOADING_MESSAGES, attempts=6, unless_visible=True))

    async def thought(self, line: str) -> None:
        """A thought summary: shown as the status (never in the answer) while nothing else is visible."""
        now = time.monotonic()
        if self.use_status and not self.visible and line.strip() and now - self._thought_at >= _STATUS_EVERY:
            self._thought_at = now
            await self._set_status("is thinking…", [line.strip()[:150]])

    async def tool(self, line: str | None) -> None:
        """A tool step began: the status says which (e.g. "Calling crm.lookup…")."""
        if self.use_status and line and time.monotonic() - self._status_at >= _STATUS_EVERY / 2:
            await self._set_status(line, [line])

    async def finish(self, note: str = "", extras=None, *, max_sources: int = 10, output_chars: int = 1500) -> None:
        """Land the whole answer (plus an optional italic note) and clear the status.

        `extras` (answer.Extras): citations and code runs. When there are any, or the text holds a
        table, the answer's messages are laid out once more at the end (answer.final_messages:
        Slack table blocks, code runs, a sources list); a plain answer costs nothing more."""
        notes = [note] if note else []
        if self.truncated:
            notes.append(TOO_LONG)
        # appended, never rewritten: what is shown already is where the segments' offsets point
        if notes:
            self.text += ("\n\n" if self.text.strip() else "") + f"_{' '.join(notes)}_"
        if not self.text.strip():
            self.text += "_Gemini returned an empty answer. Try rephrasing?_"
        self.done = True
        self._changed.set()
        if self._task is None:
            self.start()
        await self._task
        runs = list(extras.code_runs) if extras else []
        citations = list(extras.citations) if extras else []
        if not self.broken and (runs or citations or any(not isinstance(p, str) for p in split_tables(self.text))):
            await self._final_layout(final_messages(self.text, citations, runs, self.policy.limit,
                                                    max_sources=max_sources, output_chars=output_chars))
            await self._upload_images(runs)
        if self.capped and not self.broken:  # the notes did not fit: one closing line past the cap
            line = " ".join(notes if TOO_LONG in notes else [*notes, TOO_LONG])
            if await self.poster.post(self.target.channel, message_payload(f"_{line}_"), self.target.thread_ts):
                self.calls["post"] += 1
        if self._status_live:
            await self._set_status("", None, attempts=10)

    async def close(self) -> None:
        """Wait (bounded) for background tidying: sealed streams stopped, Stop buttons removed."""
        if self._cleanup:
            await asyncio.wait(self._cleanup, timeout=_CLEANUP_SECONDS + 5)

    def cancel(self) -> None:
        for task in [self._task, *self._cleanup]:
            if task and not task.done():
                task.cancel()

    @property
    def visible(self) -> bool:
        return bool(self.segments)

    @property
    def landed(self) -> bool:
        """Everything of the finished answer, its notes included, is in Slack."""
        shown = self.segments[-1].end if self.segments else 0
        return self.done and not self.capped and shown > 0 and shown >= len(self.text.rstrip())

    @property
    def mix(self) -> dict[str, int]:
        return dict(self.calls)

    # --- the loop -----------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            for seg in self._restored_streams:
                await self._retry("stop", "chat.stopStream", lambda: self.client.chat_stopStream(
                    channel=self.target.channel, ts=seg.ts))
            while not self.broken:
                self._changed.clear()
                step = next_step(View(self.text, self.done, time.monotonic(), self.segments, self.free_at,
                                      self.last_visible), self.policy)
                if step.op == "finished":
                    return
                if step.op == "wait":
                    await self._sleep(step.until)
                    continue
                if step.op in _CREATES and not self._may_create():
                    self._stop_at_cap()
                    continue
                await getattr(self, f"_{step.op}")(step)
        except asyncio.CancelledError:
            raise
        except Exception:  # the runner still ends the turn with one line; never a silent hang
            log.exception("delivery failed", extra={"channel": self.target.channel})
            self.broken = self.failed = True

    async def _sleep(self, until: float) -> None:
        if until > 0:
            timeout: float | None = max(0.02, until - time.monotonic())
        else:
            timeout = 0.5 if self.done else None  # else: until the text changes
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _may_create(self) -> bool:
        """The one rule on how many messages an answer may make (SLACKBOT_MAX_MESSAGES_PER_ANSWER): every
        new message (a stream, a post, a continuation, the final layout's extras) asks it first."""
        return len(self.segments) + self._layout_posts < self.max_messages

    def _stop_at_cap(self) -> None:
        """No message left: the answer ends where its last message does (finish adds one closing line)."""
        self.text = self.text[: self.segments[-1].end if self.segments else 0]
        self.truncated = self.capped = True

    def _learn(self, budget: str, wait: float) -> None:
        self.free_at[budget] = time.monotonic() + wait

    # --- steps --------------------------------------------------------------------------------------
    async def _start(self, step: Step) -> None:
        t = self.target
        piece = neutralize_slack_markup(stream_piece(self.text, step.start, step.end, first=True))
        out = await self.poster.attempt("start", t.channel, "chat.startStream", lambda: self.client.chat_startStream(
            channel=t.channel, thread_ts=t.thread_ts, markdown_text=piece, recipient_user_id=t.recipient_user,
            recipient_team_id=t.recipient_team), before=lambda: self._intent("start", step))
        if out.ok:
            self._new(Segment("stream", out.data["ts"], step.start, step.end), "stream")
            await self._journal()
        elif out.unsure and await self._found("start", step, piece):
            pass
        elif out.wait:
            self._learn("start", out.wait)
        else:  # e.g. channel_type_not_supported, a Slack Connect recipient: edits and posts carry it
            self.policy = dataclasses.replace(self.policy, native=False)

    async def _append(self, step: Step) -> None:
        seg = self.segments[-1]
        piece = neutralize_slack_markup(self.text[seg.end:step.end])
        out = await self.poster.attempt("append", self.target.channel, "chat.appendStream",
                                        lambda: self.client.chat_appendStream(channel=self.target.channel, ts=seg.ts,
                                                                              markdown_text=piece))
        if out.ok:
            seg.end = step.end
            self._changed_now(seg, "append")
        elif out.unsure:
            await self._append_unsure(seg)
        elif out.wait:
            self._learn("append", out.wait)
        else:
            await self._stream_gone(seg, out.error)

    async def _stop(self, step: Step) -> None:
        seg = self.segments[-1]
        closing = stream_closing(self.text, seg.start, seg.end)
        out = await self.poster.attempt("stop", self.target.channel, "chat.stopStream",
                                        lambda: self.client.chat_stopStream(channel=self.target.channel, ts=seg.ts,
                                                                            markdown_text=closing or None))
        if out.ok or (out.error and not out.wait):
            seg.open, seg.final = False, True
            self.calls["stop"] += out.ok
            await self._journal()
        else:
            self._learn("stop", out.wait)

    async def _stream_gone(self, seg: Segment, error: str) -> None:
        """Slack closed the stream (expired, or stopped by the user): what it shows stays; go on below."""
        if error == "stopped_by_user":
            self.user_stopped = True
        seg.open = False
        self.policy = dataclasses.replace(self.policy, native=False)
        await self._journal()

    async def _post(self, step: Step, *, grows: bool = False) -> None:
        t = self.target
        body = render_span(self.text, step.start, step.end, final=not grows)
        payload = self._payload(body, button=grows and not self.segments)
        budget = "post" if self.segments and not self.done else "post:first"  # first words and finals first
        out = await self.poster.attempt(budget, t.channel, "chat.postMessage", lambda: self.client.chat_postMessage(
            channel=t.channel, thread_ts=t.thread_ts, **payload), before=lambda: self._intent("post", step, grows),
            queue_as=t.turn_id)  # the channel's posts go round its answers in turn
        if out.ok:
            seg = Segment("edit" if grows else "post", out.data["ts"], step.start, step.end, open=grows,
                          final=not grows)
            seg.has_button = len(payload["blocks"]) > 1
            self._new(seg, "post")
            await self._journal()
        elif out.unsure and await self._found("post", step, payload["blocks"][0]["text"], grows):
            pass
        elif out.wait:
            self._learn(budget, out.wait)
        else:
            self.broken = True  # not_in_channel, channel_not_found, ...: logged by the poster
            self.gave_up = out.unsure

    async def _post_open(self, step: Step) -> None:
        await self._post(step, grows=True)

    async def _edit(self, step: Step) -> None:
        seg = self.segments[-1]
        body = render_span(self.text, seg.start, step.end, final=step.final)
        payload = self._payload(body, button=seg.has_button and not step.final)
        budget = "edit:final" if step.final else "edit"
        out = await self.poster.attempt(budget, self.target.channel, "chat.update",
                                        lambda: self.client.chat_update(channel=self.target.channel, ts=seg.ts,
                                                                        **payload))
        if out.ok:
            seg.end, seg.final = step.end, step.final
            if step.final:
                seg.has_button = False
            self._changed_now(seg, "edit")
        elif out.wait:
            self._learn(budget, out.wait)
            if not step.final:
                self._learn("edit:final", 0)
        else:  # the message is gone (deleted) or refuses edits: leave it, go on below
            seg.open = False
            await self._journal()

    async def _seal(self, step: Step) -> None:
        seg = self.segments[-1]
        seg.open = False
        if seg.kind == "stream":
            self._tidy(self._stop_later(seg))
        elif seg.has_button or not seg.final:
            self._tidy(self._finalise_later(seg))
        await self._journal()

    # --- when Slack broke mid-call -----------------------------------------------------------------
    async def _found(self, op: str, step: Step, shown: str, grows: bool = False) -> bool:
        """A new message whose call failed mid-way: if Slack has it anyway, adopt it instead of posting twice."""
        ts = await self.find(shown) if self.find is not None else None
        if ts is None:
            return False
        seg = self.adopt(op, ts, step.start, step.end, grows)
        if op == "start":  # a stream nobody appends to again: stopped, then grown by edits
            self._restored_streams.remove(seg)
            await self._retry("stop", "chat.stopStream", lambda: self.client.chat_stopStream(
                channel=self.target.channel, ts=ts))
        self.segments.pop()
        self._new(seg, op)
        await self._journal()
        return True

    async def _append_unsure(self, seg: Segment) -> None:
        """An append Slack may have applied: appending again could double it. The stream is stopped and its
        span shown whole by edits (idempotent); if even the stop fails, the answer goes on below it."""
        self.policy = dataclasses.replace(self.policy, native=False)
        stopped = await self._retry("stop", "chat.stopStream", lambda: self.client.chat_stopStream(
            channel=self.target.channel, ts=seg.ts))
        if stopped:
            seg.kind, seg.end, seg.final = "edit", seg.start, False
        else:
            seg.open = False
        await self._journal()

    # --- helpers -------------------------------------------------------------------------------------
    def _payload(self, body: str, *, button: bool) -> dict:
        payload = message_payload(body)
        if button and self.target.stop_button:
            payload["blocks"] = payload["blocks"] + [{"type": "actions", "elements": [{
                "type": "button", "action_id": STOP_ACTION, "value": self.target.turn_id,
                "text": {"type": "plain_text", "text": "Stop"}}]}]
        return payload

    def _new(self, seg: Segment, kind: str) -> None:
        now = time.monotonic()
        seg.changed_at = seg.started_at = now
        self.segments.append(seg)
        self._status_live = False  # Slack clears the status when the app posts in the thread
        self._changed_now(seg, kind)

    def _changed_now(self, seg: Segment, kind: str) -> None:
        now = time.monotonic()
        seg.changed_at = self.last_visible = now
        self.calls[kind] += 1
        if self.first_visible_at is None:
            self.first_visible_at = now
            if self.first_text_at is not None:
                metrics.FIRST_TEXT.observe(now - self.first_text_at)

    async def _intent(self, op: str, step: Step, grows: bool = False) -> None:
        await self.journal({"segs": [s.to_json() for s in self.segments],
                            "pending": Intent(op, step.start, step.end, grows).to_json()})

    async def _journal(self) -> None:
        await self.journal({"segs": [s.to_json() for s in self.segments]})

    async def _set_status(self, status: str, loading: list[str] | None, attempts: int = 1,
                          unless_visible: bool = False) -> None:
        t = self.target
        kwargs = {"loading_messages": loading} if loading else {}
        for _ in range(attempts):
            if unless_visible and self.visible:
                return  # the first words came first
            out = await self.poster.attempt("status", t.channel, "assistant.threads.setStatus",
                                            lambda: self.client.assistant_threads_setStatus(
                                                channel_id=t.channel, thread_ts=t.thread_ts, status=status, **kwargs))
            if out.ok:
                self._status_live, self._status_at = bool(status), time.monotonic()
                self.calls["status"] += 1
                return
            if not out.wait:
                return
            await asyncio.sleep(min(out.wait, 1.0))

    def _tidy(self, coro) -> None:
        self._cleanup.append(asyncio.create_task(coro))

    async def _stop_later(self, seg: Segment) -> None:
        closing = stream_closing(self.text, seg.start, seg.end)
        await self._retry("stop", "chat.stopStream", lambda: self.client.chat_stopStream(
            channel=self.target.channel, ts=seg.ts, markdown_text=closing or None))

    async def _finalise_later(self, seg: Segment) -> None:
        """A sealed message still shows its growing rendering (or the Stop button): tidy it when an edit is free."""
        payload = self._payload(render_span(self.text, seg.start, seg.end, final=True), button=False)
        await self._retry("edit", "chat.update", lambda: self.client.chat_update(
            channel=self.target.channel, ts=seg.ts, **payload))

    async def _final_layout(self, payloads: list[dict]) -> None:
        """Bring the answer's messages in line with its final layout: edit what differs (priority edits,
        after any stream is stopped), post what is missing, delete what is surplus."""
        await self.close()
        t = self.target
        for index, payload in enumerate(payloads):
            if index >= len(self.segments):
                if not self._may_create():
                    self.capped = True
                    return
                if await self.poster.post(t.channel, payload, t.thread_ts, find=self._find_posted) is None:
                    return
                self.calls["post"] += 1
                self._layout_posts += 1
                continue
            seg = self.segments[index]
            shown = render_span(self.text, seg.start, seg.end, final=True)
            if payload["blocks"] == message_payload(shown)["blocks"] and not seg.has_button:
                continue
            if (await self.poster.edit(t.channel, seg.ts, payload, member=t.turn_id, final=True)).ok:
                self.calls["edit"] += 1
        for seg in self.segments[len(payloads):]:
            try:
                await self.client.chat_delete(channel=t.channel, ts=seg.ts)
            except (SlackApiError, OSError, asyncio.TimeoutError):  # untidy, not wrong
                log.warning("could not delete a surplus answer message", extra={"channel": t.channel})

    async def _upload_images(self, runs: list) -> None:
        """Images the code produced (plots), uploaded into the answer's thread."""
        images = [(n, i, img) for n, run in enumerate(runs, 1) for i, img in enumerate(run.images, 1)]
        for n, i, img in images[:MAX_IMAGES]:  # a loop that plots 50 times should not flood the thread
            ext = (img.mime_type.split("/")[-1] or "png").replace("jpeg", "jpg")
            try:
                await self.client.files_upload_v2(channel=self.target.channel, thread_ts=self.target.thread_ts,
                                                  content=img.data, filename=f"code-run-{n}-{i}.{ext}",
                                                  title=f"Code run {n} output {i}")
            except (SlackApiError, OSError, asyncio.TimeoutError):
                log.warning("could not upload a code image", extra={"channel": self.target.channel})

    async def _find_posted(self, body: dict) -> str | None:
        return await self.find(body["blocks"][0].get("text", "")) if self.find is not None else None

    async def _retry(self, budget: str, method: str, call) -> bool:
        """Keep trying a call through its budget's waits (bounded); True once Slack accepted it."""
        deadline = time.monotonic() + _CLEANUP_SECONDS
        while time.monotonic() < deadline:
            out = await self.poster.attempt(budget, self.target.channel, method, call)
            if out.ok or not out.wait:
                return out.ok
            await asyncio.sleep(min(out.wait, max(0.05, deadline - time.monotonic())))
        return False
