"""Governance events, answered inside intake (before Bolt acks): messages deleted in Slack (and
tombstones) forget what the bot kept of them; user-group changes refresh the cached membership; a
mention saying `forget` forgets its thread (the asker or an admin)."""

from __future__ import annotations

import logging

from ..chat.intake import Incoming
from ..governance.forget import deleted_message, forgotten_line
from ..slack_out import calls

log = logging.getLogger(__name__)

FORGET_WORD = "forget"
NOT_YOURS = "Only someone who asked me in this thread, or an admin, can make me forget it."


async def governance_event(event: dict, team: str, services) -> bool:
    """True when the event was a governance one (handled; nothing else to do with it)."""
    gov = services.lifecycle.governance
    if event.get("type") == "subteam_members_changed":
        await gov.access.group_changed(team, str(event.get("subteam_id") or ""),
                                       [str(u) for u in event.get("added_users") or []],
                                       [str(u) for u in event.get("removed_users") or []])
        return True
    deleted = deleted_message(event)
    if deleted is None:
        return False
    await gov.forget.on_deleted(team, deleted)
    return True


def is_forget(incoming: Incoming, bot_user_id: str | None) -> bool:
    """A mention whose whole text, the mention aside, is `forget`."""
    if incoming.kind != "mention":
        return False
    text = incoming.text.replace(f"<@{bot_user_id}>", " ") if bot_user_id else incoming.text
    return text.strip().lower().rstrip(".!") == FORGET_WORD


async def forget_thread(incoming: Incoming, services) -> None:
    """`@bot forget` in a thread: the whole thread, if the person asked there or is an admin; one line back."""
    team, channel = incoming.team, incoming.channel
    line = await forget_for(services, team, channel, incoming.chain_thread, incoming.user)
    services.tasks.spawn(services.slack.for_team(team).send(
        calls.ephemeral(channel, incoming.user, line, incoming.reply_thread_ts)), name=f"forgot:{incoming.id}")


FORGET_SHORTCUT = "forget_thread"
FORGET_WHERE = "`/gemini forget` forgets our conversation in a direct message with me (or my agent tab); " \
    "in a channel thread, mention me with `forget`, or use the \"Forget this thread\" message shortcut."


def register(app, services) -> None:
    @app.event("subteam_members_changed")
    async def group_changed(ack):  # intake already refreshed the cache (governance_event)
        await ack()

    @app.shortcut(FORGET_SHORTCUT)
    async def forget_shortcut(ack, body):
        """"Forget this thread" on any message of a thread: the whole thread (the asker or an admin)."""
        await ack()
        message, user = body.get("message") or {}, (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id", "")
        team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or ""
        is_dm = (body.get("channel") or {}).get("name") == "directmessage"
        thread = str(message.get("thread_ts") or ("dm" if is_dm else message.get("ts")) or "")
        line = await forget_for(services, team, channel, thread, user, message.get("thread_ts"))
        await services.slack.for_team(team).send(calls.ephemeral(channel, user, line, message.get("thread_ts")))


async def forget_for(services, team: str, channel: str, thread: str, user: str, reply_ts=None) -> str:
    gov = services.lifecycle.governance
    askers = {a.user for a in await services.store.governance.answered(team, channel, thread)}
    if user not in askers and not gov.access.is_admin(user):
        return NOT_YOURS if askers else forgotten_line([])
    import time
    return forgotten_line(await gov.forget.thread(team, channel, thread, cutoff=f"{time.time():.6f}"))


async def gemini_subcommand(command: dict, services) -> str | None:
    """`/gemini usage` and `/gemini forget`: the ephemeral answer, or None for another subcommand."""
    word = (command.get("text") or "").strip().lower()
    team, user, channel = command.get("team_id", ""), command.get("user_id", ""), command.get("channel_id", "")
    gov = services.lifecycle.governance
    if word == "usage":
        from ..governance.usage import usage_text
        return await usage_text(gov, services.settings, team, user)
    if word == "forget":
        if not (channel.startswith("D") or command.get("channel_name") == "directmessage"):
            return FORGET_WHERE
        import time
        taken = await gov.forget.conversation(team, channel, cutoff=f"{time.time():.6f}")
        return forgotten_line(taken)
    return None
