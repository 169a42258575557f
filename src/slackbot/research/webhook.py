"""`POST /gemini/webhook`: Gemini calls it when a background interaction completes, fails or needs action.

A call is only a hint. Nothing in it is trusted: the bot reads the job id it put in `user_metadata`,
checks that the job exists and is waiting on that very interaction, and pokes it, so a worker polls it
now; the poll fetches the interaction from Gemini (the verification) and acts on what Gemini says.
Unknown jobs and odd bodies are ignored; a shared Redis budget caps the endpoint, so an
unauthenticated caller can at most cause one early poll of a job it guessed. Polling stays the fallback.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from ..store import RedisError
from ..store.budgets import Budget, BucketId
from ..store.jobs import JobStore

log = logging.getLogger(__name__)

PATH = "/gemini/webhook"
MAX_BODY = 64 * 1024  # a delivery is a few hundred bytes
BUDGET = Budget(20.0, 100.0)  # hints a second across all replicas: far above any real job rate
_BUCKET = BucketId("gemini.webhook", "-")


def hint_of(body: bytes) -> tuple[str, str]:
    """(job id, interaction id) out of a delivery; ("", "") when it is not one (pure)."""
    try:
        data = json.loads(body).get("data") or {}
        job = str((data.get("user_metadata") or {}).get("job") or "")
        return (job, str(data.get("id") or "")) if job.isalnum() and len(job) <= 64 else ("", "")
    except (ValueError, AttributeError):
        return "", ""


def routes(jobs: JobStore, budgets) -> list[web.RouteDef]:
    async def webhook(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413)
        try:
            if await budgets.take_now(_BUCKET, BUDGET):
                return web.Response(status=429, headers={"Retry-After": "1"})
            job_id, interaction_id = hint_of(await request.content.read(MAX_BODY))
            job = await jobs.get(job_id) if job_id else None
            if job is not None and interaction_id and job.interaction_id == interaction_id:
                await jobs.poke(job.id)  # the worker fetches the interaction and decides
            else:
                log.info("gemini webhook ignored (unknown job or interaction)")
        except (RedisError, OSError):
            return web.Response(status=503)  # Gemini retries; polling carries on meanwhile
        return web.Response(status=204)
    return [web.post(PATH, webhook)]


def config_for(public_url: str, job_id: str) -> dict | None:
    """The `webhook_config` of a job's interactions, when the bot has a public URL (pure)."""
    if not public_url:
        return None
    return {"uris": [public_url.rstrip("/") + PATH], "user_metadata": {"job": job_id}}
