"""Builds the Bolt app and the web server (Slack endpoint, health, readiness, metrics), and runs them."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from . import listeners, metrics
from .chat.lifecycle import TurnLifecycle
from .config import Settings
from .gemini import Gemini
from .installs import Installs
from .research import webhook as gemini_webhook
from .slack_out.gateway import OneToken, SlackGateway
from .startup import Readiness, listen, require_database, require_redis, socket_url, verify_bot_token
from .store import Store
from .tasks import TaskTracker

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    gemini: Gemini
    client: AsyncWebClient  # Bolt's own (its authorization and request-scoped helpers)
    slack: SlackGateway  # every Web API call the bot makes
    lifecycle: TurnLifecycle
    tasks: TaskTracker = field(default_factory=TaskTracker)
    research: object | None = None  # research.jobs.Research, when enabled
    installs: Installs | None = None  # OAuth mode: installations in PostgreSQL (else the one SLACK_BOT_TOKEN)
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    readiness: Readiness = field(default_factory=Readiness)

    async def close(self) -> None:
        await self.store.close()
        if self.installs:
            await self.installs.close()


async def build_services(settings: Settings, redis_client=None) -> Services:
    """`redis_client`: an already built async client (the sandbox's embedded store); else REDIS_URL
    (one node, a cluster or Sentinel: the store finds out which)."""
    from .research.jobs import Research, ResearchDeps  # research builds on the chat pieces

    ttls = {"chain_ttl": settings.chain_ttl_seconds, "dedup_ttl": settings.dedup_ttl_seconds,
            "journal_ttl": settings.journal_ttl_seconds}
    if redis_client is None:
        store = await Store.connect(settings.redis_url, settings.redis_prefix, **ttls,
                                    max_connections=settings.redis_max_connections,
                                    pool_timeout=settings.redis_pool_timeout)
    else:
        store = Store(redis_client, settings.redis_prefix, **ttls)
    # One code path for both modes: the gateway asks a token resolver for each workspace's client.
    installs = Installs(settings) if settings.oauth else None
    client = AsyncWebClient(token=settings.bot_token or None, base_url=settings.slack_api_url)
    slack = SlackGateway(settings, store.budgets, installs.tokens if installs else OneToken(client), client)
    gemini = Gemini(settings)
    tasks = TaskTracker()
    services = Services(settings, store, gemini, client, slack, TurnLifecycle(settings, store, gemini, slack, tasks),
                        tasks, readiness=Readiness(socket_mode=settings.socket_mode), installs=installs)
    services.research = Research(ResearchDeps(
        settings=settings, jobs=store.jobs, gemini=gemini, slack=slack,
        spawn=services.tasks.spawn, governance=services.lifecycle.governance,
        adopt_thread=services.lifecycle.governance.adopt_research,
        names=services.lifecycle.deps.names))
    return services


class _DropClientTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment even when given a client, then warns on every
    start that the token "will be unused" (slack_bolt/app/async_app.py: `token = token or
    os.environ.get("SLACK_BOT_TOKEN")`, then `if token is not None: warning_client_prioritized...`).
    Our client carries that same token, so the warning says nothing: drop exactly that message."""

    MESSAGE = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.MESSAGE


_bolt_log = logging.getLogger("slackbot.bolt")
_bolt_log.addFilter(_DropClientTokenWarning())


def build_bolt(services: Services) -> AsyncApp:
    s = services.settings
    app = AsyncApp(
        client=services.client,
        # Socket Mode needs no signing secret: "" keeps Bolt from reading SLACK_SIGNING_SECRET itself.
        signing_secret=s.signing_secret,
        request_verification_enabled=not s.socket_mode,
        logger=_bolt_log,
        # OAuth mode: Bolt authorises every event, command and action from the installation store
        oauth_settings=services.installs.oauth_settings() if services.installs else None,
    )
    listeners.register(app, services)
    return app


def build_web(services: Services, bolt: AsyncApp) -> web.Application:
    # POST /slack/events only with a signing secret to verify it by: Socket Mode receives events
    # over its WebSocket and runs without one (SignatureVerifier refuses an empty secret).
    verifier = SignatureVerifier(services.settings.signing_secret) if services.settings.signing_secret else None

    async def slack_events(request: web.Request) -> web.Response:
        # While shutting down, events get 503 (in the intake middleware) so Slack redelivers them to
        # another replica; commands and clicks are not retried by Slack, so they are still served.
        body, refusal = _authenticate(await request.read(), request.headers, verifier)
        if refusal is not None:
            log.warning("Slack request refused", extra={"status": refusal.status, "reason": refusal.text,
                                                        "bytes": request.content_length})
            return refusal
        try:
            bolt_resp = await bolt.async_dispatch(AsyncBoltRequest(body=body, query=request.query_string,
                                                                   headers=dict(request.headers)))
        except Exception:  # unparseable body: logged and acked, since a retry would fail the same way
            log.warning("malformed Slack request acked", extra={"bytes": len(body)})
            return web.Response(status=200, text="")
        if bolt_resp.status == 500:  # signed, but a shape Bolt can't handle (bolt_error logged it): same reasoning
            return web.Response(status=200, text="")
        return await to_aiohttp_response(bolt_resp)

    @bolt.error
    async def bolt_error(error: Exception) -> None:
        # Bolt logs a traceback for any exception in its middleware or a listener, and a signed payload of
        # an odd shape (an `event` or `actions` that is not what Slack sends) raises there. One line each;
        # the traceback only at DEBUG, for whoever is chasing a bug.
        log.warning("Slack request Bolt could not handle; acked",
                    extra={"error": f"{type(error).__name__}: {error}"[:200]})
        log.debug("Bolt error", exc_info=error)

    web_app = web.Application()
    web_app.add_routes([web.post("/slack/events", slack_events)] if verifier else [])
    if bolt.oauth_flow is not None:
        web_app.add_routes(oauth_routes(bolt))
    if services.settings.public_url:  # research jobs ask Gemini to call back here (a hint; polling stays)
        web_app.add_routes(gemini_webhook.routes(services.store.jobs, services.store.budgets))
    web_app.add_routes(health_routes(services))
    return web_app


def oauth_routes(bolt: AsyncApp) -> list[web.RouteDef]:
    """GET /slack/install ("Add to Slack") and /slack/oauth_redirect (Slack sends the installer back
    here with a code): Bolt's OAuth flow does both, as its own adapters do."""
    flow = bolt.oauth_flow

    async def install(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(_bolt_request(request, "")))

    async def redirect(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(_bolt_request(request, "")))

    return [web.get(flow.install_path, install), web.get(flow.redirect_uri_path, redirect)]


def _bolt_request(request: web.Request, body: str) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))


