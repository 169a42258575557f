"""Posting and editing Slack messages within Slack's limits, on one replica or several.

* `chat.update` is Tier 3 per workspace: every edit takes a token from one Redis token bucket per
  team (`edit:{team}`), shared by all answers and replicas. Intermediate edits queue fairly
  (longest-waiting answer first) and leave a small reserve untouched; final edits may use the
  reserve and skip the queue, so finished answers land first.
* `chat.postMessage` is about one per second per channel: one bucket per channel.
* A 429 that comes anyway (another app, a smaller real limit) pauses the whole bucket for
  Retry-After and slows its refill for a few minutes (`Store.penalize`).
* When Slack's side breaks mid-call (a 5xx, whatever its body: JSON, text/plain or an HTML page; a
  dropped connection), the call is tried again after a doubling pause, each try paying its budget,
  up to `SLACKBOT_SLACK_RETRY_ATTEMPTS` in a row; the outcome says the write may have happened
  (`unsure`), so a caller that posts looks before posting again. slack_sdk's own retry handlers
  (`http_retry`) are not used for this: the server-error one knows only 500 and 503, they sleep
  inside the call (no budget paid, the planner blind meanwhile) and re-send a post blind.
* If Redis is unreachable, pacing falls back to a slow local interval rather than failing answers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from collections import Counter
from typing import Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .. import metrics
from ..config import Settings
from ..store import Budget, RedisError, Store

log = logging.getLogger(__name__)

_FALLBACK_INTERVAL = 3.0  # seconds between edits per answer while Redis is away
_MAX_ATTEMPTS = 8
# Slack's own words for "our side broke, try again"
_SERVER_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_WIRE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)  # no answer at all


def slack_error(exc: SlackApiError) -> tuple[int, str]:
    """(HTTP status, error code) of a failed call, whatever its body: a 5xx from Slack's edge is
    text/plain (the SDK keeps a str) or an HTML page (the SDK keeps {}), not JSON with an `error`."""
    resp = exc.response
    status = int(getattr(resp, "status_code", 0) or 0)
    data = getattr(resp, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return status, str(error or (f"http_{status}" if status else "unknown"))


@dataclass(frozen=True)
class Outcome:
    """One budgeted Slack call: done (with its answer), or not made (wait = seconds until a token,
    or until a retry after Slack broke), or failed."""

    ok: bool
    wait: float = 0.0
    error: str = ""
    data: dict | None = None
    unsure: bool = False  # Slack broke mid-call (5xx, connection): the write may have happened


class SlackPoster:
    """Budgeted Slack writes for one workspace: every method's budget is a Redis bucket shared by replicas."""

    def __init__(self, client: AsyncWebClient, store: Store, settings: Settings, team: str):
        self.client = client
        self.store = store
        self.team = team
        self.retry_attempts, self.retry_backoff = settings.slack_retry_attempts, settings.slack_retry_backoff
        self._broken_tries: Counter[str] = Counter()  # method -> tries in a row that met a broken Slack
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
        return await self._call(method, bucket, channel, call)

    async def _call(self, method: str, bucket: str, channel: str, call: Callable[[], Awaitable]) -> Outcome:
        try:
            resp = await call()
        except SlackApiError as exc:
            return await self._failed(method, bucket, exc, channel)
        except _WIRE_ERRORS as exc:
            return self._broke(method, channel, type(exc).__name__)
        self._broken_tries.pop(method, None)
        return Outcome(True, data=resp.data if hasattr(resp, "data") else dict(resp))

    async def _failed(self, method: str, bucket: str, exc: SlackApiError, channel: str) -> Outcome:
        status, error = slack_error(exc)
        if status >= 500 or error in _SERVER_ERRORS:
            return self._broke(method, channel, error)
        if status == 429:
            resp = exc.response
            retry_after = float(resp.headers.get("Retry-After", resp.headers.get("retry-after", 1)) or 1)
            metrics.SLACK_429.labels(method).inc()
            log.warning("slack rate limited", extra={"method": method, "channel": channel, "retry_after": retry_after})
            try:
                await self.store.penalize(bucket, retry_after)
            except (RedisError, OSError):
                pass
            return Outcome(False, wait=retry_after, error="ratelimited")
        metrics.SLACK_ERRORS.labels(method, error).inc()
        log.warning("slack call failed", extra={"method": method, "channel": channel, "error": error})
        return Outcome(False, error=error)

    def _broke(self, method: str, channel: str, error: str) -> Outcome:
        """Slack broke mid-call: worth another try after a doubling pause, up to the setting's tries in
        a row; after that it counts as a refusal (no wait)."""
        self._broken_tries[method] += 1
        tries = self._broken_tries[method]
        metrics.SLACK_ERRORS.labels(method, error).inc()
        log.warning("slack call failed", extra={"method": method, "channel": channel, "error": error, "tries": tries})
        if tries >= self.retry_attempts:
            del self._broken_tries[method]
            return Outcome(False, error=error, unsure=True)
        return Outcome(False, wait=self.retry_backoff * 2 ** (tries - 1), error=error, unsure=True)

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

    async def post(self, channel: str, payload: dict | Callable[[], dict], thread_ts: str | None = None, *,
                   find: Callable[[dict], Awaitable[str | None]] | None = None) -> str | None:
        """chat.postMessage; returns the new ts, or None when Slack refused (logged).

        `payload` may be a function: it is called once the channel's token is granted, so a message
        that waited for its turn goes out with the newest text (often sparing a later edit).
        `find(body)`: after a try whose outcome is unknown, the ts of that message if Slack has it.
        """
        bucket = f"post:{self.team}:{channel}"
        for _ in range(_MAX_ATTEMPTS):
            await self._wait_for(bucket, self.post_budget)
            body = payload() if callable(payload) else payload
            out = await self._call("chat.postMessage", bucket, channel, lambda: self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, **body))
            if out.ok:
                return out.data["ts"]
            if out.unsure and find is not None and (ts := await find(body)):
                return ts
            if not await self._pause(out):
                return None
        return None

    async def edit(self, channel: str, ts: str, payload: dict | Callable[[], dict | None], *, member: str,
                   final: bool) -> Outcome:
        """chat.update paid from the workspace budget. A final edit retries until it lands (or the tries run out).

        `payload` may be a function called once the token is granted (newest text; None = nothing to
        change any more).
        """
        out = Outcome(False)
        for _ in range(_MAX_ATTEMPTS if final else 1):
            await self._wait_for(self.edit_bucket, self.edit_budget, member=member, priority=final)
            body = payload() if callable(payload) else payload
            if body is None:
                return Outcome(True)
            out = await self._call("chat.update", self.edit_bucket, channel, lambda: self.client.chat_update(
                channel=channel, ts=ts, **body))
            if out.ok or not await self._pause(out):
                return out
        return out

    @staticmethod
    async def _pause(out: Outcome) -> bool:
        """Before trying a failed call again: False = not worth it. After a 429 the bucket is paused
        already (the next token waits for it); after Slack broke, this caller waits its backoff."""
        if not out.wait:
            return False
        if out.error != "ratelimited":
            await asyncio.sleep(out.wait)
        return True
