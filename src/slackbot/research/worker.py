"""The research worker: polls running jobs until they end, then posts the report exactly once.

Why Redis primitives rather than arq/saq/taskiq: a research job is not a function call to run
once but a poll loop lasting up to 90 minutes whose state (interval, last status update, parts
already posted) must survive any process. A due-time sorted set with leases expresses that
directly: `claim` (one Lua script) hands each due job to one worker and pushes its due time
forward by the lease; if that worker dies, the lease runs out and another claims it. Every write
checks the job's `owner`, so a worker whose lease lapsed cannot post or overwrite anything.
Delivery: the report is posted part by part, each part counted in the job hash right after Slack
accepts it; a crash can at worst repeat the one part that was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from .. import metrics
from ..gemini import GeminiError, ResearchSnapshot
from ..slack_out.render import message_payload, sources_section, split_report
from ..store import RedisError
from . import status as view

log = logging.getLogger(__name__)

FAILED_ENDINGS = {"failed", "cancelled", "incomplete", "budget_exceeded", "requires_action"}
_TICK = 0.5  # seconds between claims; jobs themselves are polled at their own interval
_CONCURRENCY = 20


class ResearchWorker:
    def __init__(self, research):
        self.research = research
        self.settings = research.settings
        self.store = research.store
        self.gemini = research.gemini
        self.client = research.client
        self.id = f"w-{uuid.uuid4().hex[:10]}"
        self._stopping = asyncio.Event()
        self._active: set[asyncio.Task] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        log.info("research worker started", extra={"worker": self.id})
        while not self._stopping.is_set():
            try:
                room = _CONCURRENCY - len(self._active)
                ids = await self.store.claim_jobs(self.id, self.settings.research_lease_seconds, room) if room else []
            except (RedisError, OSError):
                ids = []
                await asyncio.sleep(1)
            for job_id in ids:
                task = asyncio.create_task(self._step_safely(job_id))
                self._active.add(task)
                task.add_done_callback(self._active.discard)
            try:
                await asyncio.wait_for(self._stopping.wait(), _TICK)
            except asyncio.TimeoutError:
                pass
        if self._active:
            await asyncio.wait(set(self._active), timeout=10)

    async def _step_safely(self, job_id: str) -> None:
        try:
            await self.step(job_id)
        except (RedisError, OSError):
            log.warning("redis unavailable while polling research", extra={"job": job_id})
        except Exception:  # keep the worker alive; the lease brings the job back
            log.exception("research step failed", extra={"job": job_id})

    # --- one poll of one job --------------------------------------------------------------------
    async def step(self, job_id: str) -> None:
        job = await self.store.redis.hgetall(self.store.job_key(job_id))
        if not job or job.get("owner") != self.id:
            if not job:
                await self.store.redis.zrem(self.store.job_due_key, job_id)
            return
        if job.get("status") == "posting":  # a previous owner died while posting: carry on
            await self._post_report(job, await self.gemini.research_snapshot(job["interaction_id"]))
            return
        elapsed = time.time() - float(job["created"])
        try:
            snap = await self.gemini.research_snapshot(job["interaction_id"])
        except GeminiError as exc:
            if exc.kind == "not_found":
                await self._finish(job, "lost")
            elif elapsed > self.settings.research_max_minutes * 60:
                await self._finish(job, "timed_out")
            else:  # transient: the SDK already retried; try again at the job's pace
                await self._reschedule(job, {})
            return
        if snap.status == "completed":
            await self._post_report(job, snap)
        elif snap.status in FAILED_ENDINGS:
            await self._finish(job, snap.status, snap)
        elif elapsed > self.settings.research_max_minutes * 60:
            try:
                await self.gemini.cancel(job["interaction_id"])
            except GeminiError:
                pass
            await self._finish(job, "timed_out", snap)
        else:  # queued, in_progress, requires_continuation, or a status this code does not know yet
            await self._progress(job, snap)

    async def _progress(self, job: dict, snap: ResearchSnapshot) -> None:
        """Edit the status message when the status changes, else at a calm rate (elapsed time, progress)."""
        now = time.time()
        due_update = now - float(job.get("last_status_update") or 0) >= self.settings.research_status_every
        fields = {"status": snap.status, "progress": snap.progress or job.get("progress", ""), "updated": now}
        if due_update or snap.status != job.get("status"):
            job.update(fields)
            await self._edit_status(job, final=False)
            fields["last_status_update"] = now
        await self._reschedule(job, fields)

    async def _reschedule(self, job: dict, fields: dict) -> None:
        s = self.settings
        interval = min(s.research_poll_max, float(job.get("poll_interval") or s.research_poll_initial) * s.research_poll_backoff)
        fields["poll_interval"] = interval
        await self.store.write_job(job["id"], self.id, fields, due_in=float(job.get("poll_interval") or interval))

    # --- endings --------------------------------------------------------------------------------
    async def _post_report(self, job: dict, snap: ResearchSnapshot) -> None:
        if not await self.store.write_job(job["id"], self.id, {"status": "posting"},
                                          due_in=self.settings.research_lease_seconds):
            return
        parts = report_parts(snap, self.settings.message_chars)
        poster = self.research.services.turns.poster(job["team"])
        for index in range(int(job.get("parts_posted") or 0), len(parts)):
            ts = await poster.post(job["channel"], message_payload(parts[index]), job["status_ts"])
            if ts is None or not await self.store.write_job(job["id"], self.id, {"parts_posted": index + 1},
                                                            due_in=self.settings.research_lease_seconds):
                return  # Slack refused or the lease moved on; the next owner continues from here
        if len(snap.text) > self.settings.research_file_threshold and not job.get("file_posted"):
            await self._attach_file(job, snap)
        # follow-ups in the report thread chain onto the research interaction
        await self.store.move_head(job["team"], job["channel"], job["status_ts"], None, job["interaction_id"])
        await self._finish(job, "completed", snap)

    async def _attach_file(self, job: dict, snap: ResearchSnapshot) -> None:
        try:
            await self.client.files_upload_v2(
                channel=job["channel"], thread_ts=job["status_ts"], filename="research-report.md",
                title=f"Research: {job['question'][:80]}", content=_with_sources(snap),
            )
        except Exception as exc:  # the report is already in the thread; the file is a convenience
            log.warning("report file upload failed", extra={"job": job["id"], "error": str(exc)[:200]})
        await self.store.write_job(job["id"], self.id, {"file_posted": 1})

    async def _finish(self, job: dict, status: str, snap: ResearchSnapshot | None = None) -> None:
        now = time.time()
        fields = {"status": status, "finished": now, "updated": now}
        if snap and snap.progress:
            fields["progress"] = snap.progress
        if not await self.store.write_job(job["id"], self.id, fields, done=True):
            return
        job.update(fields)
        if status == "incomplete" and snap and snap.text.strip():
            await self._post_partial(job, snap)
        await self._edit_status(job, final=True, note=view.outcome_note(status, job.get("cancelled_by")))
        await self.research._release(job["team"], job["requester"], job["id"])
        metrics.RESEARCH_JOBS.labels(status).inc()
        metrics.RESEARCH_DURATION.observe(now - float(job["created"]))
        log.info("research finished", extra={"job": job["id"], "status": status, "team": job["team"],
                                              "channel": job["channel"], "interaction": job.get("interaction_id")})

    async def _post_partial(self, job: dict, snap: ResearchSnapshot) -> None:
        poster = self.research.services.turns.poster(job["team"])
        parts = report_parts(snap, self.settings.message_chars)
        parts[0] = "_The research stopped early; here is what it had so far._\n\n" + parts[0]
        for part in parts:
            await poster.post(job["channel"], message_payload(part), job["status_ts"])

    async def _edit_status(self, job: dict, *, final: bool, note: str = "") -> None:
        poster = self.research.services.turns.poster(job["team"])
        await poster.edit(job["channel"], job["status_ts"], view.status_message(job, now=time.time(), note=note),
                          member=f"job-{job['id']}", final=final)


def _with_sources(snap: ResearchSnapshot) -> str:
    if snap.citations and "sources" not in snap.text.lower()[-4000:]:
        return f"{snap.text}\n\n{sources_section(snap.citations)}"
    return snap.text


def report_parts(snap: ResearchSnapshot, limit: int) -> list[str]:
    parts = split_report(_with_sources(snap), limit)
    return parts or ["_The research finished without a report._"]
