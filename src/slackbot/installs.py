"""OAuth installs (issue 23): many workspaces in one deployment, their tokens in PostgreSQL.

Well-kept pieces do the work: slack-sdk's AsyncSQLAlchemyInstallationStore (tables `slack_installations`,
`slack_bots`) and AsyncSQLAlchemyOAuthStateStore (`slack_oauth_states`) on asyncpg, bolt-python's
AsyncOAuthSettings for "Add to Slack" and for authorising each request, slack-sdk's AsyncTokenRotator
for rotating tokens. This module adds what they lack:

* `create_tables()` under a PostgreSQL advisory lock, so replicas starting at once do not race on
  CREATE TABLE (SQLAlchemy's checkfirst is a read then a write);
* `InstalledTokens`, the gateway's token resolver: the installation key the rest of the bot uses
  (a workspace's team id, or the enterprise id of an org-wide install: keys follow the installing org)
  -> a client with that installation's bot token, refreshed before it expires;
* `forget()`: an uninstall deletes every row of that installation.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import (AsyncSQLAlchemyInstallationStore,
                                                           SQLAlchemyInstallationStore)
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import and_, desc, or_, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .config import Settings

log = logging.getLogger(__name__)

_TABLES_LOCK = 0x534C4B23  # pg_advisory_xact_lock key for create_tables ("SLK#")


def async_url(url: str) -> str:
    """DATABASE_URL as SQLAlchemy's asyncpg dialect wants it (operators write postgresql://...)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain):]
    return url


def authorize_url(api_url: str) -> str:
    """Slack's consent page beside its Web API (https://slack.com/api/ -> https://slack.com/oauth/v2/authorize)."""
    return api_url.rstrip("/").removesuffix("/api") + "/oauth/v2/authorize"


def installation_key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool) -> str:
    """The id every per-installation key, budget and label uses: the org for an org-wide install."""
    return str((enterprise_id if is_enterprise_install else team_id) or team_id or enterprise_id or "")


class Installs:
    """The installation and OAuth state stores on DATABASE_URL, and the token resolver over them."""

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None):
        self.settings = settings
        self.engine = engine or create_async_engine(async_url(settings.db_url), pool_pre_ping=True)
        self.installations = AsyncSQLAlchemyInstallationStore(client_id=settings.slack_client_id, engine=self.engine)
        self.states = AsyncSQLAlchemyOAuthStateStore(expiration_seconds=600, engine=self.engine)
        self.tokens = InstalledTokens(self, settings)

    def oauth_settings(self) -> AsyncOAuthSettings:
        s = self.settings
        return AsyncOAuthSettings(
            client_id=s.slack_client_id, client_secret=s.client_secret,
            scopes=[x.strip() for x in s.slack_scopes.split(",") if x.strip()], user_scopes=[],
            redirect_uri=s.slack_redirect_uri or None, authorization_url=authorize_url(s.slack_api_url),
            installation_store=self.installations, installation_store_bot_only=True,
            state_store=self.states, token_rotation_expiration_minutes=s.token_refresh_minutes)

    async def create_tables(self) -> None:
        """Idempotent, and safe with several replicas at once: one transaction-scoped advisory lock
        makes them take turns; whoever comes second finds the tables there (checkfirst)."""
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TABLES_LOCK})
            await conn.run_sync(self.installations.metadata.create_all)
            await conn.run_sync(self.states.metadata.create_all)

    async def unreachable(self) -> str:
        """'' when the database answers, else why not in a few words (start-up names it; /readyz turns red)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return ""
        except Exception as exc:  # asyncpg, OSError, SQLAlchemy: each has its own; all mean "not now"
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

    async def forget(self, key: str) -> int:
        """Delete every row of an installation (bots and installations, workspace or org); how many."""
        deleted = 0
        async with self.engine.begin() as conn:
            for table in (self.installations.installations, self.installations.bots):
                c = table.c
                result = await conn.execute(table.delete().where(and_(c.client_id == self.settings.slack_client_id,
                                                                      _is_installation(c, key))))
                deleted += result.rowcount or 0
        self.tokens.drop(key)
        return deleted

    async def rows_of(self, key: str) -> int:
        """How many rows of any table still name this installation (tests and operators)."""
        count = 0
        async with self.engine.connect() as conn:
            for table in (self.installations.installations, self.installations.bots):
                result = await conn.execute(table.select().where(_is_installation(table.c, key)))
                count += len(result.fetchall())
        return count

    async def close(self) -> None:
        await self.engine.dispose()


def _is_installation(c, key: str):
    return or_(c.team_id == key, and_(c.enterprise_id == key, c.team_id.is_(None)))


class InstalledTokens:
    """The gateway's TokenResolver in OAuth mode: each installation's own bot token, read from the
    store (kept `install_cache_seconds` in memory so a turn's many calls do not each ask the database),
    rotated `token_refresh_minutes` before it expires and saved back for every replica."""

    def __init__(self, installs: Installs, settings: Settings):
        self.installs = installs
        self.settings = settings
        self.rotator = AsyncTokenRotator(client_id=settings.slack_client_id, client_secret=settings.client_secret,
                                         client=AsyncWebClient(base_url=settings.slack_api_url))
        self._cache: dict[str, tuple[float, Bot]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.lookups = 0  # database reads (the benchmark's figure)

    def drop(self, key: str) -> None:
        self._cache.pop(key, None)

    async def client_for(self, team: str) -> AsyncWebClient:
        bot = await self.bot(team)
        return AsyncWebClient(token=bot.bot_token if bot else None, base_url=self.settings.slack_api_url)

    async def bot(self, key: str) -> Bot | None:
        async with self._locks.setdefault(key, asyncio.Lock()):  # one refresh per installation at a time
            cached = self._cache.get(key)
            bot = cached[1] if cached and cached[0] > time.monotonic() else await self._read(key)
            if bot is not None and bot.bot_refresh_token and self._expiring(bot):
                bot = await self._rotate(key, bot)
            if bot is not None:
                self._cache[key] = (time.monotonic() + self.settings.install_cache_seconds, bot)
            return bot

    def _expiring(self, bot: Bot) -> bool:
        return bool(bot.bot_token_expires_at) and \
            bot.bot_token_expires_at <= time.time() + self.settings.token_refresh_minutes * 60

    async def _read(self, key: str) -> Bot | None:
        self.lookups += 1
        store = self.installs.installations
        c = store.bots.c
        query = (store.bots.select()
                 .where(and_(c.client_id == self.settings.slack_client_id, _is_installation(c, key),
                             c.bot_token.is_not(None)))
                 .order_by(desc(c.installed_at)).limit(1))
        async with store.engine.connect() as conn:
            for row in (await conn.execute(query)).mappings():
                return SQLAlchemyInstallationStore.build_bot_entity(row)
        return None

    async def _rotate(self, key: str, bot: Bot) -> Bot:
        """A fresh token, saved for every replica. If another replica spent the refresh token first,
        its saved token is read back instead."""
        try:
            fresh = await self.rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=self.settings.token_refresh_minutes)
        except Exception as exc:  # SlackApiError (invalid_refresh_token: another replica rotated), network
            log.warning("token refresh failed; reading the stored token", extra={"team": key,
                                                                                  "error": type(exc).__name__})
            return await self._read(key) or bot
        if fresh is None:
            return bot
        await self.installs.installations.async_save_bot(fresh)
        log.info("token refreshed", extra={"team": key})
        return fresh
