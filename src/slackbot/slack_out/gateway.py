"""The one Slack gateway: every Web API call the bot makes goes through here and pays its own budget.

* Which budget a method pays is one table (calls.budgets); the buckets are Redis token buckets in
  the store (store.budgets), shared by every replica. A method missing from the table cannot be
  called. `chat.update` is one bucket per workspace: intermediate edits queue fairly and leave a
  reserve that final edits may use; `chat.postMessage` is one bucket per channel.
* A 429 that comes anyway (another app, a smaller real limit) pauses the whole bucket for
  Retry-After and slows its refill for a few minutes.
* When Slack's side breaks mid-call (a 5xx, whatever its body: JSON, text/plain or an HTML page; a
  dropped connection), the outcome says the write may have happened (`unsure`) and when to try
  again: a doubling pause, up to `SLACKBOT_SLACK_RETRY_ATTEMPTS` in a row, each try paying its
  budget; after that it counts as a refusal. slack_sdk's own retry handlers are not used: the
  server-error one knows only 500 and 503, they sleep inside the call (no budget paid, the planner
  blind meanwhile) and re-send a post blind.
* Two ways to pay. `now`: a token now or the seconds until one, never waiting (the delivery
  planner decides what to do meanwhile); `take` then `call` is the same split in two, for a caller
  that journals its intent once the token is its own. `send`: waits its turn for a token and tries
  again while Slack rate-limits or breaks (posts, edits, notices, reads).
* If Redis is unreachable, pacing is a courtesy: `now` goes ahead, `send` waits a slow local interval.
* Per workspace: `SlackGateway.for_team(team)` is one workspace's view; its client comes from a token
  resolver (today the one bot token; an install store can give each workspace its own).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import Awaitable, Callable, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from .. import metrics
from ..config import Settings
from ..store import RedisError
from ..store.budgets import Budget, BucketId, BudgetStore
from .calls import Outcome, Per, Request, budgets

log = logging.getLogger(__name__)

_FALLBACK_INTERVAL = 3.0  # seconds between sends while Redis is away
MAX_TRIES = 8
# Slack's own words for "our side broke, try again"
_SERVER_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_WIRE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)  # no answer at all
_SDK_NAMES = {"files.completeUploadExternal": "files_upload_v2"}  # the SDK's three-step upload

FindSent = Callable[[Request], Awaitable[str | None]]  # after an unsure post: the ts of that message if Slack has it


class TokenResolver(Protocol):
    async def client_for(self, team: str) -> AsyncWebClient: ...


class OneToken:
    """Every workspace (there is one) speaks with the bot token of the settings."""

    def __init__(self, client: AsyncWebClient):
        self.client = client

    async def client_for(self, team: str) -> AsyncWebClient:
        return self.client


class SlackGateway:
    def __init__(self, settings: Settings, budgets_store: BudgetStore, tokens: TokenResolver,
                 app_client: AsyncWebClient):
        self.settings = settings
        self.budgets = budgets_store
        self.table = budgets(settings)
        self.tokens = tokens
        self.app_client = app_client  # for start-up calls, which belong to no workspace

    @classmethod
    def with_bot_token(cls, settings: Settings, budgets_store: BudgetStore, client: AsyncWebClient) -> SlackGateway:
        return cls(settings, budgets_store, OneToken(client), client)

    def for_team(self, team: str) -> WorkspaceSlack:
        return WorkspaceSlack(self, team)

    async def start_up(self, req: Request) -> dict:
        """auth.test, apps.connections.open: no workspace, no budget; raises the SDK's errors
        (startup.py waits them out and names a refused token)."""
        if self.table[req.method].per is not Per.START_UP:
            raise ValueError(f"{req.method} pays a workspace budget: call it through for_team()")
        return (await _sdk_call(self.app_client, req)).data


class WorkspaceSlack:
    """One workspace's Slack: every call pays that workspace's budgets. One view per task (an answer,
    a research step): it counts Slack's breakages in a row for its own calls."""

    def __init__(self, gateway: SlackGateway, team: str):
        self.gateway = gateway
        self.team = team
        self.retry_attempts = gateway.settings.slack_retry_attempts
        self.retry_backoff = gateway.settings.slack_retry_backoff
        self._broken_tries: Counter[str] = Counter()  # method -> tries in a row that met a broken Slack

    def _bucket(self, req: Request) -> tuple[BucketId, Budget]:
        pays = self.gateway.table[req.method]
        if pays.budget is None:
            raise ValueError(f"{req.method} is a start-up call: SlackGateway.start_up")
        scope = {Per.CHANNEL: req.channel, Per.PERSON: req.person}.get(pays.per)
        return BucketId(req.method, self.team, scope), pays.budget

    # --- paying ------------------------------------------------------------------------------------
    async def take(self, req: Request, *, priority: bool = False, queue_as: str | None = None) -> float:
        """A token for this call now (0.0), else the seconds until one; never waits. `queue_as`: take it
        in turn among takers that keep asking (first come, first served), so no answer is starved."""
        bucket, shape = self._bucket(req)
        try:
            if queue_as:
                return await self.gateway.budgets.take(bucket, shape, member=queue_as, priority=priority)
            return await self.gateway.budgets.take_now(bucket, shape, priority=priority)
        except (RedisError, OSError):
            return 0.0  # pacing is a courtesy; the answer matters more (Slack's 429 still guards)

    async def now(self, req: Request, *, priority: bool = False, queue_as: str | None = None) -> Outcome:
        """The call if its budget has a token now; else not made, with the wait."""
        wait = await self.take(req, priority=priority, queue_as=queue_as)
        return Outcome(False, wait=wait) if wait > 0 else await self.call(req)

    async def send(self, req: Request, *, member: str | None = None, priority: bool = True,
                   tries: int = MAX_TRIES, give_up_after: float | None = None, find: FindSent | None = None) -> Outcome:
        """The call, waiting in turn for its token (at most `give_up_after` seconds) and trying again
        after a 429 or while Slack breaks, up to `tries` calls. `find`: after a try whose outcome is
        unknown, the ts of the message if Slack has it (so a post is not made twice)."""
        out = Outcome(False)
        for _ in range(tries):
            if (wait := await self._wait_for(req, member, priority, give_up_after)) > 0:
                return Outcome(False, wait=wait)
            out = await self.call(req)
            if out.ok:
                return out
            if out.unsure and find is not None and (ts := await find(req)):
                return Outcome(True, data={"ts": ts})
            if not await _pause(out):
                return out
        return out

    async def _wait_for(self, req: Request, member: str | None, priority: bool, give_up_after: float | None) -> float:
        """0.0 once the bucket granted a token, else the wait that would have passed `give_up_after`."""
        bucket, shape = self._bucket(req)
        member = member or uuid.uuid4().hex[:12]  # a place of its own in the bucket's queue
        waited = 0.0
        while True:
            try:
                wait = await self.gateway.budgets.take(bucket, shape, member=member, priority=priority)
            except (RedisError, OSError):
                wait = 0.0
                await asyncio.sleep(_FALLBACK_INTERVAL)
            if wait <= 0:
                return 0.0
            if give_up_after is not None and waited + wait > give_up_after:
                return wait
            await asyncio.sleep(wait)
            waited += wait

    async def bot_token(self) -> str:
        """This workspace's bot token, for what is not a Web API call (downloading files people share)."""
        return (await self.gateway.tokens.client_for(self.team)).token or ""

    # --- calling -----------------------------------------------------------------------------------
    async def call(self, req: Request) -> Outcome:
        """The Web API call itself, its token already paid (take/now/send)."""
        try:
            resp = await _sdk_call(await self.gateway.tokens.client_for(self.team), req)
        except SlackApiError as exc:
            return await self._failed(req, exc)
        except _WIRE_ERRORS as exc:
            return self._broke(req, type(exc).__name__)
        except SlackClientError as exc:  # e.g. an upload the SDK could not complete
            return self._refused(req, type(exc).__name__)
        self._broken_tries.pop(req.method, None)
        return Outcome(True, data=resp.data if isinstance(resp.data, dict) else {})

    async def _failed(self, req: Request, exc: SlackApiError) -> Outcome:
        status, error = slack_error(exc)
        if status >= 500 or error in _SERVER_ERRORS:
            return self._broke(req, error)
        if status == 429:
            headers = exc.response.headers or {}
            retry_after = float(headers.get("Retry-After", headers.get("retry-after", 1)) or 1)
            metrics.SLACK_429.labels(req.method).inc()
            log.warning("slack rate limited", extra={"method": req.method, "channel": req.channel,
                                                     "retry_after": retry_after})
            try:
                await self.gateway.budgets.penalize(self._bucket(req)[0], retry_after)
            except (RedisError, OSError):
                pass
            return Outcome(False, wait=retry_after, error="ratelimited")
        return self._refused(req, error)

    def _refused(self, req: Request, error: str) -> Outcome:
        metrics.SLACK_ERRORS.labels(req.method, error).inc()
        log.warning("slack call failed", extra={"method": req.method, "channel": req.channel, "error": error})
        return Outcome(False, error=error)

    def _broke(self, req: Request, error: str) -> Outcome:
        """Slack broke mid-call: worth another try after a doubling pause, up to the setting's tries in
        a row; after that it counts as a refusal (no wait)."""
        self._broken_tries[req.method] += 1
        tries = self._broken_tries[req.method]
        metrics.SLACK_ERRORS.labels(req.method, error).inc()
        log.warning("slack call failed", extra={"method": req.method, "channel": req.channel, "error": error,
                                                "tries": tries})
        if tries >= self.retry_attempts:
            del self._broken_tries[req.method]
            return Outcome(False, error=error, unsure=True)
        return Outcome(False, wait=self.retry_backoff * 2 ** (tries - 1), error=error, unsure=True)


def slack_error(exc: SlackApiError) -> tuple[int, str]:
    """(HTTP status, error code) of a failed call, whatever its body: a 5xx from Slack's edge is
    text/plain (the SDK keeps a str) or an HTML page (the SDK keeps {}), not JSON with an `error`."""
    resp = exc.response
    status = int(getattr(resp, "status_code", 0) or 0)
    data = getattr(resp, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return status, str(error or (f"http_{status}" if status else "unknown"))


async def _sdk_call(client: AsyncWebClient, req: Request):
    method = getattr(client, _SDK_NAMES.get(req.method, req.method.replace(".", "_")))
    return await method(**req.args)


async def _pause(out: Outcome) -> bool:
    """Before trying a failed call again: False = not worth it. After a 429 the bucket is paused
    already (the next token waits for it); after Slack broke, this caller waits its backoff."""
    if not out.wait:
        return False
    if out.error != "ratelimited":
        await asyncio.sleep(out.wait)
    return True
