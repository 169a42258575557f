"""The delivery planner: how the next piece of an answer reaches Slack. Pure: no I/O, no clock.

Slack gives a bot several budgets, each per workspace (posts: per channel): `chat.update` (Tier 3),
`chat.startStream`/`chat.stopStream` (Tier 2) with `chat.appendStream` (Tier 4), and
`chat.postMessage` (about 1/s per channel). Spending only the edit budget makes every answer's last
words queue behind everyone else's edits. So an answer is delivered as a list of *segments* (Slack
messages), each covering a span of the answer's text, and each of one kind:

* `stream`: a native Slack stream, grown by appends (the smoothest, when Tier 2 has room);
* `edit`: a posted message grown by `chat.update` about once a second (while the edit budget has room);
* `post`: a finished piece posted once and never touched again (per-channel budget: plentiful).

The planner looks at what is shown, what Gemini has written and when each budget next has a token
(`free_at`, learnt from the store's last answer), and returns one `Step`. Rules, in order:
1. a segment never holds more than `limit` characters: past that it is sealed and the text goes on
   in a new one;
2. when Gemini is done, the rest lands by whichever budget can carry it *now*: the open segment (an
   append or a priority edit, on reserves intermediate growth never touches) if that budget is free
   within `final_wait`, else as new posts; finals never wait behind an edit queue (unless the open
   segment ends mid-paragraph: then its final waits its turn rather than split the paragraph);
3. one message while Slack allows it: while Gemini writes, the open segment grows when its budget
   allows and otherwise waits (the thread status says the answer is being written); it is never
   split for a budget that is short for a moment;
4. fuller messages under load: a new message follows while Gemini writes only once the answer has
   stood still for `stall_after` seconds, its last message ends where a block ends, and whole
   blocks of at least `continue_chars` are ready (any whole block after twice `stall_after`);
5. seams are invisible: a native stream shows sentences as they come; a message grown by edits or
   posted whole shows whole blocks (paragraphs, lists, tables, code blocks: render.block_end), so a
   continuation begins a block, never mid-sentence, mid-list or mid-table. Intermediate text never
   ends inside a word or a Slack token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .render import block_end, first_cut, open_code_block_at, open_token_at, starts_block

Op = Literal["start", "append", "stop", "post", "post_open", "edit", "seal", "wait", "finished"]
_SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n")
_LONG_RUN = 160  # chars without a line or sentence end after which a space will do
_FIRST_WORDS = 40  # chars before a first message may end at a space (no lone "The" as an answer)


@dataclass
class Segment:
    kind: Literal["stream", "edit", "post"]
    ts: str
    start: int
    end: int  # text[start:end] is what the message shows
    open: bool = True
    changed_at: float = 0.0  # when it last changed in Slack
    started_at: float = 0.0
    final: bool = False  # shows its final rendering (fences closed, no Stop button)
    has_button: bool = False  # carries the Stop button

    def to_json(self) -> dict:
        """For the crash journal: what a survivor needs to go on with this message."""
        return {"kind": self.kind, "ts": self.ts, "start": self.start, "end": self.end, "open": self.open,
                "final": self.final, "button": self.has_button}

    @classmethod
    def from_json(cls, d: dict) -> "Segment":
        d = _readable(d)
        return cls(d["kind"], d["ts"], d["start"], d["end"], d["open"], final=d.get("final", False),
                   has_button=d.get("button", False))


# The crash journal's keys before they were spelt out: still read, so a rolling upgrade in the middle of
# an answer recovers it
_SHORT_KEYS = {"k": "kind", "s": "start", "e": "end", "o": "open", "f": "final", "b": "button"}


def _readable(d: dict) -> dict:
    return {_SHORT_KEYS.get(key, key): value for key, value in d.items()}


@dataclass(frozen=True)
class Intent:
    """A new message about to be made (journalled first): which span, by which step, and whether it
    grows later. A survivor that finds one looks for the message before making it again."""

    op: str  # start | post
    start: int
    end: int
    grows: bool = False

    def to_json(self) -> dict:
        return {"op": self.op, "start": self.start, "end": self.end, "grows": self.grows}

    @classmethod
    def from_json(cls, d: dict) -> "Intent":
        d = _readable(d)
        return cls(d["op"], d["start"], d["end"], bool(d.get("grows")))


@dataclass(frozen=True)
class Policy:
    limit: int = 3500  # characters per message
    min_interval: float = 1.0  # fastest a segment grows
    stall_after: float = 12.0  # seconds an answer stands still, a continuation ready, before a new message
    continue_chars: int = 600  # what a new message carries at least while Gemini writes (else 2 x stall_after)
    final_wait: float = 0.5  # how long a final waits for its open segment's budget before posting
    stream_max_age: float = 240.0  # Slack closes streams after ~5 minutes: seal before that
    native: bool = True  # native streams allowed here (a thread, recipient known, strategy)
    edits_only: bool = False  # the old design, kept for the benchmark's comparison


@dataclass(frozen=True)
class Step:
    op: Op
    start: int = 0
    end: int = 0
    final: bool = False
    until: float = 0.0  # for "wait": when to look again (0 = when the text changes)


@dataclass
class View:
    text: str
    done: bool
    now: float
    segments: list[Segment]
    free_at: dict[str, float] = field(default_factory=dict)  # budget name -> when a token is expected
    last_visible: float = 0.0  # when anything of this answer last changed in Slack


def outside_token(text: str, start: int, end: int, *, keep: int = 0) -> int:
    """`end`, or the '<' before it when a cut at `end` would split a Slack token like `<https://x|a b>`
    begun at or after `start + keep`: a message shows a token whole where it can. Safety does not rest
    on this: a piece ending inside a token has its '<' escaped (render.neutralize_slack_markup)."""
    if end >= len(text):
        return end
    lt = open_token_at(text, start + keep, end)
    return end if lt is None else lt


def display_end(text: str, start: int, done: bool, *, sentences_only: bool = False) -> int:
    """How far an intermediate view of text[start:] may reach: a line or sentence end, else (for first
    words, or in a long run) a space. A continuation posted whole (`sentences_only`) waits for a
    sentence, so a message never ends mid-thought when another could carry the rest."""
    if done:
        return len(text)
    nl = text.rfind("\n", start)
    best = nl + 1 if nl >= 0 else start
    for mark in _SENTENCE_ENDS:
        i = text.rfind(mark, best)
        if i >= 0:
            best = max(best, i + len(mark))
    first_words = best == start and not sentences_only and len(text) - start >= _FIRST_WORDS
    if first_words or len(text) - best > _LONG_RUN:
        sp = text.rfind(" ", best)
        if sp > best:
            best = sp + 1
    if sentences_only and (opened := open_code_block_at(text, start, best)) is not None:
        best = opened  # a message posted whole does not end inside a code block that began in it
    return max(start, outside_token(text, start, best))


def next_step(view: View, policy: Policy) -> Step:
    segs = view.segments
    open_seg = segs[-1] if segs and segs[-1].open else None
    pos = segs[-1].end if segs else 0
    seg_start = open_seg.start if open_seg else pos
    cut = first_cut(view.text, seg_start, policy.limit)  # None when text[seg_start:] fits one message
    full = None  # where a full message ends: it steps back over a token only while it stays at least half full
    if cut is not None:
        full = outside_token(view.text, seg_start, cut, keep=(cut - seg_start) // 2)
    if open_seg is None:
        return _new_segment(view, policy, pos, full)
    return _grow(view, policy, open_seg, full)


def ready_end(view: View, policy: Policy, start: int, *, blocks: bool) -> int:
    """How far a view of text[start:] may reach now. A native stream shows sentences as they come;
    a message that grows by edits, or is posted whole, shows whole blocks (paragraphs, lists, tables,
    code blocks), so wherever it is sealed the next message begins a block. Within one long block
    (more than a quarter of a message past the last block end) a sentence end will do."""
    text = view.text
    if view.done:
        return len(text)
    if not blocks or policy.edits_only:
        return display_end(text, start, False, sentences_only=blocks)
    end = block_end(text, start, len(text))
    if len(text) - end > policy.limit // 4:
        end = display_end(text, end, False, sentences_only=True)
    return max(start, outside_token(text, start, end))


def continuation_due(view: View, policy: Policy, chars: int) -> float:
    """When a new message carrying `chars` characters of whole blocks may follow the answer's last change
    while Gemini writes: after `stall_after` seconds of standing still if it is worth a message of its own
    (`continue_chars`), after twice that for any whole block."""
    wait = policy.stall_after if chars >= policy.continue_chars else 2 * policy.stall_after
    return view.last_visible + wait


def _free(view: View, budget: str, within: float = 0.0) -> bool:
    return view.free_at.get(budget, 0.0) <= view.now + within


def _wait_for(view: View, budget: str, until: float = 0.0) -> Step:
    at = max(view.free_at.get(budget, 0.0), view.now + 0.05)
    return Step("wait", until=min(at, until) if until > view.now else at)


def _shows(text: str, start: int, end: int) -> bool:
    return end > start and bool(text[start:end].strip())


def _new_segment(view: View, policy: Policy, pos: int, full: int | None) -> Step:
    text = view.text
    if view.done or full is not None:  # the rest of a finished answer, or a full message: posted now
        end = len(text) if full is None else full
        if not _shows(text, pos, end):
            return Step("finished") if view.done and not text[pos:].strip() else Step("wait")
        post = "post" if view.segments and not view.done else "post:first"  # first words and finals go first
        return Step("post", pos, end, final=True) if _free(view, post) else _wait_for(view, post)
    post = "post" if view.segments else "post:first"
    if policy.edits_only:
        end = display_end(text, pos, False, sentences_only=bool(view.segments))
        return (Step("post_open", pos, end) if _free(view, post) else _wait_for(view, post)) \
            if _shows(text, pos, end) else Step("wait")
    if not view.segments and policy.native and _free(view, "start") and _free(view, "stop", 5.0):
        end = ready_end(view, policy, pos, blocks=False)
        return Step("start", pos, end) if _shows(text, pos, end) else Step("wait")
    end = ready_end(view, policy, pos, blocks=True)
    if not _shows(text, pos, end):
        return Step("wait")
    if view.segments and view.now < (due := continuation_due(view, policy, end - pos)):
        return Step("wait", until=due)  # the thread status says Gemini is writing meanwhile
    if _free(view, "edit", policy.min_interval):  # a message that can grow: the answer may stay in it
        return Step("post_open", pos, end) if _free(view, post) else _wait_for(view, post)
    return Step("post", pos, end, final=True) if _free(view, post) else _wait_for(view, post)


def _grow(view: View, policy: Policy, seg: Segment, full: int | None) -> Step:
    budget = {"stream": "append", "edit": "edit"}[seg.kind]
    final = view.done or full is not None
    if full is not None:
        target = full
    else:
        target = ready_end(view, policy, seg.start, blocks=seg.kind != "stream")
    if (full is not None and target <= seg.end) or (final and target <= seg.end):  # full, or all shown
        if seg.kind == "stream":
            return Step("stop", seg.start, seg.end, final=True) if _free(view, "stop", policy.final_wait) \
                else Step("seal", seg.start, seg.end)
        if seg.final:
            return Step("seal", seg.start, seg.end)
        if _free(view, "edit:final", policy.final_wait):
            return Step("edit", seg.start, seg.end, final=True) if _free(view, "edit:final") \
                else _wait_for(view, "edit:final")
        return Step("seal", seg.start, seg.end)  # the rendering differs only cosmetically; no edit to spare
    if target <= seg.end:
        if seg.kind == "stream" and view.now - seg.started_at > policy.stream_max_age:
            return Step("stop", seg.start, seg.end, final=True) if _free(view, "stop") else Step("seal", seg.start, seg.end)
        return Step("wait")
    if final:
        key = "append:final" if seg.kind == "stream" else "edit:final"
        # the rest goes out as posts, now, unless they would begin mid-paragraph: then the final waits its turn
        if policy.edits_only or _free(view, key, policy.final_wait) or not starts_block(view.text, seg.end):
            return Step("append" if seg.kind == "stream" else "edit", seg.start, target, final=True) \
                if _free(view, key) else _wait_for(view, key)
        return Step("seal", seg.start, seg.end)
    if view.now - seg.changed_at < policy.min_interval:
        return Step("wait", until=seg.changed_at + policy.min_interval)
    if seg.kind == "stream" and view.now - seg.started_at > policy.stream_max_age:
        return Step("stop", seg.start, seg.end, final=True) if _free(view, "stop") else Step("seal", seg.start, seg.end)
    if _free(view, budget):
        return Step("append" if seg.kind == "stream" else "edit", seg.start, target)
    if policy.edits_only or not starts_block(view.text, seg.end):
        return _wait_for(view, budget)  # a new message here would begin mid-paragraph: only growth will do
    more = ready_end(view, policy, seg.end, blocks=True) - seg.end
    due = continuation_due(view, policy, more)
    if more > 0 and view.now >= due:
        return Step("seal", seg.start, seg.end)  # stood still too long: the answer goes on in a new message
    return _wait_for(view, budget, until=due if more > 0 else 0.0)
