"""`/gemini usage`: a person's own tokens today (and what their budget leaves), and for admins
(SLACKBOT_ADMINS) the workspace's top users and channels this week. Read from Redis only."""

from __future__ import annotations

from ..config import Settings


def _n(tokens: int) -> str:
    return f"{tokens:,}"


async def usage_text(gov, settings: Settings, team: str, user: str) -> str:
    mine = await gov.spend.mine_today(team, user)
    cap = settings.daily_tokens_per_user
    lines = [f"*Your Gemini use today:* {_n(mine)} tokens" +
             (f" of {_n(cap)} (resets at 00:00 UTC)" if cap else "")]
    if gov.access.is_admin(user):
        top = await gov.spend.top_this_week(team)
        people = [(m[2:], t) for m, t in top if m.startswith("u:")][:5]
        channels = [(m[2:], t) for m, t in top if m.startswith("c:")][:5]
        lines.append("*This week's top users:* " + (", ".join(f"<@{u}> {_n(t)}" for u, t in people) or "none"))
        lines.append("*This week's top channels:* " + (", ".join(f"<#{c}> {_n(t)}" for c, t in channels) or "none"))
    return "\n".join(lines)
