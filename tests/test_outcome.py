"""How a turn ends (chat/outcome.py, pure): what the user reads, the outcome label, whether the head moves."""

from __future__ import annotations

import pytest

from slackbot.chat.outcome import (FAILURE_LINES, SLACK_DOWN, STOP_FINISHED, STOPPED, TOO_SLOW, UNEXPECTED, Ending,
                                   Outcome, Stopped, ending_of, landed, stop_reply, stopped_in_slack)
from slackbot.gemini import GeminiError

CLEAN = {"late": False, "broken": False, "failed": False, "gave_up": False}


def test_the_outcome_is_its_metric_label():
    assert [o.value for o in Outcome] == ["completed", "failed", "stopped"]
    assert f"{Outcome.STOPPED}" == "stopped"


@pytest.mark.parametrize("error, outcome, note", [
    (Stopped(), Outcome.STOPPED, STOPPED),
    (TimeoutError(), Outcome.FAILED, TOO_SLOW),
    (GeminiError("rate_limited", "quota", 429), Outcome.FAILED, FAILURE_LINES["rate_limited"]),
    (GeminiError("lost"), Outcome.FAILED, FAILURE_LINES["lost"]),
    (GeminiError("something new"), Outcome.FAILED, FAILURE_LINES["unavailable"]),
    (ValueError("a bug of ours"), Outcome.FAILED, UNEXPECTED),
])
def test_each_error_ends_with_one_plain_line(error, outcome, note):
    ending = ending_of(error)
    assert (ending.outcome, ending.note) == (outcome, note)
    assert ending.bug == isinstance(error, ValueError)  # only our own errors carry a traceback to the log


def test_slacks_own_stop_turns_a_complete_answer_into_a_stop():
    assert stopped_in_slack(Ending(Outcome.COMPLETED, "note"), True) == Ending(Outcome.STOPPED, STOPPED)
    assert stopped_in_slack(Ending(Outcome.COMPLETED, "note"), False) == Ending(Outcome.COMPLETED, "note")
    failed = Ending(Outcome.FAILED, TOO_SLOW)
    assert stopped_in_slack(failed, True) == failed  # a failure is told as a failure


def test_only_a_complete_answer_that_landed_moves_the_head():
    done = Ending(Outcome.COMPLETED)
    assert landed(done, **CLEAN).moves_head and landed(done, **CLEAN).line is None
    for fault in ("late", "broken", "failed"):
        result = landed(done, **{**CLEAN, fault: True})
        assert result.outcome is Outcome.FAILED and not result.moves_head, fault
    assert not landed(Ending(Outcome.STOPPED, STOPPED), **CLEAN).moves_head
    assert landed(Ending(Outcome.STOPPED, STOPPED), **CLEAN).outcome is Outcome.STOPPED


def test_the_line_said_after_the_answer():
    done = Ending(Outcome.COMPLETED)
    assert landed(done, **{**CLEAN, "late": True}).line == TOO_SLOW
    assert landed(done, **{**CLEAN, "broken": True, "failed": True}).line == UNEXPECTED
    assert landed(done, **{**CLEAN, "broken": True, "gave_up": True}).line == SLACK_DOWN
    assert landed(done, **{**CLEAN, "broken": True}).line is None  # e.g. not_in_channel: nowhere to say it
    assert landed(done, late=True, broken=True, failed=True, gave_up=True).line == TOO_SLOW  # one line only


def test_only_the_asker_stops_a_running_answer():
    assert stop_reply(known=True, finished=False, asker="U1", clicker="U1").stopping
    other = stop_reply(known=True, finished=False, asker="U1", clicker="U2")
    assert not other.stopping and other.line == "Only <@U1> can stop this answer."
    for known, finished in ((False, False), (True, True)):
        late = stop_reply(known=known, finished=finished, asker="U1", clicker="U1")
        assert not late.stopping and late.line == STOP_FINISHED
