"""What Slack's answer to one of the planner's steps means for the answer's segments. Pure: no I/O.

The planner (plan.py) asks for a step; the delivery (delivery.py) makes its Slack call and hands
the outcome here. `settle` says what that outcome changes: the segment as it now stands (or a new
one), which budget to wait for, whether native streams are still worth trying, whether the change
must be journalled, and whether the delivery must look in Slack before going on (a new message
whose call may have landed anyway).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .calls import Outcome
from .plan import Segment, Step

CREATES = ("start", "post", "post_open")  # the planner's steps that make a new Slack message
PRIORITY_LANES = ("edit:final", "append:final", "post:first")  # budgets' reserves are kept for these


@dataclass
class Settled:
    segment: Segment | None = None  # the last segment as it now stands (a new one when `created`)
    created: bool = False  # a new Slack message: the segment is appended
    counted: str = ""  # the call Slack took, for the delivery mix: stream, post, append, edit, stop
    shown: bool = False  # people see a change (at segment.changed_at)
    journal: bool = False  # a survivor must know: a message made, a segment closed
    waits: dict[str, float] = field(default_factory=dict)  # budget lane -> seconds until its next token
    native: bool = True  # False: no more native streams in this answer
    look: bool = False  # a new message's call may have landed: look for it before anything else
    abandon_stream: bool = False  # an append may have landed: stop the stream and show its span by edits
    broken: bool = False  # Slack refuses to post here: nothing more to try
    gave_up: bool = False  # ... because Slack kept breaking
    user_stopped: bool = False  # the native stream's own Stop was pressed


def lane(step: Step, *, first_words: bool) -> str:
    """The planner's budget name for a step (plan.View.free_at's keys). `first_words`: the answer
    has no message yet, or is done: its posts may use the channel's reserve."""
    if step.op in ("post", "post_open"):
        return "post:first" if first_words else "post"
    if step.op in ("edit", "append"):
        return f"{step.op}:final" if step.final else step.op
    return step.op


def settle(step: Step, out: Outcome, last: Segment | None, *, lane: str, now: float, button: bool = False) -> Settled:
    """`last`: the answer's last segment (the one a growing step acts on); `button`: the message
    posted carries the Stop button."""
    if step.op in CREATES:
        return _created(step, out, lane, now, button)
    if last is None:
        raise ValueError(f"{step.op} needs a segment")
    if step.op == "append":
        return _appended(step, out, last, lane, now)
    if step.op == "stop":
        return _stopped(out, last, lane)
    if step.op == "edit":
        return _edited(step, out, last, lane, now)
    raise ValueError(f"{step.op} is not a Slack call")


def _created(step: Step, out: Outcome, lane: str, now: float, button: bool) -> Settled:
    if out.ok:
        if step.op == "start":
            seg = Segment("stream", out.ts, step.start, step.end)
        else:
            grows = step.op == "post_open"
            seg = Segment("edit" if grows else "post", out.ts, step.start, step.end, open=grows, final=not grows,
                          has_button=button)
        seg.changed_at = seg.started_at = now
        return Settled(seg, created=True, counted="stream" if step.op == "start" else "post", shown=True,
                       journal=True)
    settled = Settled(look=out.unsure)
    if out.wait:
        settled.waits = {lane: out.wait}
    elif step.op == "start":  # e.g. channel_type_not_supported, a Slack Connect recipient: edits and posts carry it
        settled.native = False
    else:  # not_in_channel, channel_not_found, or Slack kept breaking
        settled.broken, settled.gave_up = True, out.unsure
    return settled


def _appended(step: Step, out: Outcome, seg: Segment, lane: str, now: float) -> Settled:
    if out.ok:
        return Settled(dataclasses.replace(seg, end=step.end, changed_at=now), counted="append", shown=True)
    if out.unsure:  # appending again could double it
        return Settled(abandon_stream=True, native=False)
    if out.wait:  # as for edits: an intermediate append's wait says nothing about the finals' reserve
        return Settled(waits={lane: out.wait, **({} if step.final else {"append:final": 0.0})})
    # Slack closed the stream (expired, or stopped by the user): what it shows stays; go on below
    return Settled(dataclasses.replace(seg, open=False), journal=True, native=False,
                   user_stopped=out.error == "stopped_by_user")


def _stopped(out: Outcome, seg: Segment, lane: str) -> Settled:
    if out.ok or (out.error and not out.wait):  # stopped, or past stopping: either way sealed
        return Settled(dataclasses.replace(seg, open=False, final=True), counted="stop" if out.ok else "",
                       journal=True)
    return Settled(waits={lane: out.wait})


def _edited(step: Step, out: Outcome, seg: Segment, lane: str, now: float) -> Settled:
    if out.ok:
        return Settled(dataclasses.replace(seg, end=step.end, final=step.final, changed_at=now,
                                           has_button=seg.has_button and not step.final),
                       counted="edit", shown=True)
    if out.wait:  # an intermediate edit's wait says nothing about the reserve finals may use
        return Settled(waits={lane: out.wait, **({} if step.final else {"edit:final": 0.0})})
    # the message is gone (deleted) or refuses edits: leave it, go on below
    return Settled(dataclasses.replace(seg, open=False), journal=True)


def abandoned(seg: Segment, stopped: bool) -> Segment:
    """A stream whose last append may have landed: once stopped, it is grown by edits from scratch
    (chat.update replaces its text whole); if it would not stop, the answer goes on below it."""
    if stopped:
        return dataclasses.replace(seg, kind="edit", end=seg.start, final=False)
    return dataclasses.replace(seg, open=False)
