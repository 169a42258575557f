"""/research: starting, listing and cancelling Deep Research jobs.

A job lives in Redis only (store/jobs.py: a hash plus an entry in one due-time schedule); the
worker (worker.py) claims due jobs with a lease. Nothing about a job lives in process memory, so
a killed process loses nothing and any replica can pick the job up.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Coroutine

from slack_sdk.webhook.async_client import AsyncWebhookClient

from .. import metrics
from ..chat.intake import installing_team
from ..chat.profiles_lookup import channel_name
from ..config import Settings
from ..gemini import Gemini, GeminiError
from ..governance.policy import Who
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway
from ..store import RedisError
from ..store.jobs import Job, JobStore
from . import decide, thread, webhook
from . import status as view

log = logging.getLogger(__name__)

USAGE = ("Usage: `/research <question>` starts a Deep Research job: the agent drafts a plan you can start, "
         "edit or cancel, then its report is posted in a thread you can keep asking in. `/research --now "
         "<question>` skips the plan, `/research --max <question>` uses the deeper agent, and "
         "`/research status` lists your jobs.")
STORE_DOWN = "I can't reach my job store right now. Please try again in a minute."
NOT_MEMBER = ("I'm not in this conversation, so I can't read its thread or post there. Invite me (`/invite @Gemini`) "
              "and try again.")


@dataclass
class ResearchDeps:
    """What research needs, handed in by app.build_services (research reaches into nothing else)."""

    settings: Settings
    jobs: JobStore
    gemini: Gemini
    slack: SlackGateway  # every Slack call, each paying its workspace's budget
    spawn: Callable[..., object]  # TaskTracker.spawn: work that outlives the Slack request
    adopt_thread: Callable[[Job], Awaitable[object]]  # follow-ups in the report thread chain onto the
    #                          research, and forgetting the thread forgets the job's interactions and report
    governance: object | None = None  # governance.Governance: the access policy and budgets (issue 24)
    names: object | None = None  # chat.context.NameCache: who said what, when a thread is the material


class Research:
    def __init__(self, deps: ResearchDeps):
        self.deps = deps
        self.settings = deps.settings
        self.jobs = deps.jobs
        self.gemini = deps.gemini
        self.slack = deps.slack

    def worker(self):
        from .worker import ResearchWorker

        return ResearchWorker(self)

    @property
    def start_grace(self) -> float:
        """Longest a healthy start can take (every Gemini attempt timing out, plus a lease): a job whose
        agent has not started by then lost its starter, and a worker ends it."""
        s = self.settings
        return s.gemini_timeout_seconds * (s.gemini_retry_attempts + s.gemini_connect_retries) + s.research_lease_seconds

    def webhook_for(self, job_id: str) -> dict | None:
        return webhook.config_for(self.settings.public_url, job_id)

    def spawn(self, coro: Coroutine, name: str) -> None:
        self.deps.spawn(coro, name=name)

    # --- /research ---------------------------------------------------------------------------
    async def handle_command(self, ack, command: dict, signature: str = "") -> None:
        text = (command.get("text") or "").strip()
        team, user = installing_team(command), command.get("user_id", "")  # an org-wide install: the org
        if not decide.parse_request(text).question:
            await ack(USAGE)
            return
        try:
            if text.lower() == "status":
                await ack(view.jobs_list(await self.jobs.user_jobs(team, user), now=time.time()))
                return
            # Slack signs each invocation once; the same signed request replayed within its 5-minute
            # window carries the same trigger_id. Claim it before acting, as events are claimed.
            trigger = command.get("trigger_id") or signature
            if trigger and not await self.jobs.claim_trigger(team, trigger):
                log.info("replayed slash command ignored", extra={"team": team, "user": user})
                await ack()
                return
            gov = self.deps.governance
            if gov and (line := await gov.admit_research(team, user, command.get("channel_id", ""))):
                await ack(line)
                return
            await self._begin(ack, command, team, user, decide.parse_request(text))
        except (RedisError, OSError):
            await ack(STORE_DOWN)

    async def _begin(self, ack, command: dict, team: str, user: str, request: decide.Request) -> None:
        channel = command.get("channel_id", "")
        agent = self.agent_for(team, channel, command.get("channel_name"), deeper=request.max)
        job = await self._record(team, user, channel, request, agent=agent)
        if job is None:
            await self._refund(team, user, channel)
            await ack(self.cap_line)
            return
        await ack()
        self.spawn(self._start(job, lambda text: self._tell(team, command, text)), name=f"research-start:{job.id}")

    def agent_for(self, team: str, channel: str, channel_name: str | None, *, deeper: bool) -> str:
        """The job's agent: the deeper one when asked (`--max`, the modal's option), else the channel
        profile's `research_agent`, else GEMINI_RESEARCH_AGENT."""
        s = self.settings
        if deeper:
            return s.research_max_agent
        profile = s.profile_map.for_channel(channel, channel_name, team)
        return (profile.research_agent if profile else None) or s.research_agent

    @property
    def cap_line(self) -> str:
        n = self.settings.research_max_per_user
        return f"You already have {n} research jobs running. Wait for one to finish, or cancel one, then try again."

    async def _record(self, team: str, user: str, channel: str, request: decide.Request, *, agent: str,
                      thread_ts: str = "") -> Job | None:
        """Take one of the person's slots and record the job (so `/research status` lists it at once);
        None when they are at SLACKBOT_RESEARCH_MAX_PER_USER."""
        s = self.settings
        job_id = secrets.token_hex(8)
        slot_ttl = int(s.research_max_minutes * 120) + 3600  # well past any job's end
        if not await self.jobs.reserve_slot(team, user, job_id, s.research_max_per_user, ttl=slot_ttl):
            return None
        now = time.time()
        planning = s.research_planning and not request.now
        job = Job(id=job_id, team=team, channel=channel, requester=user, question=request.question, created=now,
                  updated=now, poll_interval=s.research_poll_initial, last_status_update=now, agent=agent,
                  phase="plan" if planning else "research", research_started=0.0 if planning else now,
                  thread_ts=thread_ts)
        try:
            await self.jobs.record(job, start_grace=self.start_grace)
        except (RedisError, OSError):
            await self.release(job)
            raise
        return job

    async def _start(self, job: Job, tell: Callable[[str], Awaitable[object]],
                     material: Callable[[], Awaitable[tuple[object, str] | None]] | None = None) -> None:
        """Post the status message, start the agent, then put the job on the polling schedule. `tell`: one
        line to the requester alone; `material`: the agent's input when it is more than the question (a
        thread's messages and files; None when they could not be read)."""
        status = view.status_message(job, now=time.time())
        out = await self.slack.for_team(job.team).send(calls.post(job.channel, status, job.thread_ts or None))
        if not out.ok:
            await self._end_unstarted(job, "failed")
            await tell(view.cannot_post(out.error))
            return
        job.status_ts = out.ts
        await self.jobs.set_status_ts(job.id, job.status_ts)  # so a worker can end it if this process dies
        if self.deps.governance:  # forgetting the thread from now on cancels the job and deletes what it made
            await self.deps.governance.track_research(job)
        agent_input: object = job.question
        if material is not None:
            read = await material()
            if read is None:
                await self._end_unstarted(job, "failed")
                await self._edit_unstarted(job, thread.NO_READ)
                return
            agent_input, skipped = read
            if skipped:
                await tell(skipped)
        try:
            interaction_id, gemini_status = await self.gemini.start_research(
                agent_input, agent=job.agent, planning=job.phase == "plan", webhook=self.webhook_for(job.id))
        except GeminiError as exc:
            log.warning("research start failed", extra={"team": job.team, "channel": job.channel, "kind": exc.kind})
            await self._end_unstarted(job, "failed")
            await self._edit_unstarted(job, f"Gemini could not start the research. {view.RETRY_HINT}")
            return
        started = await self.jobs.start(job.id, status_ts=job.status_ts, interaction_id=interaction_id,
                                        status=gemini_status or "queued", first_poll_in=job.poll_interval)
        if started == "gone":  # the record vanished (Redis lost its data): stop the agent, say so
            await self.cancel_agent(job.id, interaction_id)
            return
        metrics.RESEARCH_JOBS.labels("started").inc()
        if started == "cancel":  # Cancel was pressed while the agent was starting
            await self.cancel_agent(job.id, interaction_id)
        log.info("research started", extra={"team": job.team, "channel": job.channel, "job": job.id,
                                             "interaction": interaction_id})

    async def _edit_unstarted(self, job: Job, note: str) -> None:
        await self.slack.for_team(job.team).send(calls.update(job.channel, job.status_ts, view.status_message(
            job, now=time.time(), note=note)), member=f"job-{job.id}")

    async def _end_unstarted(self, job: Job, status: str) -> None:
        job.status, job.finished = status, time.time()
        if await self.jobs.end_unstarted(job.id, status, job.status_ts):
            await self._refund(job.team, job.requester, job.channel)  # the agent never ran: nothing spent
        await self.release(job)
        metrics.RESEARCH_JOBS.labels(status).inc()

    async def _refund(self, team: str, user: str, channel: str) -> None:
        """Give back the estimate admission charged, for a job that never ran (capped, or never started)."""
        if self.deps.governance:
            await self.deps.governance.settle_research(team, user, channel, 0)

    async def release(self, job: Job) -> None:
        try:
            await self.jobs.release_slot(job.team, job.requester, job.id)
        except (RedisError, OSError):  # the slot set expires anyway
            log.warning("could not release a research slot", extra={"job": job.id})

    async def _tell(self, team: str, command: dict, text: str) -> None:
        out = await self.slack.for_team(team).send(calls.ephemeral(command.get("channel_id"), command.get("user_id"),
                                                                   text))
        if not out.ok and command.get("response_url"):  # e.g. not_in_channel: the response_url always works
            await AsyncWebhookClient(command["response_url"]).send(text=text, response_type="ephemeral")

    # --- research on a thread (issue 22.6): the "Research this thread" shortcut, a `research` mention ---
    async def open_thread_modal(self, body: dict, team: str) -> None:
        """The shortcut was run on a message: the modal asking the question, unless the click was seen before,
        the person is outside the access policy or the bot cannot read and post there (one line each)."""
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id", "")
        message = body.get("message") or {}
        thread_ts = str(message.get("thread_ts") or message.get("ts") or body.get("message_ts") or "")
        if not (user and channel and thread_ts):
            return
        slack = self.slack.for_team(team)
        gov = self.deps.governance
        try:
            trigger = str(body.get("trigger_id") or "")
            if not trigger or not await self.jobs.claim_trigger(team, trigger):
                return  # a replayed click: its modal is already open
            who = Who(team, user, (body.get("user") or {}).get("team_id") or team, channel, channel.startswith("D"))
            line = await gov.access.refusal(who, self.settings.profile_map.for_channel(channel, team=team)) if gov else ""
        except (RedisError, OSError):
            line = STORE_DOWN
        if not line and not await self._member(team, channel):
            line = NOT_MEMBER
        if line:
            await self._tell_clicker(team, body, channel, user, thread_ts, line)
            return
        s = self.settings
        modal = thread.ask_view(channel=channel, thread_ts=thread_ts, planning=s.research_planning,
                                max_agent=s.research_max_agent, files_max=s.files_max_count)
        await slack.send(calls.open_view(trigger, modal), tries=1)

    async def _member(self, team: str, channel: str) -> bool:
        out = await self.slack.for_team(team).send(calls.channel_info(channel), tries=1, give_up_after=2.0)
        return bool(out.ok and ((out.data or {}).get("channel") or {}).get("is_member"))

    async def _tell_clicker(self, team: str, body: dict, channel: str, user: str, thread_ts: str, line: str) -> None:
        """One line to whoever clicked: chat.postEphemeral, else the click's response_url (works where the bot
        is not a member)."""
        out = await self.slack.for_team(team).send(calls.ephemeral(channel, user, line, thread_ts), tries=1,
                                                   give_up_after=5.0)
        if not out.ok and body.get("response_url"):
            await AsyncWebhookClient(body["response_url"]).send(text=line, response_type="ephemeral")

    async def handle_thread_submission(self, body: dict, modal: dict, team: str, bot_user_id: str | None) -> None:
        """The modal was submitted (once per modal: a replayed submission starts nothing)."""
        channel, thread_ts, request = thread.submitted(modal)
        user = (body.get("user") or {}).get("id", "")
        try:
            if not (channel and modal.get("id")) or not await self.jobs.claim_trigger(team, f"view:{modal['id']}"):
                return
        except (RedisError, OSError):
            await self.slack.for_team(team).send(calls.ephemeral(channel, user, STORE_DOWN, thread_ts))
            return
        await self.start_in_thread(thread.ThreadAsk(team, channel, thread_ts, user, request.question, now=request.now,
                                                    max=request.max, bot_user_id=bot_user_id or ""))

    async def start_in_thread(self, ask: thread.ThreadAsk) -> None:
        """Research asked for in a thread (already claimed once): the same admission as `/research` (access
        policy and budget, then the per-user cap), then a job whose status message, report and follow-ups
        live in that thread and whose input is the thread's messages and files."""
        slack = self.slack.for_team(ask.team)

        async def tell(text: str) -> None:
            await slack.send(calls.ephemeral(ask.channel, ask.user, text, ask.thread_ts))

        names = self.deps.names.for_turn(ask.team)
        try:
            gov = self.deps.governance
            if gov and (line := await gov.admit_research(ask.team, ask.user, ask.channel)):
                await tell(line)
                return
            question = await names.readable(ask.question, ask.bot_user_id or None) if ask.question.strip() else ""
            request = decide.Request(question or thread.OPEN_QUESTIONS, now=ask.now, max=ask.max)
            name = await channel_name(slack, ask.channel) if self.settings.profile_map.needs_names else None
            agent = self.agent_for(ask.team, ask.channel, name, deeper=ask.max)
            job = await self._record(ask.team, ask.user, ask.channel, request, agent=agent, thread_ts=ask.thread_ts)
        except (RedisError, OSError):
            await tell(STORE_DOWN)
            return
        if job is None:
            await self._refund(ask.team, ask.user, ask.channel)
            await tell(self.cap_line)
            return
        await self._start(job, tell, lambda: thread.thread_input(slack, self.settings, names, ask, job.question,
                                                                 job.status_ts))

    # --- Cancel button ------------------------------------------------------------------------
    async def handle_cancel(self, body: dict, action: dict) -> None:
        job_id = str(action.get("value") or "")
        user = (body.get("user") or {}).get("id", "")
        try:
            outcome, detail = await self.jobs.request_cancel(job_id, user)
        except (RedisError, OSError):
            await self._whisper(body, user, STORE_DOWN)
            return
        if outcome == "gone":  # an orphaned status message (the record expired or Redis lost it)
            await self._whisper(body, user, view.ORPHANED)
        elif outcome == "not_requester":
            await self._whisper(body, user, view.cancel_refused(detail))
        elif outcome == "over":  # it ended (or is posting its report) just now; its status message says how
            await self._whisper(body, user, view.ALREADY_OVER)
        elif outcome == "waiting":  # a plan awaiting approval: nothing runs at Gemini; the worker ends it
            await self.jobs.poke(job_id)
        elif detail:
            await self.cancel_agent(job_id, detail)
        # "requested" without an interaction id: the agent is still being started, and _start cancels
        # it as soon as it is (store.start reports the request atomically)

    # --- Start / Edit plan ---------------------------------------------------------------------
    async def handle_start(self, body: dict, action: dict) -> None:
        """Start: the approved plan's research runs next (a worker sends the confirming turn)."""
        await self._answer_plan(body, str(action.get("value") or ""), view.START_WORDS, revise=False)

    async def handle_edit_submit(self, body: dict, job_id: str, text: str) -> None:
        """Edit plan's modal was submitted: its text goes to the agent as the next turn (a revised plan)."""
        await self._answer_plan(body, job_id, text.strip() or view.START_WORDS, revise=bool(text.strip()))

    async def open_edit(self, body: dict, action: dict) -> None:
        """Edit plan: the requester gets a modal holding the plan; anyone else one line saying whose it is."""
        user = (body.get("user") or {}).get("id", "")
        try:
            job = await self.jobs.get(str(action.get("value") or ""))
        except (RedisError, OSError):
            await self._whisper(body, user, STORE_DOWN)
            return
        if job is None:
            await self._whisper(body, user, view.ORPHANED)
        elif job.requester != user:
            await self._whisper(body, user, view.plan_refused(job.requester))
        elif not job.awaiting:
            await self._whisper(body, user, view.PLAN_OVER)
        else:
            await self.slack.for_team(job.team).send(
                calls.open_view(str(body.get("trigger_id") or ""), view.edit_view(job.id, job.plan, job.channel)),
                tries=1)

    async def _answer_plan(self, body: dict, job_id: str, words: str, *, revise: bool) -> None:
        user = (body.get("user") or {}).get("id", "")
        try:
            outcome, detail = await self.jobs.answer_plan(job_id, user, words, revise=revise)
        except (RedisError, OSError):
            await self._whisper(body, user, STORE_DOWN)
            return
        if outcome == "gone":
            await self._whisper(body, user, view.ORPHANED)
        elif outcome == "not_requester":
            await self._whisper(body, user, view.plan_refused(detail))
        elif outcome == "over":
            await self._whisper(body, user, view.PLAN_OVER)

    async def cancel_agent(self, job_id: str, interaction_id: str) -> None:
        try:
            await self.gemini.cancel(interaction_id)
        except GeminiError as exc:
            log.warning("research cancel failed", extra={"job": job_id, "kind": exc.kind})
        await self.jobs.poke(job_id)  # the worker notices at once and writes the final status

    async def _whisper(self, body: dict, user: str, text: str) -> None:
        """An ephemeral answer to a click: chat.postEphemeral, else the click's response_url."""
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        team = installing_team(body, (body.get("user") or {}).get("team_id"))
        thread_ts = (body.get("message") or {}).get("thread_ts")  # a status message in a thread: answer there
        if (await self.slack.for_team(team).send(calls.ephemeral(channel, user, text, thread_ts))).ok:
            return
        if body.get("response_url"):
            await AsyncWebhookClient(body["response_url"]).send(text=text, response_type="ephemeral",
                                                                replace_original=False)
