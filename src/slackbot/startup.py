"""Start-up checks of `serve` and `worker`: each problem stops start-up with one line naming its setting.

A port in use, a Redis that does not answer and a token Slack refuses are mistakes a person fixes,
so they end the process (exit 2) instead of a traceback or a log line repeated forever. A Slack that
is merely slow or down is not a mistake: the check waits for it while /readyz stays red (`Readiness`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError, SlackClientError

from .config import ConfigError, Settings
from .slack_out import calls
from .slack_out.calls import Request
from .slack_out.gateway import SlackGateway
from .store import Store, redact

log = logging.getLogger(__name__)

# auth.test / apps.connections.open errors that no retry will change: the token itself is wrong
TOKEN_REFUSED = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                 "not_allowed_token_type"}
_RETRY = (0.5, 30.0)  # backoff bounds while Slack does not answer (seconds)


async def listen(runner: web.AppRunner, settings: Settings, hint: str) -> None:
    """Bind SLACKBOT_HOST:PORT, or one line saying why not (a port in use, mostly)."""
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        raise ConfigError(f"PORT: cannot listen on {settings.host}:{settings.port} "
                          f"({exc.strerror or exc}); {hint}") from None


async def require_redis(store: Store, url: str) -> None:
    if why := await store.unreachable():
        raise ConfigError(f"REDIS_URL: {redact(url)} does not answer ({why})")


async def require_database(installs) -> None:
    """OAuth mode: DATABASE_URL answers, and its tables exist (made here, idempotently, by whichever replica
    comes first)."""
    if installs is None:
        return
    if why := await installs.unreachable():
        raise ConfigError(f"DATABASE_URL: the database does not answer ({why})")
    await installs.create_tables()


@dataclass
class Readiness:
    """What /readyz adds to Redis: Slack accepted the bot token once, and (Socket Mode) the connection is up."""

    socket_mode: bool = False
    token_ok: bool = False
    socket: object | None = None  # the Socket Mode client (slack_sdk), once made

    async def slack(self) -> bool:
        if not self.token_ok:
            return False
        if not self.socket_mode:
            return True
        return self.socket is not None and await self.socket.is_connected()


async def _slack_call(slack: SlackGateway, req: Request, variable: str, stop: asyncio.Event) -> dict | None:
    """Call Slack until it answers: the response, None if `stop` was set meanwhile, ConfigError if it
    refused the token. Other failures (network, 5xx, 429) are waited out, one log line each."""
    delay = _RETRY[0]
    while not stop.is_set():
        try:
            return await slack.start_up(req)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error", ""))
            if error in TOKEN_REFUSED:
                raise ConfigError(f"{variable}: Slack refused it ({error})") from None
            after = str(exc.response.headers.get("Retry-After", "")) if exc.response.headers else ""
            wait, why = (float(after) if after.isdigit() else delay), error or exc.response.status_code
        except (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            wait, why = delay, type(exc).__name__
        log.warning(f"Slack did not answer {req.method}; retrying", extra={"error": why, "retry_in": wait})
        delay = min(delay * 2, _RETRY[1])
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except asyncio.TimeoutError:
            pass
    return None


async def verify_bot_token(slack: SlackGateway, stop: asyncio.Event) -> bool:
    """auth.test until Slack answers: True once it accepted SLACK_BOT_TOKEN (False: stopped first)."""
    return await _slack_call(slack, calls.auth_test(), "SLACK_BOT_TOKEN", stop) is not None


async def socket_url(slack: SlackGateway, app_token: str, stop: asyncio.Event) -> str | None:
    """A Socket Mode URL for SLACK_APP_TOKEN, asked here (not inside the SDK's connect loop, which
    retries a refused token forever) so a wrong token stops start-up with one line."""
    data = await _slack_call(slack, calls.open_socket(app_token), "SLACK_APP_TOKEN", stop)
    return data.get("url") if data else None
