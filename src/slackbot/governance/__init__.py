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

    @classmethod
    def build(cls, settings, store, gemini, slack, spawn) -> "Governance":
        from .access import Access
        from .forget import Forgetter
        from .spend import Spend

        return cls(Access(settings, store.governance, slack), Spend(settings, store.governance),
                   Forgetter(store.governance, gemini, slack, spawn))
