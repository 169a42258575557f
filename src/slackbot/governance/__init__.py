"""Operators' control (issue 24): who may use the bot where (`policy`, `access`), daily token budgets
(`spend`), the audit trail (`audit`), and forgetting: deleting in Slack deletes at Gemini (`forget`)."""

from __future__ import annotations


from dataclasses import dataclass


@dataclass
class Governance:
    """What a process needs to govern: the access check, the budgets, forgetting."""

    access: object
    spend: object
    forget: object
    settings: object = None
    store: object = None  # store.Store: a research report's thread is adopted and mapped in one place

    @classmethod
    def build(cls, settings, store, gemini, slack, spawn) -> "Governance":
        from .access import Access
        from .forget import Forgetter
        from .spend import Spend

        return cls(Access(settings, store.governance, slack), Spend(settings, store.governance),
                   Forgetter(store.governance, gemini, slack, spawn, jobs=store.jobs,
                             retry_in=settings.delete_retry_seconds), settings, store)

    # --- /research: the same policy, and a reservation before the agent starts -------------------
    async def admit_research(self, team: str, user: str, channel: str) -> str:
        """'' when the person may start research here (its estimate is then charged), else the line why."""
        from .policy import Who
        from .spend import SPENT

        who = Who(team, user, team, channel, channel.startswith("D"))
        line = await self.access.refusal(who, self.settings.profile_map.for_channel(channel, team=team) if self.settings else None)
        if line:
            return line
        if await self.spend.spent_up(team, user, channel, None):
            return SPENT
        await self.spend.charge(team, user, channel, self.settings.research_estimate_tokens)
        return ""

    async def track_research(self, job) -> None:
        """The job's status message is up: forgetting its thread now reaches the job."""
        await self.forget.store.map_job(job.team, job.channel, job.reply_ts, job.status_ts, user=job.requester,
                                        job=job.id)

    async def adopt_research(self, job) -> None:
        """A report's thread chains onto the research (follow-ups continue it) and the report is mapped like
        an answered message, so forgetting the thread (or retention) deletes the job's interactions and its
        report. A thread forgotten while the job ran keeps none of it: what the job made is deleted as a
        forgetting's (the head left on a deleted interaction makes the next turn start fresh from Slack)."""
        store, thread = self.store, job.reply_ts
        if self.settings.retention_days:
            await store.governance.retain(job.team, job.channel, thread, self.settings.retention_days * 86400)
        await store.adopt_for_research(job.team, job.channel, thread, job.interaction_id,
                                       job.requester if job.thread_ts else "")
        mapped = await store.governance.move_and_map(
            job.team, job.channel, thread, job.interaction_id, job.interaction_id, ts=job.status_ts,
            ids=job.interaction_ids, bot=job.messages, user=job.requester, job=job.id, files=job.upload_ids,
            move=False)
        if mapped < 0:
            await store.jobs.forget(job.id)
            await self.forget.owe(job.team, job.channel, thread, job.interaction_ids, job.messages, job.upload_ids)

    async def settle_research(self, team: str, user: str, channel: str, used: int | None) -> None:
        """The job ended: what it used replaces the estimate (unknown usage keeps the estimate)."""
        if used is not None:
            await self.spend.charge(team, user, channel, used - self.settings.research_estimate_tokens)
