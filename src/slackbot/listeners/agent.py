"""The agent surface's listeners: the app's tabs, what people look at, Slack's Stop on a session,
rating clicks and message shortcuts. Each acks at once; the work runs after the ack."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..agent import feedback, shortcuts, tab
from ..slack_out.progress import FEEDBACK_ACTION

# Events intake lets through to these listeners (they are not chat turns)
AGENT_EVENTS = frozenset({"app_home_opened", "app_context_changed", "agent_session_stopped"})
ASK_SHORTCUT = shortcuts.ASK
SUMMARIZE_SHORTCUT = shortcuts.SUMMARIZE


def register(app: AsyncApp, services) -> None:
    def later(coro, name: str) -> None:
        services.tasks.spawn(coro, name=name)

    @app.event("app_home_opened")
    async def home_opened(ack, event, context):
        await ack()
        later(tab.opened(services, event, context.team_id or ""), "app-home")

    @app.event("app_context_changed")
    async def context_changed(ack, event, context):
        await ack()
        later(tab.context_changed(services, event, context.team_id or ""), "app-context")

    @app.event("agent_session_stopped")
    async def session_stopped(ack, event, context):
        await ack()
        later(tab.session_stopped(services, event, context.team_id or ""), "session-stop")

    @app.action(FEEDBACK_ACTION)
    async def rated(ack, body, action, context):
        await ack()  # within 3 s: storing, counting and thanking come after
        later(feedback.handle_click(services, body, action, context.team_id or ""), "feedback")

    @app.message_shortcut(ASK_SHORTCUT)
    async def ask(ack, body, context):
        await ack()
        later(shortcuts.run(services, body, context.team_id or "", context.bot_user_id), "shortcut-ask")

    @app.message_shortcut(SUMMARIZE_SHORTCUT)
    async def summarize(ack, body, context):
        await ack()
        later(shortcuts.run(services, body, context.team_id or "", context.bot_user_id), "shortcut-summarize")
