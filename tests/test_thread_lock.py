"""One turn at a time per thread (chat/thread_lock.py), on real Redis: first come first served in a
process, each key's local lock dropped when unused, and a lock held by another replica waited for."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from conftest import eventually
from slackbot.chat.thread_lock import ThreadLocks
from slackbot.store.turns import TurnStore


@pytest.fixture
async def turns(redis_url, prefix):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield TurnStore(client, prefix, chain_ttl=600, dedup_ttl=600, journal_ttl=600)
    await client.aclose()


async def test_turns_of_one_thread_run_one_at_a_time_in_arrival_order(turns):
    locks = ThreadLocks(turns.try_lock, ttl=5, poll=(0.01, 0.05))
    key = turns.lock_key("T1", "C1", "1.0")
    order, waits, inside = [], [], []
    release = asyncio.Event()

    async def turn(n: int) -> None:
        async def waiting() -> None:
            waits.append(n)
        async with locks.hold(key, f"t{n}", waiting):
            inside.append(n)
            assert len(inside) == 1, "two turns of one thread at once"
            if n == 0:
                await release.wait()
            order.append(n)
            await turns.redis.delete(key)  # as the turn's end does (store.turns.done)
            inside.remove(n)

    tasks = [asyncio.create_task(turn(0))]
    await eventually(lambda: inside == [0], 5)
    for n in range(1, 5):
        tasks.append(asyncio.create_task(turn(n)))
        await eventually(lambda: n in waits, 5, message=f"turn {n} told it waits")
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and waits == [1, 2, 3, 4]
    assert len(locks) == 0, "the thread's local lock is dropped once nobody holds or waits for it"


async def test_the_local_lock_is_dropped_even_when_a_waiter_is_cancelled(turns):
    locks = ThreadLocks(turns.try_lock, ttl=5, poll=(0.01, 0.05))
    key = turns.lock_key("T1", "C1", "2.0")
    held, waiting = asyncio.Event(), asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold(key, "a", _nothing):
            held.set()
            await release.wait()
            await turns.redis.delete(key)

    async def second() -> None:
        async with locks.hold(key, "b", _set(waiting)):
            pass

    a = asyncio.create_task(first())
    await held.wait()
    b = asyncio.create_task(second())
    await waiting.wait()
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)
    assert len(locks) == 1, "still held by the first turn"
    release.set()
    await a
    assert len(locks) == 0


async def test_a_thread_held_by_another_replica_is_waited_for(turns):
    """Two processes: this one polls Redis (with backoff) until the other replica's lock is gone."""
    here = ThreadLocks(turns.try_lock, ttl=5, poll=(0.01, 0.05))
    key = turns.lock_key("T1", "C1", "3.0")
    assert await turns.try_lock(key, "other-replicas-turn", 5)
    told, entered = asyncio.Event(), asyncio.Event()

    async def turn() -> None:
        async with here.hold(key, "mine", _set(told)):
            entered.set()

    task = asyncio.create_task(turn())
    await told.wait()  # it saw the other replica's lock and said so
    assert await turns.redis.get(key) == "other-replicas-turn"
    await turns.redis.delete(key)  # the other replica's turn ends
    await asyncio.wait_for(entered.wait(), 5)
    await task
    assert not await turns.try_lock(key, "someone-else", 5), "the lock in Redis is now this turn's"
    assert len(here) == 0


async def test_a_survivor_takes_over_the_lock_its_turn_already_holds(turns):
    """The lock is held by a turn id: a replica finishing a dead process's turn does not wait behind it."""
    locks = ThreadLocks(turns.try_lock, ttl=5, poll=(0.01, 0.05))
    key = turns.lock_key("T1", "C1", "4.0")
    assert await turns.try_lock(key, "the-turn", 5)  # taken by the process that died
    waited = []

    async def waiting() -> None:
        waited.append(True)
    async with locks.hold(key, "the-turn", waiting):
        pass
    assert waited == []


async def _nothing() -> None:
    pass


def _set(event: asyncio.Event):
    async def on_wait() -> None:
        event.set()
    return on_wait
