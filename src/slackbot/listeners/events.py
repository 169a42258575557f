"""Events API: app mentions, thread replies and DMs become chat turns.

Intake runs as a global middleware, before Bolt acks: it decides in pure code whether an event is
a turn (`chat.intake.classify`), then, in one Redis script, refuses replies not for the bot (in threads
it is not part of, or people's threads it was only asked in) before journalling anything, claims the
message (so retries, duplicate event kinds and replicas answer it once) and journals the turn (so it is answered even if this process dies before
it is done). If Redis is unreachable it answers 503, so Slack redelivers later instead of the event
being silently dropped. A mention in a thread whose words start with `research` is claimed the same way
but starts a research job on that thread instead of a turn (research/thread.py).
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from .. import metrics
from ..chat.intake import Incoming, classify, installing_team
from ..research.decide import Request
from ..research.thread import NOT_ENABLED, ThreadAsk, mention_request
from ..slack_out import calls
from .agent import AGENT_EVENTS
from .governance import forget_thread, governance_event, is_forget
from ..store import RedisError
from ..store.turns import AcceptOutcome

log = logging.getLogger(__name__)

INSTALL_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})  # past the intake, to their own listener


def register(app: AsyncApp, services) -> None:
    @app.middleware
    async def intake(body, context, request, next):
        if body.get("type") != "event_callback":
            return await next()
        event = body.get("event")
        event = event if isinstance(event, dict) else {}  # signed but malformed: ignored like chatter
        kind = str(event.get("type", "unknown"))
        if kind in INSTALL_EVENTS:
            return await next()  # not a turn: listeners/installs.py
        where = {"team": body.get("team_id"), "channel": event.get("channel"), "event_id": body.get("event_id"),
                 "retry": request.headers.get("x-slack-retry-num", [None])[0]}
        team = installing_team(body, context.team_id)
        try:
            if await governance_event(event, team, services):
                metrics.EVENTS.labels(kind, "governance", team).inc()
                return BoltResponse(status=200, body="")
        except (RedisError, OSError):
            log.warning("redis unavailable; asking Slack to redeliver", extra=where, exc_info=True)
            return BoltResponse(status=503, body="")
        incoming = classify(event, context.bot_user_id, team, agent_tab=services.settings.agent_messaging)
        if incoming is not None and is_forget(incoming, context.bot_user_id):
            try:
                await forget_thread(incoming, services)
            except (RedisError, OSError):
                return BoltResponse(status=503, body="")
            metrics.EVENTS.labels(kind, "forget", team).inc()
            return BoltResponse(status=200, body="")
        if incoming is None:
            if kind in AGENT_EVENTS:  # not a turn: the agent surface's listeners (listeners/agent.py)
                metrics.EVENTS.labels(kind, "accepted", team).inc()
                return await next()
            metrics.EVENTS.labels(kind, "ignored", team).inc()
            return BoltResponse(status=200, body="")
        if not services.tasks.accepting:  # shutting down: let Slack give it to another replica
            return BoltResponse(status=503, body="")
        if (asked := research_mention(incoming, context.bot_user_id)) is not None:
            try:
                fresh = await services.store.turns.claim(incoming.team, incoming.channel, incoming.chain_thread,
                                                         incoming.ts)
            except (RedisError, OSError):
                return BoltResponse(status=503, body="")
            metrics.EVENTS.labels(kind, "research" if fresh else "duplicate", team).inc()
            if fresh:
                services.tasks.spawn(start_research(services, incoming, asked, context.bot_user_id),
                                     name=f"research-mention:{incoming.id}")
            return BoltResponse(status=200, body="")
        try:
            accepted = await services.lifecycle.accept(incoming, context.bot_user_id)
        except (RedisError, OSError):
            metrics.EVENTS.labels(kind, "redis_down", team).inc()
            log.warning("redis unavailable; asking Slack to redeliver", extra=where, exc_info=True)
            return BoltResponse(status=503, body="")
        if accepted is AcceptOutcome.NOT_OURS:
            metrics.EVENTS.labels(kind, "ignored", team).inc()  # a reply not for the bot (store/turns.py: presence)
            return BoltResponse(status=200, body="")
        if accepted is AcceptOutcome.SEEN:
            metrics.EVENTS.labels(kind, "duplicate", team).inc()
            log.info("duplicate event", extra=where)
            return BoltResponse(status=200, body="")
        metrics.EVENTS.labels(kind, "accepted", team).inc()
        content = {"text": incoming.text} if services.settings.log_content else {}
        log.info("slack event", extra={**where, "kind": incoming.kind, "thread_ts": incoming.chain_thread, **content})
        await next()

    async def acked(ack) -> None:  # the turn already runs (journalled and launched by the intake)
        await ack()

    app.event("app_mention")(acked)
    app.event("message")(acked)


def research_mention(incoming: Incoming, bot_user_id: str | None) -> Request | None:
    """A mention inside a thread whose words start with `research`: a research job on that thread (issue 22.6),
    not a chat turn."""
    if incoming.kind != "mention" or not incoming.in_existing_thread:
        return None
    return mention_request(incoming.text, bot_user_id)


async def start_research(services, incoming: Incoming, asked: Request, bot_user_id: str | None) -> None:
    if services.research is None:
        await services.slack.for_team(incoming.team).send(calls.ephemeral(
            incoming.channel, incoming.user, NOT_ENABLED, incoming.reply_thread_ts))
        return
    await services.research.start_in_thread(ThreadAsk(
        incoming.team, incoming.channel, incoming.chain_thread, incoming.user, asked.question, now=asked.now,
        max=asked.max, bot_user_id=bot_user_id or "", mention_ts=incoming.ts, files=incoming.files))
