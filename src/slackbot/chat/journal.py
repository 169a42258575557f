"""One turn's entry in the crash journal (store/turns.py), as the turn running it sees it.

Every write checks in Redis that this process still owns the turn, so a process that lost its lease
writes nothing. Progress (the interaction id, the delivery's segments) is best effort: while Redis is
away the answer goes on, and only a crash in that window loses it.
"""

from __future__ import annotations

import json
import logging

from ..store import RedisError, TurnRecord, TurnStore

log = logging.getLogger(__name__)


class TurnJournal:
    def __init__(self, turns: TurnStore, record: TurnRecord, owner: str, lock_key: str):
        self.turns = turns
        self.record = record
        self.owner = owner
        self.lock_key = lock_key

    async def running(self, head_before: str) -> None:
        """The answer starts from this chain head (a survivor resumes from it). Not best effort: raises."""
        self.record.head_before, self.record.state = head_before, "running"
        await self.turns.write(self.record.id, self.owner, {"state": "running", "head_before": head_before})

    async def started(self, interaction_id: str) -> None:
        """Gemini named a step's interaction: a survivor replays the journalled steps' stored streams instead
        of asking again, and goes on from the last one (its function results are never journalled)."""
        if interaction_id not in self.record.steps:
            self.record.steps.append(interaction_id)
        self.record.interaction_id = interaction_id
        await self.note({"interaction_id": interaction_id, "steps": json.dumps(self.record.steps)})

    async def delivered(self, state: dict) -> None:
        """What Slack holds of the answer so far (slack_out/delivery.py's segments and pending intent)."""
        await self.note({"delivery": json.dumps(state)})

    async def images(self, state: dict) -> None:
        """Each image call's progress (images/make.py): tries, upload intents, files Slack accepted."""
        self.record.images = json.dumps(state)
        await self.note({"images": self.record.images})

    def image_state(self) -> dict:
        return json.loads(self.record.images) if self.record.images else {}

    def delivery_state(self) -> dict | None:
        """The delivery state a dead process journalled, or None for a fresh answer."""
        return json.loads(self.record.delivery) if self.record.delivery else None

    async def note(self, fields: dict[str, str]) -> None:
        """Journal progress, best effort."""
        try:
            await self.turns.write(self.record.id, self.owner, fields)
        except (RedisError, OSError):
            log.warning("could not journal a turn's progress", extra=context(self.record))

    async def done(self) -> None:
        """The turn is over: off the schedule, its thread lock released, its entry kept briefly for a late Stop."""
        try:
            await self.turns.done(self.record.id, self.owner, self.lock_key)
        except (RedisError, OSError):
            log.warning("could not close a turn's journal entry; it expires", extra=context(self.record))


def context(record: TurnRecord) -> dict:
    """Where a turn is, for log lines (never its text)."""
    return {"team": record.team, "channel": record.channel, "thread_ts": record.chain_thread, "kind": record.kind}