def _authenticate(raw: bytes, headers: Mapping[str, str], verifier: SignatureVerifier,
                  ) -> tuple[str, web.Response | None]:
    """The request body as text, or the 4xx that refuses it. Never raises on what a client sends.

    Slack always sends UTF-8 whatever the Content-Type's charset says, so the charset is ignored (a
    bogus one made aiohttp raise). The timestamp must be plain digits (the SDK's int() raised on "1.5"
    or "abc"), and the signature ASCII (hmac.compare_digest raises on anything else)."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12 and signature.isascii()):
        return "", web.Response(status=401, text="invalid signature")
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", web.Response(status=400, text="body is not UTF-8")
    if not verifier.is_valid(body, timestamp, signature):
        return "", web.Response(status=401, text="invalid signature")
    return body, None


def health_routes(services: Services) -> list[web.RouteDef]:
    """/healthz (alive), /readyz (Redis takes writes, Slack took the token and, in Socket Mode, the connection
    is up, not shutting down), /metrics: served by every process."""
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        # A write, not a ping: an out-of-memory or read-only Redis answers PING while every event gets 503.
        redis_ok = await services.store.writable()
        slack_ok = await services.readiness.slack()
        db = {"database": not await services.installs.unreachable()} if services.installs else {}
        ready = redis_ok and slack_ok and services.tasks.accepting and all(db.values())
        return web.json_response({"ok": ready, "redis": redis_ok, "slack": slack_ok, **db,
                                  "accepting": services.tasks.accepting}, status=200 if ready else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_page)]


async def serve(settings: Settings, *, with_worker: bool | None = None, stop: asyncio.Event | None = None,
                web_app_hook=None, redis_client=None) -> None:
    """Run until SIGTERM/SIGINT (or `stop`): web server, optional Socket Mode, optional research worker."""
    services = await build_services(settings, redis_client)
    runner = None
    try:
        await require_redis(services.store, settings.redis_url)
        await require_database(services.installs)
        bolt = build_bolt(services)
        web_app = build_web(services, bolt)
        if web_app_hook:
            web_app_hook(web_app, services)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        await listen(runner, settings, "choose another PORT, or stop what listens there")
        await _serve_until_stopped(services, bolt, stop or _stop_on_signals(), with_worker)
    finally:
        if runner:
            await runner.cleanup()
        await services.close()


async def _serve_until_stopped(services: Services, bolt: AsyncApp, stop: asyncio.Event,
                               with_worker: bool | None) -> None:
    settings = services.settings
    # /readyz stays red until Slack took the bot token (and the socket is up): a bad token stops here.
    # OAuth mode has no token of its own: each installation's is checked by Slack on use.
    services.readiness.token_ok = bool(services.installs) or await verify_bot_token(services.slack, stop)
    socket_handler = connecting = None
    if settings.socket_mode and services.readiness.token_ok:
        url = await socket_url(services.slack, settings.app_token, stop)
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        socket_handler = AsyncSocketModeHandler(bolt, settings.app_token)
        socket_handler.client.wss_uri = url  # None (stopped meanwhile): the SDK asks for one itself
        services.readiness.socket = socket_handler.client
        connecting = asyncio.create_task(socket_handler.connect_async())
    log.info("serving", extra={"port": settings.port, "socket_mode": settings.socket_mode})
    run_worker = settings.research_worker if with_worker is None else with_worker
    worker = services.research.worker() if run_worker else None
    worker_task = asyncio.create_task(worker.run()) if worker else None
    services.lifecycle.start()
    governance = _governance_worker(services)
    await stop.wait()
    governance.stop()
    await asyncio.wait({governance.task}, timeout=5)
    log.info("shutting down: no new events; letting answers in flight finish")
    services.tasks.accepting = False
    if worker:
        worker.stop()  # its leased jobs go back to the schedule for other workers
    if socket_handler:
        connecting.cancel()
        await socket_handler.close_async()
    await services.tasks.drain(settings.shutdown_grace_seconds)
    await services.lifecycle.close()  # turns cut off by the drain come back to another replica after their lease
    if worker_task:
        await asyncio.wait({worker_task}, timeout=5)


def _governance_worker(services: Services):
    """Owed deletions and retention (governance/worker.py), on every replica."""
    from .governance.worker import GovernanceWorker

    worker = GovernanceWorker(services.settings, services.store.governance, services.lifecycle.governance.forget)
    worker.task = asyncio.create_task(worker.run(), name="governance")  # not counted as work in flight
    return worker


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Only the workers, research's and governance's (plus /healthz and /readyz), for operators who scale them apart."""
    services = await build_services(settings)
    web_app = web.Application()
    web_app.add_routes(health_routes(services))
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await require_redis(services.store, settings.redis_url)
        await require_database(services.installs)
        # found in issue 9.5: a worker beside `serve` on one host died here, unseen
        await listen(runner, settings, "a worker on the same host as `slackbot serve` needs a PORT of its own")
        stop = stop or _stop_on_signals()
        services.readiness.socket_mode = False  # events are `serve`'s: the worker needs no connection
        services.readiness.token_ok = bool(services.installs) or await verify_bot_token(services.slack, stop)
        worker = services.research.worker()
        task = asyncio.create_task(worker.run())
        governance = _governance_worker(services)
        await stop.wait()
        worker.stop()
        governance.stop()
        await asyncio.wait({task, governance.task}, timeout=settings.shutdown_grace_seconds)
    finally:
        await runner.cleanup()
        await services.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
