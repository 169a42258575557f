"""The app's own surfaces reacting to the person: the Messages tab opened (suggested prompts), the Home tab
opened (views.publish), the channel they look at (app_context_changed), Slack's own Stop on a session.

Every call goes through the gateway; every read is the person's own (the event's `user`).
"""

from __future__ import annotations

import logging

from ..chat.intake import context_channel
from ..chat.profiles_lookup import channel_name
from ..profiles import Profile
from ..slack_out import calls
from .surface import home_blocks, prompts_for

log = logging.getLogger(__name__)

PROMPTS_TITLE = "Try asking"


async def _profile_of(services, slack, channel: str) -> tuple[Profile | None, str]:
    """The profile in effect in `channel` (None where none applies) and a label for it."""
    if not channel or channel.startswith("D"):
        return None, "your direct messages"
    profiles = services.settings.profile_map
    name = await channel_name(slack, channel)  # cached; also the label
    return profiles.for_channel(channel, name, slack.team), f"#{name}" if name else "the channel you came from"


async def _context(services, team: str, event: dict) -> str:
    """The channel the person looks at: the event's `context` (remembered), else the last one remembered."""
    given = context_channel(event.get("context"))
    if given is not None:
        await services.store.agent.look_at(team, event["user"], given)
        return given
    return await services.store.agent.current(team, event["user"])


async def opened(services, event: dict, team: str) -> None:
    user, slack = event.get("user"), services.slack.for_team(team)
    if not user or not event.get("channel"):
        return
    looking_at = await _context(services, team, event)
    profile, where = await _profile_of(services, slack, looking_at)
    if event.get("tab") == "home":
        research = services.research is not None
        jobs = await services.research.jobs.user_jobs(team, user) if research else []
        usage = await services.store.agent.week_usage(team, user)
        blocks = home_blocks(services.settings, research=research, jobs=jobs, usage=usage,
                             profile=profile or services.settings.default_profile, where=where)
        await slack.send(calls.publish_home(user, blocks), tries=2, give_up_after=10.0)
    elif services.settings.agent_messaging:
        # at the top of the Messages tab: never with thread_ts (from an agent_view app that silently fails)
        await slack.send(calls.suggested_prompts(event["channel"], prompts_for(services.settings, profile),
                                                 PROMPTS_TITLE), tries=2, give_up_after=10.0)


async def context_changed(services, event: dict, team: str) -> None:
    channel = context_channel(event.get("context"))
    if event.get("user") and channel is not None:
        await services.store.agent.look_at(team, event["user"], channel)


async def session_stopped(services, event: dict, team: str) -> None:
    """Slack's Stop on a session: exactly the Stop button (asker only, partial text kept with a note, head
    unmoved, Gemini's stream closed). With no answer running, the session still leaves `processing`."""
    channel, thread, user = event.get("channel") or "", event.get("thread_ts") or "", event.get("user") or ""
    turn_id = await services.store.turns.lock_holder(team, channel, thread) if channel and thread else None
    if turn_id and (await services.lifecycle.request_stop(turn_id, user)).stopping:
        return
    if channel and thread:
        await services.slack.for_team(team).send(calls.session_status(channel, thread, "active"), tries=2,
                                                  give_up_after=10.0)
