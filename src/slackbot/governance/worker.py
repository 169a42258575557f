"""The governance worker, on every replica: it finishes deletions a forgetting process did not confirm
(it died, or Gemini or Slack failed), and forgets threads past retention (SLACKBOT_RETENTION_DAYS).

Both come from sharded, leased schedules (store/governance.py): a crash hands an entry to another
replica after its lease, and what a retry finds already deleted (Gemini's 404, Slack's
message_not_found, an empty map) is simply done, so each deletion is carried out until confirmed and
never undone. Gemini's deletes are paced by SLACKBOT_RETENTION_DELETES_PER_SECOND, in batches of at most
_BATCH entries a tick.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import Settings
from ..store import RedisError
from ..store.governance import GovernanceStore
from .forget import Forgetter

log = logging.getLogger(__name__)

_BATCH = 20


class GovernanceWorker:
    def __init__(self, settings: Settings, store: GovernanceStore, forget: Forgetter):
        self.settings = settings
        self.store = store
        self.forget = forget
        self._stopping = asyncio.Event()
        self.task: asyncio.Task | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def pace(self) -> float:
        return 1 / self.settings.retention_deletes_per_second

    @property
    def lease(self) -> float:
        """Long enough for a batch of paced deletes (a thread may own several interactions); a replica
        that dies holding a batch hands it on after this long."""
        return max(self.settings.delete_retry_seconds, _BATCH * 10 * self.pace)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except (RedisError, OSError):
                log.warning("governance worker: redis unavailable")
            try:
                await asyncio.wait_for(self._stopping.wait(), self.settings.retention_tick_seconds)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> int:
        """Finish owed deletions, then forget threads past retention (a batch of each); how many entries."""
        done = await self.purges()
        if self.settings.retention_days:
            done += await self.retention()
        return done

    async def purges(self) -> int:
        members = await self.store.due_purges(self.lease, _BATCH)
        for member in members:
            tag = member.rpartition("|")[0]
            team, channel, thread = tag.split(":", 2)
            await self.forget.purge(team, channel, thread, member, pace=self.pace)
        return len(members)

    async def retention(self) -> int:
        due = await self.store.due_for_retention(self.lease, _BATCH)
        for shard, tag, claimed in due:
            team, channel, thread = tag.split(":", 2)
            left = await self._left(team, channel, thread)
            if left > 0:  # answered again since it was scheduled: due again from its newest answer
                await self.store.retain(team, channel, thread, left)
                continue
            await self._expire(team, channel, thread)
            # off the schedule, unless a turn moved it meanwhile (retain runs before its head moves)
            await self.store.retention_settled(shard, tag, claimed)
        return len(due)

    async def _left(self, team: str, channel: str, thread: str) -> float:
        """Seconds until the thread's newest answered message is past retention (<= 0: it is)."""
        answered = await self.store.answered(team, channel, thread)
        newest = float(answered[-1].ts) if answered else 0.0
        return newest + self.settings.retention_days * 86400 - time.time()

    async def _expire(self, team: str, channel: str, thread: str) -> None:
        """Forget the thread at Gemini and in Redis as any forgetting does (the deletes owed durably),
        paced here; the conversation in Slack is the workspace's and stays."""
        taken, member = await self.store.forget(team, channel, thread, None, f"{time.time():.6f}",
                                                retry_in=self.lease, in_slack=False)
        await self.forget.purge(team, channel, thread, member, pace=self.pace)
        log.info("retention: forgot a thread", extra={"team": team, "channel": channel, "thread_ts": thread,
                                                      "messages": len(taken)})
