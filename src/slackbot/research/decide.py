"""Pure decisions of the research worker: what a poll's answer means for a job. No I/O here.

worker.py carries these out; keeping them apart makes every status's meaning testable in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Gemini statuses that end a job without a report to post (`incomplete` posts what it has).
ENDINGS = {"failed", "cancelled", "incomplete", "budget_exceeded", "requires_action"}

Action = Literal["poll", "report", "finish", "time_out"]


@dataclass(frozen=True)
class Next:
    """What to do after one poll: keep polling, post the report, finish with `outcome`, or time out
    (cancel the agent, then finish as "timed_out")."""

    action: Action
    outcome: str = ""


POLL = Next("poll")
REPORT = Next("report")
TIME_OUT = Next("time_out", "timed_out")


def after_snapshot(status: str, elapsed: float, max_seconds: float) -> Next:
    """Gemini answered with `status`. Unknown statuses keep polling, bounded by the maximum run time."""
    if status == "completed":
        return REPORT
    if status in ENDINGS:
        return Next("finish", status)
    if elapsed > max_seconds:
        return TIME_OUT
    return POLL  # queued, in_progress, requires_continuation, or one this code does not know yet


def after_error(kind: str, elapsed: float, max_seconds: float) -> Next:
    """The poll itself failed (the SDK already retried). Gemini forgetting the job ends it; anything
    else is transient and polled again at the job's pace, until the maximum run time."""
    if kind == "not_found":
        return Next("finish", "lost")
    if elapsed > max_seconds:
        return Next("finish", "timed_out")
    return POLL


def next_interval(current: float, *, initial: float, backoff: float, maximum: float) -> float:
    """The poll interval after this one: grows by `backoff` up to `maximum`."""
    return min(maximum, (current or initial) * backoff)


def status_edit_due(*, old_status: str, new_status: str, last_update: float, now: float, every: float) -> bool:
    """Edit the status message when the status changes, else at most every `every` seconds
    (so the elapsed time and latest progress stay true without spending the edit budget)."""
    return new_status != old_status or now - last_update >= every


FINAL_EDIT_DAYS = 1.0  # how long a status message's last edit is tried again while Slack keeps breaking


def final_edit_again(*, accepted: bool, transient: bool, finished: float, now: float) -> bool:
    """The status message's last edit: try again later? Only while Slack broke (5xx, connection, a 429
    outlasting the tries) and for at most FINAL_EDIT_DAYS; a message or channel that is gone, or any
    other refusal, ends it (trying again would change nothing)."""
    return not accepted and transient and now - finished < FINAL_EDIT_DAYS * 86400


@dataclass(frozen=True)
class Request:
    """What `/research ...` asks for: the question, whether to skip the plan (`--now`) and whether to
    use the deeper agent (`--max`). Flags are leading words only, so a question may mention them."""

    question: str
    now: bool = False
    max: bool = False


def parse_request(text: str) -> Request:
    rest, flags = text.strip(), set()
    while True:
        head, _, tail = rest.partition(" ")
        if head.lower() not in ("--now", "--max"):
            break
        flags.add(head.lower())
        rest = tail.strip()
    return Request(rest, now="--now" in flags, max="--max" in flags)


def plan_expired(*, plan_ready: float, now: float, timeout: float) -> bool:
    """A plan nobody answered within `timeout` seconds ends the job."""
    return now - plan_ready >= timeout
