"""One turn at a time per thread, across replicas.

The lock in Redis is held by a turn id (store/turns.py, `_LOCK`), so a survivor finishing a dead
process's turn takes it over instead of waiting behind it. Inside one process, the turns waiting for
a thread queue on a local lock (first come, first served), and only the first of them asks Redis,
with backoff; each key's local lock is dropped when nobody holds or waits for it. The count of
holders and waiters is our own, not asyncio's private `_waiters`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

TryLock = Callable[[str, str, float], Awaitable[bool]]  # (lock key, turn id, ttl seconds) -> taken


@dataclass
class _Local:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # turns holding or waiting for this lock


class ThreadLocks:
    def __init__(self, try_lock: TryLock, ttl: float, poll: tuple[float, float] = (0.2, 2.0)):
        self._try_lock = try_lock
        self.ttl = ttl  # the Redis lock's life; renewed with the turn's lease
        self.poll = poll  # backoff bounds while another replica holds a thread's lock
        self._local: dict[str, _Local] = {}

    @asynccontextmanager
    async def hold(self, key: str, turn_id: str, on_wait: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
        """Hold the thread's lock for `turn_id`; `on_wait` runs once if another turn has it first."""
        local = self._local.setdefault(key, _Local())
        local.users += 1
        try:
            waited = local.lock.locked()
            if waited:  # an answer in this thread runs in this process
                await on_wait()
            async with local.lock:
                delay = self.poll[0]
                while not await self._try_lock(key, turn_id, self.ttl):
                    if not waited:  # ... or in another replica
                        waited = True
                        await on_wait()
                    await asyncio.sleep(delay)
                    delay = min(self.poll[1], delay * 1.5)
                yield
        finally:
            local.users -= 1
            if not local.users and self._local.get(key) is local:
                del self._local[key]

    def __len__(self) -> int:
        """Threads with a local lock in use (held or waited for)."""
        return len(self._local)
