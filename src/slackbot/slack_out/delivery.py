"""One answer reaching Slack: carries out the planner's steps (plan.py) against the Redis budgets.

The planner decides; this module only makes the calls it asks for, records what Slack accepted,
and tells the journal (so a survivor can finish the answer if this process dies):
* before a message is posted, the intent (`pending`: which span) is journalled, so a survivor can
  look the message up instead of posting it twice;
* after a message is posted or a segment sealed, the segment list is journalled. Growth of an open
  segment is not: edits are idempotent, and a survivor re-renders an open segment whole.
The thread status ("<app> is thinking…") is the sign of life while nothing else is visible.

Progress (issue 19): each tool call is a task card (`task`) and a thought summary the detail of a
"Thinking" card, sent as `task_update` / `plan_update` chunks on the answer's native stream by the
same loop that grows it (so cards keep Slack's forward-only order), never in the text; before any
text, a stream may start with its first card. When the answer is delivered by posts or edits, the
thread status shows the same progress. A finished answer's last message carries the feedback buttons
(`rating`): in its stopStream `blocks`, its final post or edit, or one more edit if none carried them.

Each step is one Slack call through the gateway (gateway.py: its budget, 429s, retries when Slack
breaks); what Slack's answer means for the segments is decided in settle.py (pure).

When Slack breaks mid-call (a 5xx or a dropped connection), a new message may exist although the call
failed: before posting it again, the thread is read back (`find`, the shared conversations.replies budget) and a message found is adopted.
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

from .. import metrics
from . import calls
from .answer import final_messages, split_tables
from .calls import Outcome, Request
from .gateway import WorkspaceSlack
from .plan import Intent, Policy, Segment, Step, View, next_step
from .progress import (THINKING_TASK, AnswerTag, Source, TaskStatus, TaskUpdate, feedback_block, moves_forward,
                       plan_chunk)
from .settle import CREATES, PRIORITY_LANES, Settled, abandoned, lane, settle
from .render import message_payload, neutralize_slack_markup, render_span, stream_closing, stream_piece

log = logging.getLogger(__name__)

STOP_ACTION = "answer_stop"
LOADING_MESSAGES = ["Reading your message…", "Thinking it through…", "Writing an answer…"]
WRITING_MESSAGES = ["Writing the rest of the answer…"]
_STATUS_EVERY = 2.0  # seconds between thought-summary status updates
_CLEANUP_SECONDS = 30.0  # how long a sealed stream's stop or a Stop button's removal keeps trying
MAX_IMAGES = 4  # images from code runs uploaded per answer
__all__ = ["AnswerDelivery", "Target", "Source", "STOP_ACTION"]
TOO_LONG = "The answer was too long for Slack, so I stopped here."


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
    def __init__(self, slack: WorkspaceSlack, target: Target, policy: Policy, *, journal: Journal, max_chars: int,
                 max_messages: int, status: bool = True, restored: dict | None = None, find: Find | None = None):
        self.slack = slack
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
        self.uploads: list[str] = []  # file ids of code runs' plots shared under the answer (forgetting deletes them)
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
        self._status_text = ""  # the status shown last (a new tool's line is shown at once)
        self._thought_at = 0.0
        self._writing_at = 0.0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cleanup: list[asyncio.Task] = []
        # progress on the native stream: chunks waiting for the loop, each card's latest status
        self._chunks: list[dict] = []
        self._cards: dict[str, str] = {}
        self._titles: dict[str, str] = {}
        self._chunks_at = 0.0  # when the append budget lets the waiting chunks go
        self._thinking = 0  # the current "Thinking" card's number
        self._cards_refused = False  # no stream could start for the first cards: the status shows progress
        self.rating: AnswerTag | None = None  # set by finish: the last message carries the feedback buttons
        self._rated: set[str] = set()  # messages (ts) whose feedback buttons Slack accepted
        self._rating_sent = False  # the request being made carries them
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
            self._end_thinking()
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
        """A thought summary, never in the answer: the detail of a "Thinking" card while the answer can
        stream natively and has no text yet, else the status while nothing else is visible."""
        now = time.monotonic()
        if not line.strip() or now - self._thought_at < _STATUS_EVERY:
            return
        if self._streams_progress() and not self.text:
            self._thought_at = now
            if self._cards.get(self._thinking_id) not in (None, "pending", "in_progress"):
                self._thinking += 1  # thinking again after a tool: a card of its own
            self._queue(TaskUpdate(self._thinking_id, "Thinking", "in_progress", details=line.strip()))
        elif self.use_status and not self.visible:
            self._thought_at = now
            await self._set_status("is thinking…", [line.strip()[:150]])

    async def task(self, task_id: str, title: str, status: TaskStatus, sources: list[Source] = ()) -> None:
        """A tool call's progress: a task card on the native stream (pending -> in_progress -> complete |
        error, with URL sources), else the thread status while it runs. Cards only move forward."""
        if not moves_forward(self._cards.get(task_id), status):
            return
        if self._streams_progress():
            self._end_thinking()
            self._queue(TaskUpdate(task_id, title, status, tuple(sources)))
        else:
            self._cards[task_id], self._titles[task_id] = status, title
            if status in ("pending", "in_progress"):
                await self.tool(f"{title.rstrip('…')}…")

    async def plan(self, title: str, steps: list[str]) -> None:
        """A plan: its title and a pending card per step on the native stream, else the status."""
        if self._streams_progress():
            self._chunks.append(plan_chunk(title))
            for n, step in enumerate(steps, 1):
                self._queue(TaskUpdate(f"step-{n}", step, "pending"))
            self._changed.set()
        else:
            await self.tool(title)

    async def tool(self, line: str | None) -> None:
        """A tool step began: the status says which (e.g. "Calling crm.lookup…")."""
        fresh = line != self._status_text or time.monotonic() - self._status_at >= _STATUS_EVERY / 2
        if self.use_status and line and fresh:
            await self._set_status(line, [line])

    async def finish(self, note: str = "", extras=None, *, max_sources: int = 10, output_chars: int = 1500,
                     rating: AnswerTag | None = None, interrupted: bool = False) -> None:
        """Land the whole answer (plus an optional italic note) and clear the status. `rating`: a final
        answer's tag; its last message carries the feedback buttons. `interrupted`: the answer did not
        complete (stopped, failed): cards still running end in error.

        `extras` (answer.Extras): citations and code runs. When there are any, or the text holds a
        table, the answer's messages are laid out once more at the end (answer.final_messages:
        Slack table blocks, code runs, a sources list); a plain answer costs nothing more."""
        notes = [note] if note else []
        self.rating = rating
        self._end_cards("error" if interrupted else "complete")
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
        await self._rate_last()
        if self.capped and not self.broken:  # the notes did not fit: one closing line past the cap
            line = " ".join(notes if TOO_LONG in notes else [*notes, TOO_LONG])
            if (await self.slack.send(calls.post(self.target.channel, message_payload(f"_{line}_"),
                                                 self.target.thread_ts))).ok:
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
                await self._retry(calls.stop_stream(self.target.channel, seg.ts))
            while not self.broken:
                self._changed.clear()
                if self._chunks and time.monotonic() >= self._chunks_at and not (self.done and self._stream_open()):
                    await self._send_progress()  # (once the answer is done, its last stop carries them)
                step = next_step(View(self.text, self.done, time.monotonic(), self.segments, self.free_at,
                                      self.last_visible), self.policy)
                if step.op == "finished":
                    return
                if step.op == "wait":
                    await self._writing()
                    await self._sleep(step.until)
                    continue
                if step.op in CREATES and not self._may_create():
                    self._stop_at_cap()
                    continue
                if step.op == "seal":
                    await self._seal()
                else:
                    await self._carry_out(step)
        except asyncio.CancelledError:
            raise
        except Exception:  # the runner still ends the turn with one line; never a silent hang
            log.exception("delivery failed", extra={"channel": self.target.channel})
            self.broken = self.failed = True

    async def _writing(self) -> None:
        """The answer waits for a budget with text not yet shown: the thread status (which its last post
        cleared) says Gemini is still writing, so a pause in growth is not mistaken for the end."""
        now = time.monotonic()
        if (self.use_status and self.visible and not self._status_live and not self.done
                and len(self.text.rstrip()) > self.segments[-1].end
                and min(now - self.last_visible, now - self._writing_at) >= _STATUS_EVERY):
            self._writing_at = now
            await self._set_status("is writing…", WRITING_MESSAGES)

    async def _sleep(self, until: float) -> None:
        if until > 0:
            timeout: float | None = max(0.02, until - time.monotonic())
        else:
            timeout = 0.5 if self.done else None  # else: until the text changes
        if self._chunks:  # cards waiting for the append budget
            timeout = max(0.02, min(timeout or 60.0, self._chunks_at - time.monotonic()))
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

    # --- steps --------------------------------------------------------------------------------------
    async def _carry_out(self, step: Step) -> None:
        """One step: its Slack call on its budget, then what Slack's answer means for the segments."""
        on = lane(step, first_words=not self.segments or self.done)
        self._rating_sent = False
        req, button = self._request(step)
        rated, self._rating_sent = self._rating_sent, False
        out = await self._spend(on, req, step)
        last = self.segments[-1] if self.segments else None
        settled = settle(step, out, last, lane=on, now=time.monotonic(), button=button)
        if settled.look and await self._found(step, req):
            return
        await self._apply(settled)
        if rated and out.ok and self.segments:
            self._rated.add(self.segments[-1].ts)
        if settled.abandon_stream and last is not None:
            self.segments[-1] = abandoned(last, await self._retry(calls.stop_stream(self.target.channel, last.ts)))
            await self._journal()

    def _request(self, step: Step) -> tuple[Request, bool]:
        """The Slack call a step makes, and whether the message it posts carries the Stop button."""
        t, seg = self.target, self.segments[-1] if self.segments else None
        if step.op == "start":
            piece = neutralize_slack_markup(stream_piece(self.text, step.start, step.end, first=True))
            return calls.start_stream(t.channel, t.thread_ts, piece, recipient_user=t.recipient_user,
                                      recipient_team=t.recipient_team), False
        if step.op == "append":
            return calls.append_stream(t.channel, seg.ts, neutralize_slack_markup(self.text[seg.end:step.end])), False
        if step.op == "stop":
            blocks = self._rating_blocks(seg.end)
            self._rating_sent = bool(blocks)
            return calls.stop_stream(t.channel, seg.ts, stream_closing(self.text, seg.start, seg.end),
                                     chunks=self._take_chunks(), blocks=blocks), False
        if step.op == "edit":
            body = render_span(self.text, seg.start, step.end, final=step.final)
            payload = self._payload(body, button=seg.has_button and not step.final)
            if step.final:
                payload, self._rating_sent = self._with_rating(payload, step.end)
            return calls.update(t.channel, seg.ts, payload), False
        grows = step.op == "post_open"
        payload = self._payload(render_span(self.text, step.start, step.end, final=not grows),
                                button=grows and not self.segments)
        button = len(payload["blocks"]) > 1
        if not grows:
            payload, self._rating_sent = self._with_rating(payload, step.end)
        return calls.post(t.channel, payload, t.thread_ts), button

    async def _spend(self, on: str, req: Request, step: Step) -> Outcome:
        """The call if its budget has a token now. A new message's intent is journalled once the token is
        ours, just ahead of the call. The channel's posts go round its answers in turn."""
        wait = await self.slack.take(req, priority=on in PRIORITY_LANES,
                                     queue_as=self.target.turn_id if on.startswith("post") else None)
        if wait > 0:
            return Outcome(False, wait=wait)
        if step.op in CREATES:
            await self._intent(step)
        return await self.slack.call(req)

    async def _apply(self, settled: Settled) -> None:
        if settled.created:
            self.segments.append(settled.segment)
            self._status_live = False  # Slack clears the status when the app posts in the thread
        elif settled.segment is not None:
            self.segments[-1] = settled.segment
        if settled.counted:
            self.calls[settled.counted] += 1
        if settled.shown:
            self._shown(settled.segment.changed_at)
        for name, wait in settled.waits.items():
            self.free_at[name] = time.monotonic() + wait
        if not settled.native:
            self.policy = dataclasses.replace(self.policy, native=False)
        if settled.user_stopped:
            self.user_stopped = True
        if settled.broken:
            self.broken, self.gave_up = True, settled.gave_up
        if settled.journal:
            await self._journal()

    async def _seal(self) -> None:
        seg = self.segments[-1]
        seg.open = False
        if seg.kind == "stream":
            self._tidy(self._stop_later(seg))
        elif seg.has_button or not seg.final:
            self._tidy(self._finalise_later(seg))
        await self._journal()

    # --- when Slack broke mid-call -----------------------------------------------------------------
    async def _found(self, step: Step, req: Request) -> bool:
        """A new message whose call failed mid-way: if Slack has it anyway, adopt it instead of posting twice."""
        op = "start" if step.op == "start" else "post"
        shown = req.args["markdown_text"] if op == "start" else req.args["blocks"][0]["text"]
        ts = await self.find(shown) if self.find is not None else None
        if ts is None:
            return False
        seg = self.adopt(op, ts, step.start, step.end, step.op == "post_open")
        if op == "start":  # a stream nobody appends to again: stopped, then grown by edits
            self._restored_streams.remove(seg)
            await self._retry(calls.stop_stream(self.target.channel, ts))
        seg.changed_at = seg.started_at = time.monotonic()
        self.segments.pop()
        await self._apply(Settled(seg, created=True, counted=op, shown=True, journal=True))
        return True

    # --- helpers -------------------------------------------------------------------------------------
    def _payload(self, body: str, *, button: bool) -> dict:
        payload = message_payload(body)
        if button and self.target.stop_button:
            payload["blocks"] = payload["blocks"] + [{"type": "actions", "elements": [{
                "type": "button", "action_id": STOP_ACTION, "value": self.target.turn_id,
                "text": {"type": "plain_text", "text": "Stop"}}]}]
        return payload

    def _shown(self, at: float) -> None:
        self.last_visible = at
        if self.first_visible_at is None:
            self.first_visible_at = at
            if self.first_text_at is not None:
                metrics.FIRST_TEXT.observe(at - self.first_text_at)

    async def _intent(self, step: Step) -> None:
        op = "start" if step.op == "start" else "post"
        await self.journal({"segs": [s.to_json() for s in self.segments],
                            "pending": Intent(op, step.start, step.end, step.op == "post_open").to_json()})

    async def _journal(self) -> None:
        await self.journal({"segs": [s.to_json() for s in self.segments]})

    async def _set_status(self, status: str, loading: list[str] | None, attempts: int = 1,
                          unless_visible: bool = False) -> None:
        req = calls.set_status(self.target.channel, self.target.thread_ts, status, loading)
        for _ in range(attempts):
            if unless_visible and self.visible:
                return  # the first words came first
            out = await self.slack.now(req)
            if out.ok:
                self._status_live, self._status_at, self._status_text = bool(status), time.monotonic(), status
                self.calls["status"] += 1
                return
            if not out.wait:
                return
            await asyncio.sleep(min(out.wait, 1.0))

    def _tidy(self, coro) -> None:
        self._cleanup.append(asyncio.create_task(coro))

    async def _stop_later(self, seg: Segment) -> None:
        blocks = self._rating_blocks(seg.end)
        closing = stream_closing(self.text, seg.start, seg.end)
        if await self._retry(calls.stop_stream(self.target.channel, seg.ts, closing, chunks=self._take_chunks(),
                                               blocks=blocks)) and blocks:
            self._rated.add(seg.ts)

    async def _finalise_later(self, seg: Segment) -> None:
        """A sealed message still shows its growing rendering (or the Stop button): tidy it when an edit is free."""
        payload, rated = self._with_rating(self._payload(render_span(self.text, seg.start, seg.end, final=True),
                                                         button=False), seg.end)
        if await self._retry(calls.update(self.target.channel, seg.ts, payload)) and rated:
            self._rated.add(seg.ts)

    async def _final_layout(self, payloads: list[dict]) -> None:
        """Bring the answer's messages in line with its final layout: edit what differs (priority edits,
        after any stream is stopped), post what is missing, delete what is surplus."""
        await self.close()
        t = self.target
        if payloads and self.rating is not None and len(payloads[-1]["blocks"]) < 50:
            payloads[-1] = {**payloads[-1], "blocks": [*payloads[-1]["blocks"], feedback_block(self.rating)]}
        for index, payload in enumerate(payloads):
            if index >= len(self.segments):
                if not self._may_create():
                    self.capped = True
                    return
                if not (await self.slack.send(calls.post(t.channel, payload, t.thread_ts), find=self._find_posted)).ok:
                    return
                self.calls["post"] += 1
                self._layout_posts += 1
                continue
            seg = self.segments[index]
            shown = message_payload(render_span(self.text, seg.start, seg.end, final=True))["blocks"]
            if seg.ts in self._rated:
                shown = [*shown, feedback_block(self.rating)]
            if payload["blocks"] == shown and not seg.has_button:
                continue
            if (await self.slack.send(calls.update(t.channel, seg.ts, payload), member=t.turn_id)).ok:
                self.calls["edit"] += 1
                if index == len(payloads) - 1 and self.rating is not None:
                    self._rated.add(seg.ts)
        for seg in self.segments[len(payloads):]:  # left standing if Slack refuses: untidy, not wrong
            await self.slack.send(calls.delete(t.channel, seg.ts))

    # --- progress on the native stream ---------------------------------------------------------------
    @property
    def _thinking_id(self) -> str:
        return THINKING_TASK if self._thinking == 0 else f"{THINKING_TASK}-{self._thinking}"

    def _streams_progress(self) -> bool:
        """Cards go on the native stream: the answer may stream and its first message is (or will be)
        an open stream. Otherwise (posts, edits, a sealed stream) the status carries the progress."""
        if self.done or not (self.policy.native and self.target.thread_ts):
            return False
        return not self._cards_refused if not self.segments else self._stream_open()

    def _stream_open(self) -> bool:
        return bool(self.segments) and self.segments[-1].kind == "stream" and self.segments[-1].open

    def _queue(self, update: TaskUpdate) -> None:
        self._cards[update.task_id] = update.status
        self._titles[update.task_id] = update.title
        self._chunks.append(update.chunk())
        self._changed.set()

    def _end_thinking(self) -> None:
        if self._cards.get(self._thinking_id) in ("pending", "in_progress"):
            self._queue(TaskUpdate(self._thinking_id, "Thinking", "complete"))

    def _end_cards(self, status: TaskStatus) -> None:
        """The answer is over: cards still open finish with it (on the stream's last call); thinking is done."""
        if self._streams_progress():
            for task_id, shown in list(self._cards.items()):
                if shown in ("pending", "in_progress"):
                    done = "complete" if task_id.startswith(THINKING_TASK) else status
                    self._queue(TaskUpdate(task_id, self._titles.get(task_id, "Working"), done))

    def _take_chunks(self) -> list[dict]:
        chunks, self._chunks = self._chunks, []
        return chunks

    async def _send_progress(self) -> None:
        """Waiting cards on their own call, from the delivery loop (so they never race a text append):
        a stream started with them when nothing is shown yet, else an append to the open stream; when
        the answer no longer streams, the status shows the newest running card instead."""
        t, chunks = self.target, self._take_chunks()
        if not self.segments:
            if self.done or not self._may_create() or not self.policy.native:
                return await self._progress_as_status(chunks)
            req = calls.start_stream(t.channel, t.thread_ts, "", recipient_user=t.recipient_user,
                                     recipient_team=t.recipient_team, chunks=chunks)
            budget = "start"
        elif self._stream_open():
            req, budget = calls.append_stream(t.channel, self.segments[-1].ts, "", chunks), "append"
        else:
            return await self._progress_as_status(chunks)
        out = await self.slack.now(req)
        if out.wait:  # the budget's next token: the cards wait for it (or ride on the final stop)
            self._chunks[:0] = chunks
            self._chunks_at = self.free_at[budget] = time.monotonic() + out.wait
            if budget == "start":  # no stream now: the status shows progress until text takes over
                self._cards_refused = True
                await self._progress_as_status(self._take_chunks())
            return
        if not out.ok:
            log.warning("task cards not shown", extra={"channel": t.channel, "error": out.error})
            self.policy = dataclasses.replace(self.policy, native=False) if budget == "start" else self.policy
            return await self._progress_as_status(chunks)
        self.calls["cards"] += 1
        if budget == "start":
            now = time.monotonic()
            self.segments.append(Segment("stream", out.ts, 0, 0, changed_at=now, started_at=now))
            self._status_live = False
            self._shown(now)
            await self._journal()

    async def _progress_as_status(self, chunks: list[dict]) -> None:
        running = [c for c in chunks if c.get("type") == "task_update" and c["status"] in ("pending", "in_progress")
                   and not c["id"].startswith(THINKING_TASK)]
        if running:
            await self.tool(f"{running[-1]['title']}…")

    # --- feedback ------------------------------------------------------------------------------------
    def _is_last(self, end: int) -> bool:
        return self.rating is not None and self.done and end >= len(self.text.rstrip())

    def _rating_blocks(self, end: int) -> list[dict] | None:
        return [feedback_block(self.rating)] if self._is_last(end) else None

    def _with_rating(self, payload: dict, end: int) -> tuple[dict, bool]:
        """The payload with the feedback buttons when it shows the end of a finished answer."""
        if not self._is_last(end) or len(payload["blocks"]) >= 50:
            return payload, False
        return {**payload, "blocks": [*payload["blocks"], feedback_block(self.rating)]}, True

    async def _rate_last(self) -> None:
        """The feedback buttons on the answer's last message, by one more edit if no step carried them
        (a stream's last stop carries them itself, in the background)."""
        if self.rating is None or self.broken or not self.landed:
            return
        last = self.segments[-1]
        if last.ts in self._rated or last.kind == "stream":
            return
        payload, _ = self._with_rating(self._payload(render_span(self.text, last.start, last.end, final=True),
                                                     button=False), last.end)
        if (await self.slack.send(calls.update(self.target.channel, last.ts, payload), member=self.target.turn_id)).ok:
            self.calls["edit"] += 1
            self._rated.add(last.ts)

    async def _upload_images(self, runs: list) -> None:
        """Images the code produced (plots), uploaded into the answer's thread."""
        images = [(n, i, img) for n, run in enumerate(runs, 1) for i, img in enumerate(run.images, 1)]
        for n, i, img in images[:MAX_IMAGES]:  # a loop that plots 50 times should not flood the thread
            ext = (img.mime_type.split("/")[-1] or "png").replace("jpeg", "jpg")
            # one try: the SDK's upload is three calls, and a blind second try could show the image twice
            out = await self.slack.send(calls.upload(self.target.channel, self.target.thread_ts, img.data,
                                                     f"code-run-{n}-{i}.{ext}", f"Code run {n} output {i}"), tries=1)
            self.uploads += [str(f["id"]) for f in (out.data or {}).get("files") or [] if out.ok and f.get("id")]

    async def _find_posted(self, req: Request) -> str | None:
        return await self.find(req.args["blocks"][0].get("text", "")) if self.find is not None else None

    async def _retry(self, req: Request) -> bool:
        """Keep trying a call through its budget's waits (bounded); True once Slack accepted it."""
        deadline = time.monotonic() + _CLEANUP_SECONDS
        while time.monotonic() < deadline:
            out = await self.slack.now(req)
            if out.ok or not out.wait:
                return out.ok
            await asyncio.sleep(min(out.wait, max(0.05, deadline - time.monotonic())))
        return False
