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
    gov = services.lifecycle.governance
    team, channel, thread = incoming.team, incoming.channel, incoming.chain_thread
    askers = {a.user for a in await services.store.governance.answered(team, channel, thread)}
    if incoming.user in askers or gov.access.is_admin(incoming.user):
        line = forgotten_line(await gov.forget.thread(team, channel, thread, cutoff=incoming.ts))
    else:
        line = NOT_YOURS
    services.tasks.spawn(services.slack.for_team(team).send(
        calls.ephemeral(channel, incoming.user, line, incoming.reply_thread_ts)), name=f"forgot:{incoming.id}")
