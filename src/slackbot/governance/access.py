"""The access check at a turn's (or a command's) admission: the pure policy (policy.py) over what the
event carries, plus user-group membership cached in Redis with SLACKBOT_GROUP_CACHE_SECONDS. The cache
is filled on a miss (one usergroups.users.list, paid from its budget) and kept fresh by Slack's
subteam_members_changed events, so a turn's check costs no Slack call once a group is known."""

from __future__ import annotations

import logging

from ..config import Settings
from ..profiles import Profile
from ..slack_out import calls
from ..slack_out.gateway import SlackGateway
from ..store import RedisError
from ..store.governance import GovernanceStore
from .policy import Rules, Who, refusal

log = logging.getLogger(__name__)


class Access:
    def __init__(self, settings: Settings, store: GovernanceStore, slack: SlackGateway):
        self.settings = settings
        self.store = store
        self.slack = slack

    async def refusal(self, who: Who, profile: Profile | None = None) -> str:
        """'' when `who` may use the bot here, else the line saying why."""
        rules = Rules.of(self.settings, profile)
        guest = not rules.guests and await self._is_guest(who.team, who.user)
        return refusal(rules, who, await self._groups_of(who.team, who.user, rules.groups), guest)

    async def _is_guest(self, team: str, user: str) -> bool:
        """users.info's is_restricted (multi- or single-channel guest), cached like group membership."""
        cached = await self.store.cached_flag(team, user, "guest")
        if cached is not None:
            return cached
        out = await self.slack.for_team(team).send(calls.user_info(user), give_up_after=5.0)
        if not out.ok:
            return True  # unknown while guests are off: refused this once, not cached
        info = (out.data or {}).get("user") or {}
        guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
        await self.store.cache_flag(team, user, "guest", guest, self.settings.group_cache_seconds)
        return guest

    async def _groups_of(self, team: str, user: str, groups: tuple[str, ...]) -> set[str]:
        mine = set()
        for group in groups:
            if user in await self._members(team, group):
                mine.add(group)
        return mine

    async def _members(self, team: str, group: str) -> set[str]:
        cached = await self.store.group_members(team, group)
        if cached is not None:
            return cached
        out = await self.slack.for_team(team).send(calls.usergroup_users(group), give_up_after=5.0)
        users = [str(u) for u in (out.data or {}).get("users") or []] if out.ok else []
        if not out.ok:
            log.warning("could not read a user group's members", extra={"team": team, "group": group,
                                                                         "error": out.error})
        await self.store.cache_group(team, group, users, self.settings.group_cache_seconds)
        return set(users)

    async def group_changed(self, team: str, group: str, added: list[str], removed: list[str]) -> None:
        """subteam_members_changed: the cached members follow at once (or the next look-up reads them)."""
        try:
            cached = await self.store.group_members(team, group)
            if cached is None:
                return
            members = (cached | set(added)) - set(removed)
            await self.store.cache_group(team, group, sorted(members), self.settings.group_cache_seconds)
        except (RedisError, OSError):
            log.warning("could not update a cached user group", extra={"team": team, "group": group})

    def is_admin(self, user: str) -> bool:
        return user in {x.strip() for x in self.settings.admins.split(",") if x.strip()}
