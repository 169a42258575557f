"""Message shortcuts (manifest `features.shortcuts`, type message): each becomes a chat turn.

* "Ask Gemini about this message": a turn in the thread under that message, with the message (and, for
  a reply, its thread when the shared budget allows) as context. When the bot cannot post there (not a
  member, a DM between people) the answer goes to the person's DM with the bot instead, in the thread
  of a short header message.
* "Summarize thread": the thread read back once through the shared `conversations.replies` budget, then
  answered in that thread; when the bot is not a member (so it can read nothing there), or the budget
  is spent, the person gets one plain ephemeral line.

Access: the person ran the shortcut on a message they can see; the bot reads only where it is a member
and answers to the same audience (that thread) or to the person alone. Every turn is accepted through
the lifecycle (journalled, leased, deduplicated by the click's `action_ts`), like any message.
"""

from __future__ import annotations

import logging

from slack_sdk.webhook.async_client import AsyncWebhookClient

from ..chat.context import thread_transcript, with_transcript
from ..chat.intake import Incoming
from ..governance.policy import Who
from ..slack_out import calls
from ..slack_out.render import message_payload

log = logging.getLogger(__name__)

ASK = "ask_gemini"
SUMMARIZE = "summarize_thread"
ASK_PROMPT = "Help me with this Slack message: explain it and what matters in it."
SUMMARIZE_PROMPT = "Summarize this Slack thread: the main points, decisions, and open questions."
DM_HEADER = "_You asked about a message in a conversation I can't reply in, so my answer is in this thread._"
NOT_MEMBER = "I'm not in this conversation, so I can't read its thread. Invite me (`/invite @Gemini`) and try again."
NO_READ = "I couldn't read this thread just now (Slack lets me read threads only now and then). Try again in a minute."


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in (text or "(no text)").splitlines())


async def _member(slack, channel: str) -> bool:
    """Whether the bot is in the conversation (it can post and read there)."""
    out = await slack.send(calls.channel_info(channel), tries=1, give_up_after=3.0)
    return bool(out.ok and ((out.data or {}).get("channel") or {}).get("is_member"))


async def _tell(slack, body: dict, channel: str, user: str, thread: str | None, line: str) -> None:
    """One ephemeral line: chat.postEphemeral, else the shortcut's response_url (works where the bot is not)."""
    if (await slack.send(calls.ephemeral(channel, user, line, thread), tries=1, give_up_after=5.0)).ok:
        return
    if body.get("response_url"):
        await AsyncWebhookClient(body["response_url"]).send(text=line, response_type="ephemeral")


async def run(services, body: dict, team: str, bot_user_id: str | None) -> None:
    """One shortcut click, after the ack."""
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or ""
    user = (body.get("user") or {}).get("id") or ""
    ts = message.get("ts") or body.get("message_ts") or ""
    click = body.get("action_ts") or ts
    if not (channel and user and ts):
        return
    slack = services.slack.for_team(team)
    thread = message.get("thread_ts") or ts
    # the access policy first, before anything is read: the same rule as a mention (issue 24.1)
    who = Who(team, user, (body.get("user") or {}).get("team_id") or team, channel, channel.startswith("D"))
    if refusal := await services.lifecycle.deps.governance.access.refusal(
            who, services.settings.profile_map.for_channel(channel, team=team)):
        return await _tell(slack, body, channel, user, thread, refusal)
    member = await _member(slack, channel)
    if body.get("callback_id") == SUMMARIZE:
        if not member:
            return await _tell(slack, body, channel, user, thread, NOT_MEMBER)
        names = services.lifecycle.deps.names.for_turn(team)
        transcript = await thread_transcript(slack, services.settings, names, channel=channel, thread_ts=thread,
                                             exclude_ts="", bot_user_id=bot_user_id)
        if transcript is None:
            return await _tell(slack, body, channel, user, thread, NO_READ)
        text = with_transcript(transcript.text, SUMMARIZE_PROMPT, reason="You were asked to summarize a Slack thread.")
        incoming = Incoming(team, channel, user, text, click, thread, thread, "mention", shortcut="summarize")
    else:
        author = message.get("user") or ""
        whose = f" from <@{author}>" if author else ""
        text = f"{ASK_PROMPT}\n\nThe message{whose}:\n{_quoted(message.get('text') or '')}"
        files = tuple(message.get("files") or ())
        if member:
            incoming = Incoming(team, channel, user, text, click, thread, thread, "mention", files=files,
                                in_existing_thread=thread != ts, shortcut="ask")
        else:
            out = await slack.send(calls.post(user, message_payload(DM_HEADER)))  # to a user id: the app's DM
            if not out.ok:
                return await _tell(slack, body, channel, user, thread, NOT_MEMBER)
            dm = str((out.data or {}).get("channel") or "")
            incoming = Incoming(team, dm, user, text, click, out.ts, out.ts, "dm", files=files, shortcut="ask")
    await services.lifecycle.accept(incoming, bot_user_id)
