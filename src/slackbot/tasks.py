"""Work that outlives the Slack request: tracked, so shutdown can let answers in flight finish."""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine

from . import metrics

log = logging.getLogger(__name__)


class TaskTracker:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()
        self.accepting = True

    def spawn(self, coro: Coroutine, *, name: str = "work") -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        metrics.WORK_IN_FLIGHT.inc()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        metrics.WORK_IN_FLIGHT.dec()

    async def _guard(self, coro: Coroutine, name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed task is logged with context; the process keeps serving
            log.exception("background task failed", extra={"task": name})

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> None:
        """Stop accepting, let running work finish within `grace` seconds, cancel the rest."""
        self.accepting = False
        if not self._tasks:
            return
        done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled work at shutdown", extra={"count": len(pending)})
