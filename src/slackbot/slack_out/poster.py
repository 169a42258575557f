"""Posting and editing Slack messages within Slack's limits, on one replica or several.

* `chat.update` is Tier 3 per workspace: every edit takes a token from one Redis token bucket per
  team (`edit:{team}`), shared by all answers and replicas. Intermediate edits queue fairly
  (longest-waiting answer first) and leave a small reserve untouched; final edits may use the
  reserve and skip the queue, so finished answers land first.
* `chat.postMessage` is about one per second per channel: one bucket per channel.
* A 429 that comes anyway (another app, a smaller real limit) pauses the whole bucket for
  Retry-After and slows its refill for a few minutes (`Store.penalize`).
* If Redis is unreachable, pacing falls back to a slow local interval rather than failing answers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .. import metrics
from ..config import Settings
from ..store import Budget, RedisError, Store

log = logging.getLogger(__name__)

_FALLBACK_INTERVAL = 3.0  # seconds between edits per answer while Redis is away
_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Outcome:
    """One budgeted Slack call: done (with its answer), or not made (wait = seconds until a token), or failed."""

    ok: bool
    wait: float = 0.0
    error: str = ""
    data: dict | None = None


class SlackPoster:
    """Budgeted Slack writes for one workspace: every method's budget is a Redis bucket shared by replicas."""

    def __init__(self, client: AsyncWebClient, store: Store, settings: Settings, team: str):
        self.client = client
        self.store = store
        self.team = team
        self.edit_bucket = f"edit:{team}"
        self.edit_budget = Budget(settings.edit_budget_per_minute / 60.0, settings.edit_budget_burst,
                                  settings.edit_final_reserve)
        # one post a channel is kept for an answer's first message, so continuations never delay a sign of life
        self.post_budget = Budget(settings.post_per_channel_per_second, settings.post_burst, reserve=1.0)
        starts = Budget(settings.stream_starts_per_minute / 60.0, 3.0)
        self.budgets = {  # planner budget name -> (bucket, shape, priority)
            "edit": (self.edit_bucket, self.edit_budget, False),
            "edit:final": (self.edit_bucket, self.edit_budget, True),
            "start": (f"start:{team}", starts, False),
            "stop": (f"stop:{team}", starts, False),
            "append": (f"append:{team}", Budget(settings.stream_appends_per_minute / 60.0, 10.0), False),
            "status": (f"status:{team}", Budget(settings.status_per_minute / 60.0, 100.0), False),
        }

    def _budget(self, name: str, channel: str) -> tuple[str, Budget, bool]:
        if name in ("post", "post:first"):
            return f"post:{self.team}:{channel}", self.post_budget, name == "post:first"
        return self.budgets[name]

    async def attempt(self, budget: str, channel: str, method: str, call: Callable[[], Awaitable],
                      before: Callable[[], Awaitable] | None = None, queue_as: str | None = None) -> Outcome:
        """Make one Slack call if `budget` has a token now; never waits. A 429 pauses the bucket for everyone.

        `before` runs once the token is ours, just ahead of the call (the journal's record of intent).
        `queue_as`: take the token in turn (first come, first served, among takers that keep asking)
        rather than whoever asks first after a refill, so under load no answer is starved."""
        bucket, shape, priority = self._budget(budget, channel)
        try:
            if queue_as:
                wait = await self.store.take(bucket, shape, member=queue_as, priority=priority)
            else:
                wait = await self.store.take_now(bucket, shape, priority=priority)
        except (RedisError, OSError):
            wait = 0.0  # pacing is a courtesy; the answer matters more (Slack's 429 still guards)
        if wait > 0:
            return Outcome(False, wait=wait)
        if before is not None:
            await before()
        try:
            resp = await call()
        except SlackApiError as exc:
            return await self._failed(method, bucket, exc, channel)
        return Outcome(True, data=resp.data if hasattr(resp, "data") else dict(resp))

    async def _failed(self, method: str, bucket: str, exc: SlackApiError, channel: str) -> Outcome:
        resp = exc.response
        error = (resp.get("error") if resp is not None else None) or "unknown"
        if resp is not None and resp.status_code == 429:
            retry_after = float(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)) or 1)
            metrics.SLACK_429.labels(method).inc()
            log.warning("slack rate limited", extra={"method": method, "channel": channel, "retry_after": retry_after})
            try:
                await self.store.penalize(bucket, retry_after)
            except (RedisError, OSError):
                pass
            return Outcome(False, wait=retry_after, error="ratelimited")
        metrics.SLACK_ERRORS.labels(method, str(error)).inc()
        log.warning("slack call failed", extra={"method": method, "channel": channel, "error": error})
        return Outcome(False, error=str(error))

    async def _wait_for(self, bucket: str, budget: Budget, *, member: str | None = None, priority: bool = True,
                        give_up_after: float | None = None) -> bool:
        """Block until the bucket grants a token; False if that would take longer than give_up_after."""
        member = member or uuid.uuid4().hex[:12]  # a place of its own in the bucket's queue
        waited = 0.0
        while True:
            try:
                wait = await self.store.take(bucket, budget, member=member, priority=priority)
            except (RedisError, OSError):
                wait = 0.0
                await asyncio.sleep(_FALLBACK_INTERVAL)
            if wait <= 0:
                return True
            if give_up_after is not None and waited + wait > give_up_after:
                return False
            await asyncio.sleep(wait)
            waited += wait

    async def post(self, channel: str, payload: dict | Callable[[], dict], thread_ts: str | None = None) -> str | None:
        """chat.postMessage; returns the new ts, or None when Slack refused (logged).

        `payload` may be a function: it is called once the channel's token is granted, so a message
        that waited for its turn goes out with the newest text (often sparing a later edit).
        """
        for _ in range(_MAX_ATTEMPTS):
            await self._wait_for(f"post:{self.team}:{channel}", self.post_budget)
            body = payload() if callable(payload) else payload
            try:
                resp = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, **body)
                return resp["ts"]
            except SlackApiError as exc:
                if not await self._after_error("chat.postMessage", exc, channel):
                    return None
        return None

    async def edit(self, channel: str, ts: str, payload: dict | Callable[[], dict | None], *, member: str,
                   final: bool) -> bool:
        """chat.update paid from the workspace budget. A final edit retries until it lands.

        `payload` may be a function called once the token is granted (newest text; None = nothing to
        change any more).
        """
        attempts = _MAX_ATTEMPTS if final else 1
        for _ in range(attempts):
            await self._wait_for(self.edit_bucket, self.edit_budget, member=member, priority=final)
            body = payload() if callable(payload) else payload
            if body is None:
                return True
            try:
                await self.client.chat_update(channel=channel, ts=ts, **body)
                return True
            except SlackApiError as exc:
                if not await self._after_error("chat.update", exc, channel):
                    return False
        return False

    async def _after_error(self, method: str, exc: SlackApiError, channel: str) -> bool:
        """Log a Slack error with context; after a 429 the bucket is paused. True = worth retrying."""
        bucket = self.edit_bucket if method == "chat.update" else f"post:{self.team}:{channel}"
        return (await self._failed(method, bucket, exc, channel)).error == "ratelimited"
