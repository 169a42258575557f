"""An uninstall (`app_uninstalled`, or `tokens_revoked` naming bot tokens) leaves nothing behind: the
installation's rows (OAuth mode), its Redis keys (every primary of a cluster) and its running research
jobs, cancelled at Gemini so they stop costing. Single-workspace mode deletes the same Redis data."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from ..installs import installation_key

log = logging.getLogger(__name__)


def register(app: AsyncApp, services) -> None:
    async def uninstalled(body, context) -> None:
        event = body.get("event") or {}
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only people's tokens: the bot keeps its installation (we store no user tokens)
        auth = (body.get("authorizations") or [{}])[0]
        key = installation_key(body.get("enterprise_id") or context.enterprise_id,
                               body.get("team_id") or context.team_id, bool(auth.get("is_enterprise_install")))
        await forget_installation(services, key)

    app.event("app_uninstalled")(uninstalled)
    app.event("tokens_revoked")(uninstalled)


async def forget_installation(services, key: str) -> None:
    rows = await services.installs.forget(key) if services.installs else 0
    # answers in flight here end first, so none writes a key after the deletion; on other replicas a
    # turn whose journal is gone loses its lease at the next renewal and ends the same way
    ended = await services.lifecycle.end_team(key, services.settings.shutdown_grace_seconds)
    running = await services.store.delete_team(key)
    for interaction in running:
        try:
            await services.gemini.cancel(interaction)
        except Exception as exc:  # already ended or Gemini away: it stops on its own, no one polls it now
            log.warning("research job not cancelled", extra={"team": key, "error": type(exc).__name__})
    log.info("installation removed", extra={"team": key, "rows": rows, "answers_ended": ended,
                                            "jobs_cancelled": len(running)})
