"""The job store's transitions on a real Redis: no transition resurrects a vanished job, a cancel never
re-schedules a finished one, the schedule sheds ids of gone jobs, and every key but the schedule has a TTL."""

from __future__ import annotations

import time

import pytest

from slackbot.store import Store
from slackbot.store.jobs import Job, JobStore

from conftest import open_store


@pytest.fixture(params=["redis", "cluster", "embedded"])
async def store(request, redis_url, prefix):
    """A real Redis node, a real 3-master Redis Cluster, and the sandbox's embedded store (fakeredis
    running the same Lua)."""
    if request.param == "embedded":
        from slackbot_sandbox.server import embedded_redis

        opened = Store(embedded_redis(), prefix, chain_ttl=60, dedup_ttl=60)
    elif request.param == "cluster":
        opened = await open_store(request.getfixturevalue("redis_cluster").url, prefix)
    else:
        opened = await open_store(redis_url, prefix)
    yield opened
    if request.param == "cluster":
        await opened.delete_prefix()  # the prefix fixture cleans the single node
    await opened.close()


@pytest.fixture
def jobs(store) -> JobStore:
    return store.jobs


def _job(job_id="j1", user="U_ALICE") -> Job:
    now = time.time()
    return Job(id=job_id, team="T1", channel="C1", requester=user, question="q", created=now, updated=now,
               poll_interval=1.0)


async def _started(jobs: JobStore, job_id="j1") -> Job:
    job = _job(job_id)
    await jobs.record(job, start_grace=60)
    assert await jobs.start(job_id, status_ts="1.1", interaction_id="v1_x", status="queued", first_poll_in=0) == "started"
    return job


async def test_claim_drops_a_vanished_job_and_never_recreates_its_hash(jobs):
    await _started(jobs)
    await jobs.redis.delete(jobs.keys.job("j1"))  # expired, or lost with Redis' data
    assert await jobs.claim("w-1", lease=5) == []
    assert not await jobs.redis.exists(jobs.keys.job("j1"))
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is None


async def test_owned_writes_refuse_a_vanished_job_and_unschedule_it(jobs):
    await _started(jobs)
    assert await jobs.claim("w-1", lease=5) == ["j1"]
    await jobs.redis.delete(jobs.keys.job("j1"))
    assert not await jobs.write("j1", "w-1", {"status": "in_progress"}, due_in=1)
    assert not await jobs.finish("j1", "w-1", {"status": "completed"})
    assert not await jobs.redis.exists(jobs.keys.job("j1"))
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is None


async def test_a_lapsed_lease_cannot_write(jobs):
    await _started(jobs)
    assert await jobs.claim("w-1", lease=0.01) == ["j1"]
    time.sleep(0.02)
    assert await jobs.claim("w-2", lease=5) == ["j1"]
    assert not await jobs.write("j1", "w-1", {"parts_posted": 1})
    assert await jobs.write("j1", "w-2", {"parts_posted": 1})
    assert (await jobs.get("j1")).parts_posted == 1


async def test_cancel_after_finish_never_reschedules(jobs):
    await _started(jobs)
    assert await jobs.claim("w-1", lease=5) == ["j1"]
    assert await jobs.finish("j1", "w-1", {"status": "completed", "finished": time.time()})
    assert await jobs.request_cancel("j1", "U_ALICE") == ("over", "completed")
    await jobs.poke("j1")
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is None
    assert await jobs.redis.ttl(jobs.keys.job("j1")) > 0


async def test_cancel_outcomes(jobs):
    assert await jobs.request_cancel("nope", "U_ALICE") == ("gone", "")
    job = _job()
    await jobs.record(job, start_grace=60)
    assert await jobs.request_cancel("j1", "U_BOB") == ("not_requester", "U_ALICE")
    assert await jobs.request_cancel("j1", "U_ALICE") == ("requested", "")  # agent still starting
    assert await jobs.start("j1", status_ts="1.1", interaction_id="v1_x", status="queued", first_poll_in=5) == "cancel"
    assert await jobs.request_cancel("j1", "U_ALICE") == ("requested", "v1_x")
    await jobs.poke("j1")
    assert await jobs.claim("w-1", lease=5) == ["j1"]  # poked: due now


async def test_start_of_a_vanished_job_schedules_nothing(jobs):
    assert await jobs.start("ghost", status_ts="1.1", interaction_id="v1_x", status="queued", first_poll_in=0) == "gone"
    assert await jobs.redis.zscore(jobs.keys.due("ghost"), "ghost") is None
    assert not await jobs.end_unstarted("ghost", "failed")
    assert not await jobs.redis.exists(jobs.keys.job("ghost"))


async def test_every_key_but_the_schedule_has_a_ttl(jobs, store):
    assert await jobs.claim_trigger("T1", "trig-1") and not await jobs.claim_trigger("T1", "trig-1")
    assert await jobs.reserve_slot("T1", "U_ALICE", "j1", cap=2, ttl=60)
    await _started(jobs)
    await jobs.claim("w-1", lease=5)
    await jobs.write("j1", "w-1", {"status": "in_progress"}, due_in=1)
    keys = await store.prefix_keys()
    assert len(keys) == 5
    for key in keys:
        ttl = await jobs.redis.ttl(key)
        assert (ttl == -1) if key == jobs.keys.due("j1") else (ttl > 0), key
    assert [j.id for j in await jobs.user_jobs("T1", "U_ALICE")] == ["j1"]


async def test_a_job_whose_starter_died_comes_due_and_cannot_start_after_it_ended(jobs):
    await jobs.record(_job(), start_grace=0)  # its starter died right after recording it
    assert await jobs.claim("w-1", lease=5) == ["j1"]
    assert await jobs.finish("j1", "w-1", {"status": "not_started", "finished": time.time()})
    # the starter was only slow after all: its start is refused, so it cancels the agent it made
    assert await jobs.start("j1", status_ts="1.1", interaction_id="v1_x", status="queued", first_poll_in=0) == "gone"
    assert not await jobs.end_unstarted("j1", "failed")
    assert (await jobs.get("j1")).status == "not_started"
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is None


async def test_a_job_that_never_got_going_leaves_the_schedule(jobs):
    await jobs.record(_job(), start_grace=60)
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is not None
    assert await jobs.set_status_ts("j1", "1.1")
    assert await jobs.end_unstarted("j1", "failed")
    assert await jobs.redis.zscore(jobs.keys.due("j1"), "j1") is None
    job = await jobs.get("j1")
    assert job.status == "failed" and job.finished > 0 and job.status_ts == "1.1"


async def test_an_ended_job_awaiting_its_final_status_edit_stays_scheduled_with_a_ttl(jobs):
    job = await _started(jobs)
    [claimed] = await jobs.claim("w1", lease=60)
    assert claimed == job.id
    assert await jobs.finish(job.id, "w1", {"status": "completed", "finished": time.time(),
                                            "final_edit_pending": True}, retry_in=0)
    assert (await jobs.get(job.id)).final_edit_pending
    assert await jobs.redis.ttl(jobs.keys.job(job.id)) > 0
    assert await jobs.claim("w2", lease=60) == [job.id], "a restarted worker finds the pending edit"
    assert await jobs.finish(job.id, "w2", {"final_edit_pending": False})
    assert await jobs.redis.zscore(jobs.keys.due(job.id), job.id) is None
    assert await jobs.request_cancel(job.id, "U_ALICE") == ("over", "completed")
