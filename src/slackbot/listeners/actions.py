"""Interactivity: research status messages' Cancel, Start and Edit plan (and its modal), the "Research this
thread" message shortcut (and its modal), answers' Stop."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..chat.intake import installing_team
from ..research import thread
from ..research.status import CANCEL_ACTION, EDIT_ACTION, EDIT_INPUT, EDIT_VIEW, START_ACTION
from ..slack_out import calls
from ..slack_out.delivery import STOP_ACTION


def register(app: AsyncApp, services) -> None:
    @app.action(CANCEL_ACTION)
    async def cancel(ack, body, action):
        await ack()
        if services.research is not None:
            services.tasks.spawn(services.research.handle_cancel(body, action), name="research-cancel")

    @app.action(START_ACTION)
    async def start(ack, body, action):
        await ack()
        if services.research is not None:
            services.tasks.spawn(services.research.handle_start(body, action), name="research-start-plan")

    @app.action(EDIT_ACTION)
    async def edit(ack, body, action):
        await ack()
        if services.research is not None:  # at once: the click's trigger_id lives 3 seconds
            await services.research.open_edit(body, action)

    @app.view(EDIT_VIEW)
    async def edited(ack, body, view):
        await ack()  # closes the modal; the status message shows what happens next
        if services.research is not None:
            job_id, _, channel = str(view.get("private_metadata") or "").partition(" ")
            value = ((view.get("state") or {}).get("values") or {}).get(EDIT_INPUT, {}).get(EDIT_INPUT, {})
            text = str(value.get("value") or "")
            if text.strip() == _initial_value(view, EDIT_INPUT).strip():
                text = ""  # sent back unchanged: that is a Start, not a revision to wait for
            services.tasks.spawn(services.research.handle_edit_submit({**body, "channel": {"id": channel}}, job_id,
                                                                      text),
                                 name="research-edit-plan")

    @app.message_shortcut(thread.SHORTCUT)
    async def research_thread(ack, body, context):
        await ack()
        team = installing_team(body, context.team_id)
        if services.research is None:
            await services.slack.for_team(team).send(calls.ephemeral(
                (body.get("channel") or {}).get("id"), (body.get("user") or {}).get("id"), thread.NOT_ENABLED))
            return
        await services.research.open_thread_modal(body, team)  # at once: the click's trigger_id lives 3 seconds

    @app.view(thread.VIEW)
    async def research_thread_asked(ack, body, view, context):
        await ack()  # closes the modal; the status message in the thread shows what happens next
        if services.research is not None:
            services.tasks.spawn(services.research.handle_thread_submission(
                body, view, installing_team(body, context.team_id), context.bot_user_id), name="research-thread")

    @app.action(STOP_ACTION)
    async def stop(ack, body, action, context):
        await ack()
        user = (body.get("user") or {}).get("id", "")
        reply = await services.lifecycle.request_stop(action.get("value") or "", user)
        if not reply.stopping:
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
            team = installing_team(body, context.team_id)
            await services.slack.for_team(team).send(calls.ephemeral(channel, user, reply.line))


def _initial_value(view: dict, block_id: str) -> str:
    """What the modal's input held when it opened (Slack sends the view back with the submission)."""
    block = next((b for b in view.get("blocks") or [] if b.get("block_id") == block_id), {})
    return str((block.get("element") or {}).get("initial_value") or "")
