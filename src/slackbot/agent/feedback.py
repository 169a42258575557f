"""Ratings of answers: the 👍/👎 click, and the operators' report (`/gemini feedback`).

A click is acked at once (listeners/agent.py); then it is stored once per person per answer (a second
click changes the vote: store/agent.py), counted (`slackbot_feedback_total{rating, model, profile}`),
logged with the answer's interaction id (never its text) and thanked ephemerally.
"""

from __future__ import annotations

import logging

from .. import metrics
from ..research.status import escape
from ..slack_out import calls
from ..slack_out.progress import RATINGS, read_rating
from ..store.agent import Ratings

log = logging.getLogger(__name__)

THANKS = {"good": "Thanks for the feedback: glad it helped.",
          "bad": "Thanks for the feedback. Asking again with more detail often helps."}
CHANGED = "Thanks: your rating of this answer is now {emoji}."
SAME = "You rated this answer already."
NOT_OPERATOR = "Only the people who run this bot (SLACKBOT_OPERATORS) can see its feedback figures."
_EMOJI = {"good": "👍", "bad": "👎"}


async def handle_click(services, body: dict, action: dict, team: str) -> None:
    read = read_rating(action.get("value") or "")
    user = (body.get("user") or {}).get("id") or ""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    ts = (body.get("message") or {}).get("ts") or container.get("message_ts") or ""
    if read is None or not (user and channel and ts):
        log.warning("feedback click not understood", extra={"channel": channel})
        return
    rating, tag = read
    changed = await services.store.agent.rate(team, channel, ts, user, rating, tag.model, tag.profile)
    if changed:
        metrics.FEEDBACK.labels(RATINGS[rating], tag.model, tag.profile).inc()
    log.info("answer rated", extra={"interaction": tag.interaction, "rating": RATINGS[rating], "model": tag.model,
                                    "profile": tag.profile, "channel": channel, "changed": changed == 2})
    line = SAME if changed == 0 else CHANGED.format(emoji=_EMOJI[rating]) if changed == 2 else THANKS[rating]
    thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
    await services.slack.for_team(team).send(calls.ephemeral(channel, user, line, thread), tries=2, give_up_after=5.0)


def report(rows: list[Ratings], days: int = 7) -> str:
    """The operators' view: per model and profile, the ratings of the last `days` days' answers."""
    if not rows:
        return f"*Answer feedback, last {days} days*\nNo ratings yet."
    lines = [f"*Answer feedback, last {days} days* (answers rated 👍 / all rated)"]
    for row in rows[:40]:
        total = row.good + row.bad
        lines.append(f"• `{escape(row.model)}` · {escape(row.profile)}: 👍 {row.good} · 👎 {row.bad} "
                     f"({round(100 * row.good / total)} % helpful)")
    return "\n".join(lines)
