"""/research: starting, listing and cancelling Deep Research jobs.

A job is a Redis hash (`job:{id}`) plus an entry in one due-time sorted set (`jobs:due`). The
worker (worker.py) claims due jobs with a lease; nothing about a job lives in process memory, so a
killed process loses nothing and any replica can pick the job up.
"""

from __future__ import annotations

import logging
import secrets
import time

from slack_sdk.errors import SlackApiError

from .. import metrics
from ..gemini import GeminiError
from ..store import JOB_KEEP_SECONDS, RedisError
from . import status as view

log = logging.getLogger(__name__)

USAGE = ("Usage: `/research <question>` starts a Deep Research job; its report is posted in a thread "
         "you can keep asking in. `/research status` lists your jobs.")
HISTORY_KEEP = 20


class Research:
    def __init__(self, services):
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.gemini = services.gemini
        self.client = services.client

    def worker(self):
        from .worker import ResearchWorker

        return ResearchWorker(self)

    # --- /research ---------------------------------------------------------------------------
    async def handle_command(self, ack, command: dict) -> None:
        text = (command.get("text") or "").strip()
        team, user = command.get("team_id", ""), command.get("user_id", "")
        if not text:
            await ack(USAGE)
            return
        if text.lower() == "status":
            await ack(view.jobs_list(await self.user_jobs(team, user), now=time.time()))
            return
        job_id = secrets.token_hex(8)
        try:
            reserved = await self.store.reserve_job_slot(team, user, job_id, self.settings.research_max_per_user,
                                                         ttl=int(self.settings.research_max_minutes * 120) + 3600)
        except (RedisError, OSError):
            await ack("I can't reach my job store right now. Please try again in a minute.")
            return
        if not reserved:
            await ack(f"You already have {self.settings.research_max_per_user} research jobs running. "
                      "Wait for one to finish, or cancel one, then try again.")
            return
        job = self._new_job(job_id, team, user, command.get("channel_id", ""), text)
        try:
            await self._record(job)  # before the ack, so `/research status` lists it at once
        except (RedisError, OSError):
            await self._release(team, user, job_id)
            await ack("I can't reach my job store right now. Please try again in a minute.")
            return
        await ack()
        self.services.tasks.spawn(self._start(job, command), name=f"research-start:{job_id}")

    def _new_job(self, job_id: str, team: str, user: str, channel: str, question: str) -> dict:
        now = time.time()
        return {"id": job_id, "team": team, "channel": channel, "requester": user, "question": question,
                "created": now, "updated": now, "status": "starting", "parts_posted": 0, "progress": "",
                "poll_interval": self.settings.research_poll_initial, "last_status_update": now}

    async def _start(self, job: dict, command: dict) -> None:
        """Post the status message, start the agent, then put the job on the polling schedule."""
        team, user, channel = job["team"], job["requester"], job["channel"]
        try:
            resp = await self.client.chat_postMessage(channel=channel, **view.status_message(job, now=time.time()))
        except SlackApiError as exc:
            await self._end_unstarted(job, "failed")
            await self._tell(command, _cannot_post(exc.response.get("error", "")))
            return
        job["status_ts"] = resp["ts"]
        try:
            interaction_id, gemini_status = await self.gemini.start_research(job["question"])
        except GeminiError as exc:
            log.warning("research start failed", extra={"team": team, "channel": channel, "kind": exc.kind})
            await self._end_unstarted(job, "failed")
            await self.services.turns.poster(team).edit(channel, job["status_ts"], view.status_message(
                job, now=time.time(), note=f"Gemini could not start the research. {view.RETRY_HINT}"),
                member=job["id"], final=True)
            return
        job.update(interaction_id=interaction_id, status=gemini_status or "queued")
        pipe = self.store.redis.pipeline(transaction=True)
        pipe.hset(self.store.job_key(job["id"]), mapping={"status_ts": job["status_ts"], "status": job["status"],
                                                          "interaction_id": interaction_id})
        pipe.zadd(self.store.job_due_key, {job["id"]: time.time() + float(job["poll_interval"])})
        await pipe.execute()
        metrics.RESEARCH_JOBS.labels("started").inc()
        if await self.store.redis.hget(self.store.job_key(job["id"]), "cancelled_by"):
            await self._cancel_started(job["id"], interaction_id)  # Cancel was pressed while starting
        log.info("research started", extra={"team": team, "channel": channel, "job": job["id"],
                                             "interaction": interaction_id})

    async def _record(self, job: dict) -> None:
        pipe = self.store.redis.pipeline(transaction=True)
        pipe.hset(self.store.job_key(job["id"]), mapping={k: str(v) for k, v in job.items()})
        pipe.expire(self.store.job_key(job["id"]), JOB_KEEP_SECONDS)
        history = self.store.user_history_key(job["team"], job["requester"])
        pipe.zadd(history, {job["id"]: float(job["created"])})
        pipe.zremrangebyrank(history, 0, -HISTORY_KEEP - 1)
        pipe.expire(history, JOB_KEEP_SECONDS)
        await pipe.execute()

    async def _end_unstarted(self, job: dict, status: str) -> None:
        job.update(status=status, finished=time.time())
        await self.store.redis.hset(self.store.job_key(job["id"]), mapping={"status": status,
                                                                          "finished": job["finished"]})
        await self._release(job["team"], job["requester"], job["id"])
        metrics.RESEARCH_JOBS.labels(status).inc()

    async def user_jobs(self, team: str, user: str) -> list[dict]:
        ids = await self.store.redis.zrevrange(self.store.user_history_key(team, user), 0, 9)
        jobs = [await self.store.redis.hgetall(self.store.job_key(i)) for i in ids]
        return [j for j in jobs if j]

    async def _release(self, team: str, user: str, job_id: str) -> None:
        try:
            await self.store.release_job_slot(team, user, job_id)
        except (RedisError, OSError):
            log.warning("could not release a research slot", extra={"job": job_id})

    async def _tell(self, command: dict, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(channel=command.get("channel_id"), user=command.get("user_id"),
                                                 text=text)
        except SlackApiError:  # e.g. not_in_channel: the slash command's response_url always works
            from slack_sdk.webhook.async_client import AsyncWebhookClient

            if command.get("response_url"):
                await AsyncWebhookClient(command["response_url"]).send(text=text, response_type="ephemeral")

    # --- Cancel button ------------------------------------------------------------------------
    async def handle_cancel(self, body: dict, action: dict) -> None:
        job_id = action.get("value") or ""
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        job = await self.store.redis.hgetall(self.store.job_key(job_id))
        if not job:
            return
        if user != job.get("requester"):
            try:
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=f"Only <@{job.get('requester')}> can cancel this research.")
            except SlackApiError as exc:
                log.warning("could not refuse a cancel", extra={"job": job_id, "error": exc.response.get("error")})
            return
        if job.get("status") not in view.RUNNING:
            return
        await self.store.redis.hset(self.store.job_key(job_id), mapping={"cancelled_by": user})
        if job.get("interaction_id"):
            await self._cancel_started(job_id, job["interaction_id"])
        # else the agent is still being started: _start sees cancelled_by and cancels it at once

    async def _cancel_started(self, job_id: str, interaction_id: str) -> None:
        try:
            await self.gemini.cancel(interaction_id)
        except GeminiError as exc:
            log.warning("research cancel failed", extra={"job": job_id, "kind": exc.kind})
        # the worker notices at once and writes the final status
        await self.store.redis.zadd(self.store.job_due_key, {job_id: time.time()})


def _cannot_post(error: str) -> str:
    if error in ("not_in_channel", "channel_not_found"):
        return ("I can't post in this channel. Invite me with `/invite @bot` (or run `/research` "
                "where I'm a member), then try again.")
    return "I couldn't post the research status message here, so I didn't start the research."
