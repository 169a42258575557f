"""Pure: may this person use the bot here? The rules of SLACKBOT_ALLOW_* / DENY_* and the profile's
fields, decided from what the event carries plus cached user-group membership; no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..profiles import Profile

# what the person reads (ephemeral, once per conversation); never Slack markup of anyone's text
NOT_HERE = "I'm not enabled in this conversation, so I won't answer here."
NOT_YOU = "Your workspace's admins haven't enabled me for you, so I won't answer."
NO_DMS = "I don't answer direct messages in this workspace; mention me in a channel instead."
NO_GUESTS = "I'm not enabled for guest accounts in this workspace."
NO_CONNECT = "I don't answer members of other organisations in shared channels."


def ids(raw: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in raw.split(",") if x.strip())


@dataclass(frozen=True)
class Who:
    """A request as the policy sees it."""

    team: str  # the installing workspace
    user: str
    user_team: str  # the person's own workspace (a partner's in Slack Connect)
    channel: str
    is_dm: bool


@dataclass(frozen=True)
class Rules:
    allow_channels: tuple[str, ...]
    deny_channels: tuple[str, ...]
    allow_users: tuple[str, ...]
    deny_users: tuple[str, ...]
    allow_groups: tuple[str, ...]
    deny_groups: tuple[str, ...]
    dms: bool
    connect: bool
    guests: bool = True

    @classmethod
    def of(cls, s: Settings, profile: Profile | None = None) -> "Rules":
        p = profile or Profile()

        def pick(own, setting: str) -> tuple[str, ...]:
            return tuple(own) if own is not None else ids(setting)
        return cls(ids(s.allow_channels), ids(s.deny_channels), pick(p.allow_users, s.allow_users),
                   pick(p.deny_users, s.deny_users), pick(p.allow_groups, s.allow_groups),
                   pick(p.deny_groups, s.deny_groups), s.allow_dms, s.allow_connect, s.allow_guests)

    @property
    def groups(self) -> tuple[str, ...]:
        """The user groups whose membership the decision needs."""
        return self.allow_groups + self.deny_groups


def refusal(rules: Rules, who: Who, groups_of_user: set[str], guest: bool = False) -> str:
    """'' when allowed, else the line saying why. A deny always wins; an empty allow list allows all."""
    if who.is_dm and not rules.dms:
        return NO_DMS
    if not who.is_dm and (who.channel in rules.deny_channels or
                          (rules.allow_channels and who.channel not in rules.allow_channels)):
        return NOT_HERE
    if who.user_team and who.user_team != who.team and not rules.connect:
        return NO_CONNECT
    if guest and not rules.guests:
        return NO_GUESTS
    if who.user in rules.deny_users or groups_of_user & set(rules.deny_groups):
        return NOT_YOU
    if rules.allow_users or rules.allow_groups:
        if who.user not in rules.allow_users and not groups_of_user & set(rules.allow_groups):
            return NOT_YOU
    return ""
