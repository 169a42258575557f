"""How a turn ends, decided in pure code: what the user reads, the outcome label, whether the head moves.

Every line a user can read about a turn that did not simply answer lives here, so the bench (which
counts them as ends of answers) and the tests read them from one place. No I/O: each rule has a
unit test (tests/test_outcome.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..gemini import GeminiError

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
STOP_FINISHED = "That answer has already finished."
STOP_NOT_YOURS = "Only <@{user}> can stop this answer."


class Stopped(Exception):
    """The asker pressed Stop."""


class Outcome(StrEnum):
    """How an answer ended; the value is its label on `slackbot_answers_total` and the `answer done` log line."""

    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Ending:
    """How the conversation with Gemini ended, before the answer landed in Slack."""

    outcome: Outcome
    note: str = ""  # the italic line the answer ends with
    bug: bool = False  # an error of ours: logged with its traceback


ANSWERED = Ending(Outcome.COMPLETED)


def ending_of(error: Exception | None) -> Ending:
    """What the user reads when talking to Gemini ended with `error` (None: Gemini finished).

    Redis and network errors are not mapped here: they end the turn with STORE_DOWN (lifecycle)."""
    if error is None:
        return ANSWERED
    if isinstance(error, Stopped):
        return Ending(Outcome.STOPPED, STOPPED)
    if isinstance(error, TimeoutError):
        return Ending(Outcome.FAILED, TOO_SLOW)
    if isinstance(error, GeminiError):
        return Ending(Outcome.FAILED, FAILURE_LINES.get(error.kind, FAILURE_LINES["unavailable"]))
    return Ending(Outcome.FAILED, UNEXPECTED, bug=True)


def stopped_in_slack(ending: Ending, user_stopped: bool) -> Ending:
    """Slack's own Stop on a native stream ends a complete answer as a stop, with the same note."""
    return Ending(Outcome.STOPPED, STOPPED) if user_stopped and ending.outcome is Outcome.COMPLETED else ending


@dataclass(frozen=True)
class Landing:
    """The turn's last word: its outcome, and the one line said after the answer (None: nothing more)."""

    outcome: Outcome
    line: str | None = None

    @property
    def moves_head(self) -> bool:
        """Only a complete answer moves the chain head: a failed or stopped turn leaves the thread as it was."""
        return self.outcome is Outcome.COMPLETED


def landed(ending: Ending, *, late: bool, broken: bool, failed: bool, gave_up: bool) -> Landing:
    """After the delivery finished (or ran out of time).

    `late`: the answer could not land before the deadline; `broken`: Slack refused or kept failing, so
    the answer is not (all) there; `failed`: the delivery itself broke (a bug); `gave_up`: Slack kept
    breaking on a new message, so it is not shown."""
    outcome = Outcome.FAILED if late or broken or failed else ending.outcome
    line = TOO_SLOW if late else UNEXPECTED if failed else SLACK_DOWN if gave_up else None
    return Landing(outcome, line)


@dataclass(frozen=True)
class StopReply:
    """What a Stop click did: the answer is stopping, or the one line that tells the clicker why not."""

    stopping: bool
    line: str = ""


def stop_reply(*, known: bool, finished: bool, asker: str, clicker: str) -> StopReply:
    """Only the asker stops their answer, and only while it runs."""
    if not known or finished:
        return StopReply(False, STOP_FINISHED)
    if asker != clicker:
        return StopReply(False, STOP_NOT_YOURS.format(user=asker))
    return StopReply(True)
