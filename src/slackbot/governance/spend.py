"""Daily token budgets per person, per channel and per workspace (UTC days), charged in Redis from
each interaction's reported usage, so every replica sees the same totals. Checked before a turn starts
(one plain ephemeral line when spent); an answer in progress is never cut: it is charged when it ends."""

from __future__ import annotations

import logging
import time

from ..config import Settings
from ..profiles import Profile
from ..store import RedisError
from ..store.governance import GovernanceStore

log = logging.getLogger(__name__)

SPENT = "You've used today's Gemini budget; it resets at 00:00 UTC."


def day(now: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now if now is not None else time.time()))


def week(now: float | None = None) -> str:
    return time.strftime("%G-W%V", time.gmtime(now if now is not None else time.time()))


def scopes(team: str, user: str, channel: str) -> list[str]:
    """The person, the channel, the workspace: the order of `limits`."""
    return [f"{team}:u:{user}", f"{team}:c:{channel}", team]


def limits(s: Settings, profile: Profile | None) -> list[int]:
    p = profile or Profile()
    return [p.daily_tokens_per_user if p.daily_tokens_per_user is not None else s.daily_tokens_per_user,
            p.daily_tokens_per_channel if p.daily_tokens_per_channel is not None else s.daily_tokens_per_channel,
            s.daily_tokens_per_workspace]


def over(spent: list[int], caps: list[int]) -> bool:
    """Pure: whether any budget with a cap (0 = none) is used up."""
    return any(cap and used >= cap for used, cap in zip(spent, caps))


def tokens_of(*usages) -> int:
    """Every token an interaction reported (input, output, thinking, images), summed over `usages`."""
    return sum(int(u.input + u.output + u.thought + getattr(u, "image", 0)) for u in usages if u is not None)


class Spend:
    def __init__(self, settings: Settings, store: GovernanceStore):
        self.settings = settings
        self.store = store

    async def spent_up(self, team: str, user: str, channel: str, profile: Profile | None) -> bool:
        caps = limits(self.settings, profile)
        if not any(caps):
            return False
        return over(await self.store.spent(scopes(team, user, channel), day()), caps)

    async def charge(self, team: str, user: str, channel: str, tokens: int) -> None:
        """Best effort: a Redis hiccup never fails an answer already given."""
        if not tokens:  # negative: a research job used less than its reservation
            return
        try:
            await self.store.charge(scopes(team, user, channel), day(), tokens, team=team, week=week(),
                                    members=[f"u:{user}", f"c:{channel}"])
        except (RedisError, OSError):
            log.warning("could not charge token usage", extra={"team": team, "channel": channel})

    async def mine_today(self, team: str, user: str) -> int:
        return (await self.store.spent([f"{team}:u:{user}"], day()))[0]

    async def top_this_week(self, team: str, n: int = 5) -> list[tuple[str, int]]:
        return await self.store.top(team, week(), n * 4)
