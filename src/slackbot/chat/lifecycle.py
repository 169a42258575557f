"""The turn lifecycle: accept a message, launch its turn, keep its lease, recover dead processes' turns,
pass on Stop, and stop on shutdown. One turn itself runs in `turn.AnswerTurn`.

Guarantees (enforced in Redis, so they hold across replicas):
* every accepted message is answered at least once and shown once: intake journals the turn before
  the ack; the process running it holds a lease it renews; when a process dies, a survivor claims
  the turn after the lease and finishes it from the journal (replaying Gemini's stored stream);
* one turn at a time per thread: a Redis lock held by the turn's id (so a survivor finishing a dead
  process's turn takes the lock over instead of waiting behind it); waiters in one process queue on
  a local lock, and only the first of them asks Redis, with backoff (thread_lock.py);
* the head moves by compare-and-set from the value the turn started with: never a fork; a failed or
  stopped turn leaves the head where it was, so the next message in the thread works (outcome.py);
* every turn ends with its answer or one plain line, within `SLACKBOT_TURN_DEADLINE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass


from .. import metrics
from ..config import Settings
from ..gemini import Gemini
from ..governance import Governance
from ..slack_out.gateway import SlackGateway
from ..slack_out.plan import Policy
from ..store import RedisError, Store, TurnRecord
from ..store.turns import AcceptOutcome
from ..tasks import TaskTracker
from .context import NameCache
from .intake import Incoming
from .journal import TurnJournal, context
from .outcome import STORE_DOWN, StopReply, stop_reply
from .thread_lock import ThreadLocks
from .turn import AnswerTurn, TurnDeps

log = logging.getLogger(__name__)


@dataclass
class _Running:
    turn: AnswerTurn
    lock_key: str
    task: asyncio.Task | None = None


class TurnLifecycle:
    """This process's turns: which run here, their leases, their Stop signals."""

    def __init__(self, settings: Settings, store: Store, gemini: Gemini, slack: SlackGateway, tasks: TaskTracker):
        self.settings = settings
        self.turns = store.turns
        self.tasks = tasks
        self.owner = f"r-{uuid.uuid4().hex[:10]}"
        s = settings
        policy = Policy(limit=s.message_chars, min_interval=s.edit_min_interval, stall_after=s.stall_seconds,
                        continue_chars=s.continue_chars,
                        stream_max_age=s.stream_max_seconds, native=s.delivery == "planner",
                        edits_only=s.delivery == "edits")
        self.governance = Governance.build(settings, store, gemini, slack, tasks.spawn)
        self.deps = TurnDeps(settings, store, gemini, slack, tasks.spawn, NameCache(slack, settings), policy,
                             self.governance)
        self.slots = asyncio.Semaphore(settings.max_concurrent_turns)
        # longer than a lease, so after a crash the survivor of the turn gets its thread first
        self.locks = ThreadLocks(self.turns.try_lock, ttl=self.lease * 3)
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._maintainer: asyncio.Task | None = None

    @property
    def lease(self) -> float:
        return self.settings.turn_lease_seconds

    # --- accepting and launching ----------------------------------------------------------------------
    async def accept(self, incoming: Incoming, bot_user_id: str | None) -> AcceptOutcome:
        """Journal a turn before the ack; launch it here when it is ours to run."""
        record = incoming.record(owner=self.owner, bot_user_id=bot_user_id, now=time.time())
        outcome = await self.turns.accept(record, role=incoming.role, lease=self.lease)
        if outcome is AcceptOutcome.RUN:
            self.launch(record)
        return outcome

    def launch(self, record: TurnRecord) -> None:
        lock_key = self.turns.lock_key(record.team, record.channel, record.chain_thread)
        turn = AnswerTurn(self.deps, record, TurnJournal(self.turns, record, self.owner, lock_key))
        running = self._running[record.id] = _Running(turn, lock_key)
        running.task = self.tasks.spawn(self._run(running), name=f"turn:{record.id}")

    async def _run(self, running: _Running) -> None:
        """One turn at a time per thread, at most SLACKBOT_MAX_CONCURRENT_TURNS in this process."""
        turn = running.turn
        try:
            async with self.locks.hold(running.lock_key, turn.record.id, turn.waiting_status):
                if self.slots.locked():  # this process is at SLACKBOT_MAX_CONCURRENT_TURNS: say so while waiting
                    await turn.waiting_status("Answering other questions first…")
                async with self.slots:
                    await turn.run()
        except (RedisError, OSError):
            log.warning("redis unavailable during a turn", extra=context(turn.record), exc_info=True)
            await turn.say(STORE_DOWN)
        finally:
            self._running.pop(turn.record.id, None)

    # --- leases and recovery ----------------------------------------------------------------------------
    def start(self) -> None:
        """Keep this process's leases from now until `close`."""
        self._maintainer = asyncio.create_task(self.maintain(self._stopping))

    async def close(self) -> None:
        """After the drain: turns it cut off come back to another replica once their lease runs out."""
        self._stopping.set()
        if self._maintainer:
            await asyncio.wait({self._maintainer}, timeout=5)

    async def maintain(self, stopping: asyncio.Event) -> None:
        """Renew this process's leases (one call), act on Stop requests, and finish dead processes' turns."""
        tick = max(0.2, min(self.lease / 3, 2.0))
        while not stopping.is_set():
            try:
                await self._renew()
                if self.tasks.accepting:
                    await self._recover()
            except (RedisError, OSError):
                log.warning("could not renew turn leases")
            try:
                await asyncio.wait_for(stopping.wait(), tick)
            except asyncio.TimeoutError:
                pass

    async def _renew(self) -> None:
        pairs = [(turn_id, r.lock_key) for turn_id, r in self._running.items()]
        stopped, lost = await self.turns.renew(self.owner, self.lease, self.locks.ttl, pairs)
        for turn_id in stopped:
            self._signal_stop(turn_id)
        for turn_id in lost:  # another replica took it over (we were too slow to renew): let it
            running = self._running.get(turn_id)
            if running and running.task:
                log.warning("lost a turn's lease; another replica finishes it", extra={"turn": turn_id})
                running.task.cancel()

    async def _recover(self) -> None:
        for turn_id in await self.turns.claim_due(self.owner, self.lease, limit=10):
            record = await self.turns.load(turn_id)
            if record is not None and turn_id not in self._running:
                metrics.TURNS_RECOVERED.inc()
                log.info("recovering a turn", extra={"turn": turn_id, "state": record.state})
                self.launch(record)

    async def end_team(self, team: str, wait: float) -> int:
        """An uninstall: this process's turns of that installation end at once and quietly (its token is
        gone, so nothing could reach Slack anyway); waits up to `wait` seconds for them. How many."""
        tasks = [r.task for r in self._running.values() if r.turn.record.team == team and r.task]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait)
        return len(tasks)

    # --- Stop ---------------------------------------------------------------------------------------------
    async def request_stop(self, turn_id: str, user: str) -> StopReply:
        """The Stop button: only the asker stops their answer, wherever it runs."""
        record = await self.turns.request_stop(turn_id, user)
        reply = stop_reply(known=record is not None, finished=record is not None and record.state == "done",
                           asker=record.user if record else "", clicker=user)
        if reply.stopping:
            self._signal_stop(turn_id)  # at once if it runs here; else its owner sees it within a tick
        return reply

    def _signal_stop(self, turn_id: str) -> None:
        running = self._running.get(turn_id)
        if running:
            running.turn.stop()
