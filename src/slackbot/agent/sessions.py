"""A Messages-tab turn's agent session: `processing` while it answers (with a short title from the
question when the turn starts the session), `active` at the end, `suspended` while it waits for the
person (e.g. a research plan to approve: `AgentSession.end("suspended")`).

Slack shows its own Stop button beside "Working…" because the app subscribes to agent_session_stopped
(listeners/agent.py passes it on to the lifecycle's Stop). Channel threads have no session: their
answers keep the Stop button of today.
"""

from __future__ import annotations

import logging

from ..config import Settings
from ..slack_out import calls
from ..slack_out.gateway import WorkspaceSlack
from ..slack_out.progress import session_title
from ..store import TurnRecord

log = logging.getLogger(__name__)

# seconds a turn's session call may wait for its budget before the sign of life: a little when it creates
# the session (the title rides on that call only), none after (the status line moves it anyway)
_START_WAIT = 0.5
_END_WAIT = 10.0


class AgentSession:
    def __init__(self, slack: WorkspaceSlack, record: TurnRecord):
        self.slack = slack
        self.record = record

    @staticmethod
    def of(settings: Settings, slack: WorkspaceSlack, record: TurnRecord) -> "AgentSession | None":
        """The session of a turn in the app's Messages tab (agent messaging), else None."""
        if settings.agent_messaging and record.kind == "dm" and record.reply_thread_ts and not record.shortcut:
            return AgentSession(slack, record)
        return None

    @property
    def starts(self) -> bool:
        return self.record.ts == self.record.reply_thread_ts  # the person's message is the session's root

    async def processing(self) -> None:
        r = self.record
        title = session_title(r.text) if self.starts else None
        await self._set(calls.session_status(r.channel, r.reply_thread_ts, "processing", title=title,
                                             initiator=r.user if self.starts else None),
                        _START_WAIT if self.starts else 0.0)

    async def end(self, status: str = "active") -> None:
        await self._set(calls.session_status(self.record.channel, self.record.reply_thread_ts, status), _END_WAIT)

    async def _set(self, req: calls.Request, wait: float) -> None:
        out = await self.slack.send(req, tries=2, give_up_after=wait) if wait else await self.slack.now(req)
        if not out.ok:  # the status line and the stream's end still move the session (Slack's bridge)
            log.info("agent session status not set", extra={"channel": req.channel, "error": out.error or "budget"})
