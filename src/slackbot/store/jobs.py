"""Research job state: every job key and every transition of a job, in one place.

A job is a Redis hash (`job:{id}`) plus an entry in the due-time schedule (`jobs:due`, sharded:
schedule.py). Around them: a per-user set of running jobs (the concurrency cap), a per-user history
(`/research status`) and a short-lived claim per slash-command trigger (replays start nothing).

Every transition that two replicas (or a web process and a worker) could interleave is one Lua
script on the job's hash (its own Redis Cluster slot); the schedule entry moves in a second step,
ordered so that a crash between the two leaves only an entry that the next claim settles. Each script refuses to touch a job hash that no longer exists, so no transition can
resurrect a record (expired, or lost with Redis' data) as a half-empty hash without a TTL. The
schedule is the only key without a TTL; it drops ids whose job is gone whenever it meets them.

Delivery contract (what worker.py builds on): `claim` hands each due job to one owner and pushes its
due time forward by the lease; every later write checks that owner, so a worker whose lease lapsed
cannot post or overwrite anything; `finish` takes the job off the schedule in the same step (or,
while its status message still awaits its final edit, keeps it there as a retry: a worker restart
loses nothing; a job that ended but stayed scheduled is claimed once more and finished again), and `request_cancel` / `poke` only move a job that is still on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import redis.asyncio as aioredis

from .keys import JobKeys
from .schedule import NOW, Schedule

JOB_KEEP_SECONDS = 30 * 86400  # job records and per-user history: for /research status
TRIGGER_KEEP_SECONDS = 600  # Slack rejects a signed request older than 5 minutes; keep claims twice that
HISTORY_KEEP = 20  # jobs listed per user at most
AWAITING = "awaiting_approval"  # a job's status while its plan waits for the requester
APPROVED = "approved"  # the requester answered the plan; a worker sends that answer to the agent


@dataclass
class Job:
    """One research job as stored. Field names are the hash's field names."""

    id: str
    team: str
    channel: str
    requester: str
    question: str
    created: float
    updated: float = 0.0
    status: str = "starting"  # Gemini's status while running; then "posting"; then the outcome
    status_ts: str = ""  # the status message; the report goes in its thread (or in `thread_ts`)
    thread_ts: str = ""  # research on a thread (issue 22.6): status message and report go in that thread
    interaction_id: str = ""
    progress: str = ""  # Gemini's latest thought summary line (untrusted text)
    poll_interval: float = 0.0
    last_status_update: float = 0.0
    parts_posted: int = 0
    file_posted: bool = False
    finished: float = 0.0  # when it ended; 0 while running
    cancelled_by: str = ""
    owner: str = ""  # the worker holding (or last holding) its lease
    final_edit_pending: bool = False  # ended, but Slack has not yet taken the status message's last edit
    agent: str = ""  # the Deep Research agent this job runs
    phase: str = "research"  # "plan" while the agent drafts (or revises) its plan, then "research"
    plan: str = ""  # the agent's latest plan (untrusted text), shown for approval
    plan_ready: float = 0.0  # when the plan began waiting for the requester (the timeout counts from here)
    next_input: str = ""  # approved/edited: the next turn's words, sent by the worker chained onto the plan
    next_planning: bool = False  # that next turn asks for a revised plan (Edit plan) rather than the research
    research_started: float = 0.0  # when the research itself began (after approval): "took" counts from here
    figures_posted: int = 0  # charts/images uploaded into the thread (or given up on), in report order
    figures_failed: str = ""  # their numbers (1-based, comma separated) whose upload failed
    canvas_tried: bool = False  # canvases.create was (perhaps) sent: never again, so never a second canvas
    canvas_id: str = ""  # the report's canvas; the thread then holds one message pointing at it
    canvas_error: str = ""  # why the long report is in the thread instead (Slack's error code)
    earlier_ids: str = ""  # the job's interactions before `interaction_id` (its plans), comma separated
    report_ts: str = ""  # the report's messages in the thread, comma separated (forgetting deletes them)
    uploads: str = ""  # file ids of its figures and Markdown file in the thread, comma separated (likewise)
    adopted: bool = False  # follow-ups in the report's thread chain onto it (done once, after the last part)
    forgotten: bool = False  # its thread was forgotten: when it ends, whatever it made is deleted

    @property
    def interaction_ids(self) -> list[str]:
        """Every interaction the job made at Gemini, oldest first (forgetting deletes them all)."""
        return [i for i in (*self.earlier_ids.split(","), self.interaction_id) if i]

    @property
    def messages(self) -> list[str]:
        """The bot's messages of the job: its status message and the report's (forgetting deletes them)."""
        return [ts for ts in (self.status_ts, *self.report_ts.split(",")) if ts]

    @property
    def upload_ids(self) -> list[str]:
        return [f for f in self.uploads.split(",") if f]

    @property
    def reply_ts(self) -> str:
        """The thread the report, its figures and follow-ups go in: the asked-in thread, else the status
        message's own."""
        return self.thread_ts or self.status_ts

    @property
    def awaiting(self) -> bool:
        """The plan waits for the requester's Start, Edit plan or Cancel."""
        return not self.finished and self.status == AWAITING

    @property
    def running(self) -> bool:
        """Still researching: not ended and not already posting its report (Cancel applies)."""
        return not self.finished and self.status != "posting"

    def fields(self) -> dict[str, str]:
        return {k: _encode(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> "Job | None":
        """A job from its hash; None for a missing or half-written record (no id or question)."""
        if not raw.get("id") or "question" not in raw:
            return None
        values: dict = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            text = raw[f.name]
            if f.type == "float":
                values[f.name] = float(text or 0)
            elif f.type == "int":
                values[f.name] = int(float(text or 0))
            elif f.type == "bool":
                values[f.name] = text not in ("", "0", "False", "false")
            else:
                values[f.name] = text
        values.setdefault("created", 0.0)
        for name in ("team", "channel", "requester"):
            values.setdefault(name, "")
        return cls(**values)


def _encode(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


# Record a new job with its TTL. KEYS: job hash; ARGV: keep seconds, field, value, ...
_RECORD = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# Add a job to its requester's history (newest HISTORY_KEEP kept).
# KEYS: history zset; ARGV: id, created, keep seconds, history size
_HISTORY = """
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# The status message is up: remember it, so whoever ends the job can edit it.
# KEYS: job hash; ARGV: status_ts
_SET_STATUS_TS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status_ts', ARGV[1])
return 1
"""

# The agent started: remember the status message and interaction (the caller schedules the first poll).
# A Cancel pressed meanwhile is reported back (the caller cancels the agent at once).
# KEYS: job hash; ARGV: status_ts, interaction id, status
# Returns 0 if the job is gone or already ended (a worker gave up on its start), 1 if started,
# 2 if started but a cancel was requested.
_START = NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (tonumber(redis.call('HGET', KEYS[1], 'finished') or '') or 0) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'status_ts', ARGV[1], 'interaction_id', ARGV[2], 'status', ARGV[3], 'updated', now)
if (redis.call('HGET', KEYS[1], 'cancelled_by') or '') ~= '' then return 2 end
return 1
"""

# A forgotten job keeps no text and, still running, is cancelled (by its requester, as Cancel would be;
# not once its report is being posted: that report's thread is then mapped and deleted as forgotten).
# Never a fresh hash: a gone record stays gone. KEYS: job hash. Returns the record after, or {}.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'question', '(forgotten)', 'plan', '', 'progress', '', 'next_input', '',
           'forgotten', '1')
local j = redis.call('HMGET', KEYS[1], 'finished', 'status', 'cancelled_by', 'requester')
if (tonumber(j[1] or '') or 0) == 0 and j[2] ~= 'posting' and (j[3] or '') == '' then
  redis.call('HSET', KEYS[1], 'cancelled_by', j[4] or '')
end
return redis.call('HGETALL', KEYS[1])
"""

# A job that never got going (Slack refused the status message, Gemini refused the agent) ends.
# KEYS: job hash; ARGV: status, status_ts
_END_UNSTARTED = NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (tonumber(redis.call('HGET', KEYS[1], 'finished') or '') or 0) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished', now, 'updated', now)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'status_ts', ARGV[2]) end
return 1
"""

# After the schedule leased a due job to `owner`: record the owner, unless the job is gone (0: the
# caller takes it off the schedule; never a fresh hash holding only `owner`). KEYS: job; ARGV: owner
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return 1
"""

# Write job fields only while we still own the job (a lease that expired lost it).
# KEYS: job hash; ARGV: owner, record TTL in seconds ('' = keep), field, value, ...
# Returns 1 (written), 0 (not ours) or -1 (gone: the caller takes it off the schedule).
_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
if ARGV[2] ~= '' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 1
"""

# The requester asks to cancel. Only a running job (not ended, not posting its report) can be.
# KEYS: job hash; ARGV: user
# Returns {outcome, detail}: {'gone',''} | {'not_requester', requester} | {'over', status}
#         | {'requested', interaction id ('' while the agent is still starting)}
_REQUEST_CANCEL = """
local j = redis.call('HMGET', KEYS[1], 'id', 'requester', 'status', 'finished', 'interaction_id')
if not j[1] then return {'gone', ''} end
if j[2] ~= ARGV[1] then return {'not_requester', j[2] or ''} end
if (tonumber(j[4] or '') or 0) > 0 or j[3] == 'posting' then return {'over', j[3] or ''} end
redis.call('HSET', KEYS[1], 'cancelled_by', ARGV[1])
if j[3] == 'awaiting_approval' or j[3] == 'approved' then return {'waiting', ''} end
return {'requested', j[5] or ''}
"""

# The requester answers a plan waiting for approval: Start (next turn runs the research) or Edit plan
# (next turn revises the plan). Only while it waits, so a double click or a second replica acts once.
# KEYS: job hash; ARGV: user, next input, next_planning ('1'/'0')
# Returns {outcome, detail}: {'gone',''} | {'not_requester', requester} | {'over', status} | {'ok',''}
_ANSWER_PLAN = """
local j = redis.call('HMGET', KEYS[1], 'id', 'requester', 'status', 'finished', 'cancelled_by')
if not j[1] then return {'gone', ''} end
if j[2] ~= ARGV[1] then return {'not_requester', j[2] or ''} end
if (tonumber(j[4] or '') or 0) > 0 or j[3] ~= 'awaiting_approval' or (j[5] or '') ~= '' then
  return {'over', j[3] or ''}
end
redis.call('HSET', KEYS[1], 'status', 'approved', 'next_input', ARGV[2], 'next_planning', ARGV[3])
return {'ok', ''}
"""

# Per-user cap on concurrent research jobs. The set expires well after any job could still run.
# KEYS: slots set; ARGV: job id, cap, ttl
_RESERVE_SLOT = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class JobStore:
    """Research jobs in Redis. The only code that uses their keys (keys.JobKeys) and scripts."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "slackbot"):
        self.redis = redis
        self.keys = JobKeys(prefix)
        self.schedule = Schedule(redis, self.keys.all_due)
        self._record = redis.register_script(_RECORD)
        self._history = redis.register_script(_HISTORY)
        self._start = redis.register_script(_START)
        self._forget = redis.register_script(_FORGET)
        self._set_status_ts = redis.register_script(_SET_STATUS_TS)
        self._end_unstarted = redis.register_script(_END_UNSTARTED)
        self._take = redis.register_script(_TAKE)
        self._write = redis.register_script(_WRITE)
        self._request_cancel = redis.register_script(_REQUEST_CANCEL)
        self._answer_plan = redis.register_script(_ANSWER_PLAN)
        self._reserve_slot = redis.register_script(_RESERVE_SLOT)

    # --- the command ---------------------------------------------------------------------------
    async def claim_trigger(self, team: str, trigger: str) -> bool:
        """True exactly once per slash-command invocation: a replayed signed request starts nothing."""
        return bool(await self.redis.set(self.keys.trigger(team, trigger), "1", nx=True, ex=TRIGGER_KEEP_SECONDS))

    async def reserve_slot(self, team: str, user: str, job_id: str, cap: int, ttl: int) -> bool:
        return bool(await self._reserve_slot(keys=[self.keys.slots(team, user)], args=[job_id, cap, ttl]))

    async def release_slot(self, team: str, user: str, job_id: str) -> None:
        await self.redis.srem(self.keys.slots(team, user), job_id)

    async def record(self, job: Job, *, start_grace: float) -> None:
        """A new job (before the ack, so `/research status` lists it at once). It is due after
        `start_grace`: if its agent has not started by then, a worker ends it (its starter died)."""
        k = self.keys
        flat = [x for pair in job.fields().items() for x in pair]
        # scheduled first: a crash before the record leaves an entry the next claim drops
        await self.schedule.at(k.due(job.id), [job.id], start_grace)
        await self._record(keys=[k.job(job.id)], args=[JOB_KEEP_SECONDS, *flat])
        await self._history(keys=[k.history(job.team, job.requester)],
                            args=[job.id, job.created, JOB_KEEP_SECONDS, HISTORY_KEEP])

    async def set_status_ts(self, job_id: str, status_ts: str) -> bool:
        return bool(await self._set_status_ts(keys=[self.keys.job(job_id)], args=[status_ts]))

    async def start(self, job_id: str, *, status_ts: str, interaction_id: str, status: str,
                    first_poll_in: float) -> str:
        """The agent runs: schedule its first poll. Returns "started", "cancel" (Cancel was pressed
        while it started: cancel the agent now) or "gone" (the record vanished, or a worker already
        ended the job because its start took too long: cancel the agent)."""
        result = int(await self._start(keys=[self.keys.job(job_id)], args=[status_ts, interaction_id, status]))
        if result:
            await self.schedule.at(self.keys.due(job_id), [job_id], first_poll_in)
        return {0: "gone", 1: "started", 2: "cancel"}[result]

    async def end_unstarted(self, job_id: str, status: str, status_ts: str = "") -> bool:
        ended = bool(await self._end_unstarted(keys=[self.keys.job(job_id)], args=[status, status_ts]))
        await self.schedule.remove(self.keys.due(job_id), job_id)
        return ended

    async def forget(self, job_id: str) -> Job | None:
        """The job's thread was forgotten: its question, plan and progress go (the record stays, so
        `/research status` and the per-user cap keep counting it) and a job still running is cancelled.
        The record as it is now (None: gone), so the caller can delete what the job made."""
        flat = await self._forget(keys=[self.keys.job(job_id)])
        return Job.from_fields(dict(zip(flat[::2], flat[1::2]))) if flat else None

    async def get(self, job_id: str) -> Job | None:
        return Job.from_fields(await self.redis.hgetall(self.keys.job(job_id)))

    async def user_jobs(self, team: str, user: str, limit: int = 10) -> list[Job]:
        """The user's most recent jobs, newest first (records that expired are skipped)."""
        ids = await self.redis.zrevrange(self.keys.history(team, user), 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        jobs = [Job.from_fields(raw) for raw in await pipe.execute()] if ids else []
        return [j for j in jobs if j is not None]

    # --- the worker ----------------------------------------------------------------------------
    async def claim(self, owner: str, lease: float, limit: int = 10) -> list[str]:
        pairs = await self.schedule.claim(lease, limit)
        taken = await asyncio.gather(*(self._take(keys=[self.keys.job(j)], args=[owner]) for _, j in pairs))
        for (shard, job_id), ok in zip(pairs, taken):
            if not int(ok):
                await self.schedule.remove(shard, job_id)
        return [job_id for (_, job_id), ok in zip(pairs, taken) if int(ok)]

    async def write(self, job_id: str, owner: str, fields: dict, *, due_in: float | None = None) -> bool:
        """Update a job we own; with `due_in`, also its next poll. False: the lease moved on or it is gone."""
        return await self._owned_write(job_id, owner, fields, "" if due_in is None else str(due_in), "")

    async def finish(self, job_id: str, owner: str, fields: dict, *, retry_in: float | None = None) -> bool:
        """End a job we own: write its last fields and take it off the schedule; with `retry_in`, it
        stays scheduled that much later (its status message's final edit is pending)."""
        due = "-" if retry_in is None else str(retry_in)
        return await self._owned_write(job_id, owner, fields, due, str(JOB_KEEP_SECONDS))

    async def _owned_write(self, job_id: str, owner: str, fields: dict, due: str, ttl: str) -> bool:
        """`due`: '' keeps the schedule entry, '-' removes it, a number of seconds moves it."""
        flat = [x for k, v in fields.items() for x in (k, _encode(v))]
        written = int(await self._write(keys=[self.keys.job(job_id)], args=[owner, ttl, *flat]))
        shard = self.keys.due(job_id)
        if written < 0 or (written and due == "-"):
            await self.schedule.remove(shard, job_id)
        elif written and due:
            await self.schedule.at(shard, [job_id], float(due))
        return written > 0

    async def request_cancel(self, job_id: str, user: str) -> tuple[str, str]:
        """("gone", "") | ("not_requester", requester) | ("over", status) | ("requested", interaction id)
        | ("waiting", ""): a plan awaiting approval (nothing runs at Gemini; poke the job to end it)."""
        outcome, detail = await self._request_cancel(keys=[self.keys.job(job_id)], args=[user])
        return str(outcome), str(detail or "")

    async def answer_plan(self, job_id: str, user: str, next_input: str, *, revise: bool) -> tuple[str, str]:
        """The requester pressed Start (`revise` False) or submitted Edit plan: ("ok", "") then a worker
        sends `next_input` chained onto the plan; else as request_cancel ("gone", "not_requester", "over")."""
        outcome, detail = await self._answer_plan(keys=[self.keys.job(job_id)],
                                                  args=[user, next_input, "1" if revise else "0"])
        if str(outcome) == "ok":
            await self.poke(job_id)
        return str(outcome), str(detail or "")

    async def poke(self, job_id: str) -> None:
        """Poll this job now, if it is still on the schedule (XX: an ended job is never re-added)."""
        await self.redis.zadd(self.keys.due(job_id), {job_id: 0}, xx=True)
