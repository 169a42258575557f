"""Retention (SLACKBOT_RETENTION_DAYS): a thread whose last answer is older than that is forgotten at
Gemini and in Redis. Every replica runs this loop; the schedule (store/governance.py) leases each due
thread to one of them, so a crash hands it to another after the lease, and what a retry finds already
deleted (Gemini's 404, an empty map) is simply done: each thread is forgotten once. Gemini's deletes are
paced by SLACKBOT_RETENTION_DELETES_PER_SECOND, in batches of at most _BATCH threads a tick."""

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


class RetentionWorker:
    def __init__(self, settings: Settings, store: GovernanceStore, forget: Forgetter):
        self.settings = settings
        self.store = store
        self.forget = forget
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def lease(self) -> float:
        return max(60.0, _BATCH * 10 / self.settings.retention_deletes_per_second)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except (RedisError, OSError):
                log.warning("retention: redis unavailable")
            try:
                await asyncio.wait_for(self._stopping.wait(), self.settings.retention_tick_seconds)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> int:
        """Forget the threads due now (a batch); how many."""
        pairs = await self.store.due_for_retention(self.lease, _BATCH)
        for shard, tag in pairs:
            team, channel, thread = tag.split(":", 2)
            await self._expire(team, channel, thread)
            await self.store.retention.remove(shard, tag)
        return len(pairs)

    async def _expire(self, team: str, channel: str, thread: str) -> None:
        """Gemini first (each delete paced; a 404 is one done before a crash), then Redis: a crash in
        between leaves the map, so the next owner deletes again instead of losing track."""
        answered = await self.store.answered(team, channel, thread)
        for interaction_id in [i for a in answered for i in a.ids]:
            await self.forget.at_gemini([interaction_id])
            await asyncio.sleep(1 / self.settings.retention_deletes_per_second)
        await self.store.forget(team, channel, thread, None, f"{time.time():.6f}")
        log.info("retention: forgot a thread", extra={"team": team, "channel": channel, "thread_ts": thread,
                                                      "messages": len(answered)})
