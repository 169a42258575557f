"""The research worker: polls running jobs until they end, then posts the report exactly once.

Why Redis primitives rather than arq/saq/taskiq: a research job is not a function call to run
once but a poll loop lasting up to 90 minutes whose state (interval, last status update, parts
already posted) must survive any process. A due-time sorted set with leases expresses that
directly: `claim` (one Lua script) hands each due job to one worker and pushes its due time
forward by the lease; if that worker dies, the lease runs out and another claims it. Every write
checks the job's `owner`, so a worker whose lease lapsed cannot post or overwrite anything.
Delivery: the report is posted part by part, each part counted in the job record right after
Slack accepts it; a crash can at worst repeat the one part that was in flight. The status message's
last edit (the outcome, no Cancel button) is a step of its own: until Slack takes it, the ended job
stays on the schedule with `final_edit_pending`, so a worker tries again later, even after a restart.

What each poll's answer means is decided in decide.py (pure); this module only carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid

from .. import metrics
from ..governance import audit
from ..gemini import GeminiError, ResearchSnapshot
from ..lookup.links import workspace_base
from ..slack_out import calls
from ..slack_out.calls import Outcome
from ..slack_out.gateway import MAX_TRIES
from ..slack_out.render import canvas_markdown, message_payload, sources_section, split_report
from ..store import RedisError
from ..store.jobs import APPROVED, AWAITING, Job
from . import decide
from . import status as view

log = logging.getLogger(__name__)

_TICK = 0.5  # seconds between claims; jobs themselves are polled at their own interval
_CONCURRENCY = 20


class ResearchWorker:
    def __init__(self, research):
        self.research = research
        self.settings = research.settings
        self.jobs = research.jobs
        self.gemini = research.gemini
        self.slack = research.slack
        self.id = f"w-{uuid.uuid4().hex[:10]}"
        self._claims = itertools.count(1)
        self._stopping = asyncio.Event()
        self._active: set[asyncio.Task] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        log.info("research worker started", extra={"worker": self.id})
        while not self._stopping.is_set():
            try:
                room = _CONCURRENCY - len(self._active)
                # each claim has its own owner token: if one step outlives its lease and this same
                # worker claims the job again, the old step's writes fail as a dead worker's would
                owner = f"{self.id}.{next(self._claims)}"
                ids = await self.jobs.claim(owner, self.settings.research_lease_seconds, room) if room else []
            except (RedisError, OSError):
                ids = []
                await asyncio.sleep(1)
            for job_id in ids:
                task = asyncio.create_task(self._step_safely(job_id, owner))
                self._active.add(task)
                task.add_done_callback(self._active.discard)
            try:
                await asyncio.wait_for(self._stopping.wait(), _TICK)
            except asyncio.TimeoutError:
                pass
        if self._active:
            await asyncio.wait(set(self._active), timeout=10)

    async def _step_safely(self, job_id: str, owner: str) -> None:
        try:
            await self.step(job_id, owner)
        except (RedisError, OSError):
            log.warning("redis unavailable while polling research", extra={"job": job_id})
        except Exception:  # keep the worker alive; the lease brings the job back
            log.exception("research step failed", extra={"job": job_id})

    # --- one poll of one job --------------------------------------------------------------------
    async def step(self, job_id: str, owner: str) -> None:
        job = await self.jobs.get(job_id)
        if job is None or job.owner != owner:
            return  # gone (claim already dropped it from the schedule) or claimed by another since
        if job.finished:  # ended; only its status message's last edit can be left to do
            if job.final_edit_pending:
                await self._final_status(job)
            else:
                await self.jobs.finish(job.id, job.owner, {})
            return
        if not job.interaction_id:  # due before its agent started: the process starting it died
            await self._finish(job, "not_started")
            return
        if job.forgotten and job.cancelled_by:  # its thread was forgotten: cancelled at Gemini, and maybe
            await self._finish(job, "cancelled")  # deleted there already (a poll would find it lost)
            return
        if job.status in (AWAITING, APPROVED):
            await self._plan_answered(job) if job.status == APPROVED else await self._plan_waiting(job)
            return
        max_seconds = self.settings.research_max_minutes * 60
        elapsed = time.time() - (job.research_started or job.created)
        try:
            snap = await self.gemini.research_snapshot(job.interaction_id)
        except GeminiError as exc:
            await self._carry_out(job, decide.after_error(exc.kind, elapsed, max_seconds), None)
            return
        if job.status == "posting":  # a previous owner died while posting: carry on
            await self._post_report(job, snap)
            return
        if job.phase == "plan" and snap.status == "completed":  # the plan is the answer: ask the requester
            await self._plan_ready(job, snap)
            return
        await self._carry_out(job, decide.after_snapshot(snap.status, elapsed, max_seconds), snap)

    async def _carry_out(self, job: Job, nxt: decide.Next, snap: ResearchSnapshot | None) -> None:
        if nxt.action == "report" and snap is not None:
            await self._post_report(job, snap)
        elif nxt.action == "finish":
            await self._finish(job, nxt.outcome, snap)
        elif nxt.action == "time_out":
            try:
                await self.gemini.cancel(job.interaction_id)
            except GeminiError:
                pass  # it ends on Gemini's side anyway; the user is told it timed out
            await self._finish(job, nxt.outcome, snap)
        elif snap is not None:
            await self._progress(job, snap)
        else:  # a transient failure: try again at the job's pace
            await self._reschedule(job, {})

    async def _progress(self, job: Job, snap: ResearchSnapshot) -> None:
        """Edit the status message when the status changes, else at a calm rate (elapsed time, progress)."""
        now = time.time()
        fields: dict = {"status": snap.status, "progress": snap.progress or job.progress, "updated": now}
        if decide.status_edit_due(old_status=job.status, new_status=snap.status, last_update=job.last_status_update,
                                  now=now, every=self.settings.research_status_every):
            job.status, job.progress = snap.status, fields["progress"]
            async with self._holding(job):  # the edit may wait for the workspace's edit budget
                await self._edit_status(job, final=False)
            fields["last_status_update"] = now
        await self._reschedule(job, fields)

    async def _reschedule(self, job: Job, fields: dict) -> None:
        s = self.settings
        current = job.poll_interval or s.research_poll_initial
        fields["poll_interval"] = decide.next_interval(current, initial=s.research_poll_initial,
                                                       backoff=s.research_poll_backoff, maximum=s.research_poll_max)
        await self.jobs.write(job.id, job.owner, fields, due_in=current)

    @contextlib.asynccontextmanager
    async def _holding(self, job: Job):
        """Keep the lease while waiting on Slack: a live worker that is merely slow must not have its job
        claimed again (its in-flight post would repeat). A dead worker stops renewing, so the lease
        still brings its job back."""
        lease = self.settings.research_lease_seconds

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                try:
                    if not await self.jobs.write(job.id, job.owner, {}, due_in=lease):
                        return  # lost the job after all: the owner-checked writes stop the rest
                except (RedisError, OSError):
                    pass  # try again at the next beat; the lease covers two missed beats

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the plan ------------------------------------------------------------------------------
    async def _plan_ready(self, job: Job, snap: ResearchSnapshot) -> None:
        """The agent's plan waits for the requester, durably: the job stays scheduled at its timeout, so
        a restart or another replica still has it (and ends it on time)."""
        now = time.time()
        fields = {"status": AWAITING, "plan": snap.text, "plan_ready": now, "updated": now, "last_status_update": now}
        if not await self.jobs.write(job.id, job.owner, fields, due_in=self._plan_timeout):
            return
        job.status, job.plan, job.plan_ready = AWAITING, snap.text, now
        async with self._holding(job):
            await self._edit_status(job, final=False)

    @property
    def _plan_timeout(self) -> float:
        return self.settings.research_plan_timeout_minutes * 60

    async def _plan_waiting(self, job: Job) -> None:
        """Due while the plan waits: Cancel was pressed, or the timeout passed, or a stray poke."""
        now = time.time()
        if job.cancelled_by:
            await self._finish(job, "cancelled")
        elif decide.plan_expired(plan_ready=job.plan_ready, now=now, timeout=self._plan_timeout):
            await self._finish(job, "plan_expired")
        else:
            await self.jobs.write(job.id, job.owner, {}, due_in=job.plan_ready + self._plan_timeout - now)

    async def _plan_answered(self, job: Job) -> None:
        """Start or Edit plan was pressed: send the requester's words chained onto the plan (the same
        chain, so the report follows the approved plan), then poll the new interaction."""
        if job.cancelled_by:
            await self._finish(job, "cancelled")
            return
        try:
            interaction_id, gemini_status = await self.gemini.start_research(
                job.next_input, agent=job.agent, planning=job.next_planning, previous_id=job.interaction_id,
                webhook=self.research.webhook_for(job.id))
        except GeminiError as exc:
            log.warning("research continue failed", extra={"job": job.id, "kind": exc.kind})
            await self._finish(job, "failed")
            return
        now = time.time()
        job.status, job.phase = gemini_status or "queued", "plan" if job.next_planning else "research"
        earlier = ",".join(job.interaction_ids)  # the plan it answered stays the job's, to forget with it
        fields = {"interaction_id": interaction_id, "earlier_ids": earlier, "status": job.status,
                  "phase": job.phase, "next_input": "",
                  "research_started": now, "updated": now, "poll_interval": self.settings.research_poll_initial,
                  "last_status_update": now}
        if not await self.jobs.write(job.id, job.owner, fields, due_in=self.settings.research_poll_initial):
            await self.research.cancel_agent(job.id, interaction_id)  # the lease moved on: not ours to run
            return
        fresh = await self.jobs.get(job.id)  # Cancel pressed while the agent started: it saw no agent to stop
        if fresh is not None and fresh.cancelled_by:
            await self.research.cancel_agent(job.id, interaction_id)
            return
        job.interaction_id, job.earlier_ids, job.research_started = interaction_id, earlier, now
        async with self._holding(job):
            await self._edit_status(job, final=False)

    # --- endings --------------------------------------------------------------------------------
    async def _post_report(self, job: Job, snap: ResearchSnapshot) -> None:
        lease = self.settings.research_lease_seconds
        if not await self.jobs.write(job.id, job.owner, {"status": "posting"}, due_in=lease):
            return
        long = len(snap.text) > self.settings.research_file_threshold
        slack = self.slack.for_team(job.team)
        async with self._holding(job):  # a post may wait out Slack's Retry-After, longer than the lease
            if not await self._post_figures(job, snap):
                return  # the lease moved on
            if long and not job.canvas_tried and not await self._make_canvas(job, snap):
                return  # the lease moved on
            payloads = await self._report_payloads(job, snap)
            for index in range(job.parts_posted, len(payloads)):
                out = await slack.send(calls.post(job.channel, payloads[index], job.reply_ts))
                posted = ",".join(filter(None, [job.report_ts, out.ts or ""]))
                if not out.ok or not await self.jobs.write(job.id, job.owner, {"parts_posted": index + 1,
                                                                                "report_ts": posted}, due_in=lease):
                    return  # Slack refused or the lease moved on; the next owner continues from here
                job.report_ts = posted
            if long and not job.canvas_id and not job.file_posted:
                await self._attach_file(job, snap)
        if not job.adopted:  # once: a takeover must not move the head back past a follow-up already chained
            await self.research.deps.adopt_thread(job)
            await self.jobs.write(job.id, job.owner, {"adopted": True})
        await self._finish(job, "completed", snap)

    async def _post_figures(self, job: Job, snap: ResearchSnapshot) -> bool:
        """Charts and images first, into the thread in report order and titled, so the report text can
        point at each (or say which failed). One try each, counted right after: a crash repeats at most
        the one in flight. False: the lease moved on."""
        slack = self.slack.for_team(job.team)
        for n in range(job.figures_posted + 1, len(snap.figures) + 1):
            figure = snap.figures[n - 1]
            name = view.figure_title(n, figure.title)
            extension = figure.mime_type.rpartition("/")[2].replace("jpeg", "jpg")[:4] or "png"
            out = await slack.send(calls.upload(job.channel, job.reply_ts, figure.data, f"figure-{n}.{extension}",
                                                name), tries=1)
            failed = job.figures_failed if out.ok else ",".join(filter(None, [job.figures_failed, str(n)]))
            uploads = _with_uploads(job.uploads, out)
            if not await self.jobs.write(job.id, job.owner, {"figures_posted": n, "figures_failed": failed,
                                                             "uploads": uploads}):
                return False
            job.figures_posted, job.figures_failed, job.uploads = n, failed, uploads
        return True

    async def _make_canvas(self, job: Job, snap: ResearchSnapshot) -> bool:
        """A long report becomes a canvas tab in the channel. Marked as tried before the one call, so a
        worker killed mid-call leaves a takeover posting messages, never a second canvas. False: not ours."""
        if not await self.jobs.write(job.id, job.owner, {"canvas_tried": True}):
            return False
        job.canvas_tried = True
        title = view.file_title(job.question)
        markdown = canvas_markdown(f"# {title}\n\n{_with_sources(snap, job)}")  # web text and a question: never markup
        out = await self.slack.for_team(job.team).send(calls.create_canvas(job.channel, title, markdown), tries=1)
        job.canvas_id = str((out.data or {}).get("canvas_id") or "") if out.ok else ""
        job.canvas_error = "" if out.ok else (out.error or "unknown")
        return await self.jobs.write(job.id, job.owner, {"canvas_id": job.canvas_id, "canvas_error": job.canvas_error})

    async def _report_payloads(self, job: Job, snap: ResearchSnapshot) -> list[dict]:
        """The thread's messages: one pointing at the canvas, else the report in parts (with one line
        saying why it is not a canvas when that was tried). Fixed by the job record, so a takeover
        continues the same list."""
        if job.canvas_id:
            return [{"text": view.canvas_pointer(view.file_title(job.question), await self._canvas_link(job))}]
        parts = report_parts(snap, self.settings.message_chars, job)
        if job.canvas_tried:
            parts[0] = f"{view.canvas_fallback(job.canvas_error)}\n\n{parts[0]}"
        return [message_payload(part) for part in parts]

    async def _canvas_link(self, job: Job) -> str:
        """Slack's canvas address: the workspace URL (from the status message's permalink) + /docs/team/id;
        "" when Slack will not say (the pointer then names the canvas tab instead)."""
        out = await self.slack.for_team(job.team).send(calls.get_permalink(job.channel, job.status_ts), tries=1)
        origin = workspace_base(str((out.data or {}).get("permalink") or "")) if out.ok else ""
        return f"{origin}/docs/{job.team}/{job.canvas_id}" if origin else ""

    async def _attach_file(self, job: Job, snap: ResearchSnapshot) -> None:
        # one try: the report is already in the thread, the file is a convenience, and a blind second
        # try of the SDK's three-call upload could attach it twice
        out = await self.slack.for_team(job.team).send(calls.upload(
            job.channel, job.reply_ts, _with_sources(snap, job), "research-report.md", view.file_title(job.question)),
            tries=1)
        job.uploads = _with_uploads(job.uploads, out)
        await self.jobs.write(job.id, job.owner, {"file_posted": True, "uploads": job.uploads})

    async def _finish(self, job: Job, status: str, snap: ResearchSnapshot | None = None) -> None:
        now = time.time()
        fields: dict = {"status": status, "finished": now, "updated": now, "final_edit_pending": True,
                        "poll_interval": 0}
        if snap and snap.progress:
            fields["progress"] = snap.progress
        # still scheduled: if this worker dies before the status message shows the end, another edits it
        if not await self.jobs.finish(job.id, job.owner, fields, retry_in=self.settings.research_lease_seconds):
            return
        job.status, job.finished, job.updated = status, now, now
        job.progress = fields.get("progress", job.progress)
        if status == "incomplete" and snap and snap.text.strip():
            await self._post_partial(job, snap)
        await self.research.release(job)
        metrics.RESEARCH_JOBS.labels(status).inc()
        metrics.RESEARCH_DURATION.observe(now - job.created)
        log.info("research finished", extra={"job": job.id, "status": status, "team": job.team,
                                              "channel": job.channel, "interaction": job.interaction_id})
        await self._govern(job, status, snap)
        job.poll_interval = 0.0
        await self._final_status(job)

    async def _govern(self, job: Job, status: str, snap: ResearchSnapshot | None) -> None:
        """Settle the job's reservation and write its audit line (once: only the finishing owner gets here)."""
        tokens = snap.tokens if snap else None
        gov = self.research.deps.governance
        if gov:
            await gov.settle_research(job.team, job.requester, job.channel, tokens)
            fresh = await self.jobs.get(job.id)
            if fresh is not None and fresh.forgotten:  # its thread was forgotten while it ran: none of it stays
                await gov.forget.owe(job.team, job.channel, fresh.reply_ts, fresh.interaction_ids, fresh.messages,
                                     fresh.upload_ids)
        if tokens:
            metrics.RESEARCH_TOKENS.labels(job.agent or self.settings.research_agent).inc(tokens)
        audit.record(self.settings, "research", team=job.team, user=job.requester, channel=job.channel,
                     thread=job.reply_ts, model=job.agent or self.settings.research_agent, outcome=status,
                     interactions=job.interaction_ids,
                     tokens={"tokens_total": tokens} if tokens is not None else {}, tools=["deep_research"],
                     text=job.question)

    async def _final_status(self, job: Job) -> None:
        """The status message shows the outcome without its Cancel button, once Slack takes the edit; while
        Slack keeps breaking, the job stays scheduled and this runs again at the poll pace."""
        out = await self._edit_status(job, final=True, note=view.outcome_note(job.status, job.cancelled_by))
        transient = out is not None and (out.unsure or out.error == "ratelimited")
        if not decide.final_edit_again(accepted=out is None or out.ok, transient=transient, finished=job.finished,
                                       now=time.time()):
            await self.jobs.finish(job.id, job.owner, {"final_edit_pending": False})
            return
        s = self.settings
        current = job.poll_interval or s.research_poll_initial
        later = decide.next_interval(current, initial=s.research_poll_initial, backoff=s.research_poll_backoff,
                                     maximum=s.research_poll_max)
        log.warning("research status message not final yet; trying again", extra={"job": job.id, "error": out.error})
        await self.jobs.finish(job.id, job.owner, {"poll_interval": later}, retry_in=current)

    async def _post_partial(self, job: Job, snap: ResearchSnapshot) -> None:
        slack = self.slack.for_team(job.team)
        parts = report_parts(snap, self.settings.message_chars)
        parts[0] = "_The research stopped early; here is what it had so far._\n\n" + parts[0]
        for part in parts:
            await slack.send(calls.post(job.channel, message_payload(part), job.reply_ts))

    async def _edit_status(self, job: Job, *, final: bool, note: str = "") -> Outcome | None:
        """None when there is no status message (its starter died before it was up)."""
        if not job.status_ts:
            return None
        payload = view.status_message(job, now=time.time(), note=note)
        return await self.slack.for_team(job.team).send(calls.update(job.channel, job.status_ts, payload),
                                                        member=f"job-{job.id}", priority=final,
                                                        tries=MAX_TRIES if final else 1)


def _with_sources(snap: ResearchSnapshot, job: Job | None = None) -> str:
    """The report as posted: figure pointers where the figures stood (given the job's uploads), sources."""
    text = snap.text
    if job is not None and snap.figures:
        failed = {int(n) for n in job.figures_failed.split(",") if n.isdigit()}
        text = view.with_figure_pointers(text, [(f.offset, f.title) for f in snap.figures], failed)
    if snap.citations and "sources" not in snap.text.lower()[-4000:]:
        return f"{text}\n\n{sources_section(snap.citations)}"
    return text


def report_parts(snap: ResearchSnapshot, limit: int, job: Job | None = None) -> list[str]:
    parts = split_report(_with_sources(snap, job), limit)
    return parts or ["_The research finished without a report._"]


def _with_uploads(uploads: str, out) -> str:
    """The job's upload ids (comma separated) with what this upload shared."""
    shared = [str(f["id"]) for f in (out.data or {}).get("files") or [] if out.ok and f.get("id")]
    return ",".join(filter(None, [uploads, *shared]))
