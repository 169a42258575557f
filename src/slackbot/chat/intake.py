"""Which Slack events become chat turns. Pure: no I/O, so every rule has a unit test."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.keys import turn_id
from ..store.turns import TurnRecord

# Message subtypes that are still a person talking; every other subtype (bot_message,
# message_changed, message_deleted, channel_join, ...) is ignored.
_USER_SUBTYPES = {None, "", "file_share", "thread_broadcast"}
DM_THREAD = "dm"  # chain key for top-level DM messages: the DM itself is one conversation


@dataclass(frozen=True)
class Incoming:
    """A message the bot should answer, as intake read it from the event (before anything is journalled)."""

    team: str
    channel: str
    user: str
    text: str
    ts: str
    reply_thread_ts: str | None  # where the answer goes (None = top level of a DM)
    chain_thread: str  # the thread key the chain head is stored under
    kind: str  # mention | reply | dm
    in_existing_thread: bool = False  # a mention inside a thread people already started
    files: tuple = ()
    parent_user: str = ""  # who wrote the thread's first message (Slack sends it with replies)
    user_team: str = ""  # the sender's own workspace (a partner org's in Slack Connect)
    action_token: str = ""  # Real-time Search's token for this message (mentions, DMs): searches as the asker
    context_channel: str | None = None  # app_context on a DM: the channel the person looks at ("" none)
    shortcut: str = ""  # ask | summarize: made by a message shortcut (agent/shortcuts.py)

    @property
    def role(self) -> str:
        """How the message stands to the bot's presence in its thread (store/turns.py, `_ACCEPT`): `start`
        begins a conversation of the bot's own (a mention at the root, a DM); `mention` asks the bot in a
        thread people started, which does not enrol it there; `reply` is answered only in the bot's own
        thread, or as the direct follow-up of the person who last asked it (before anyone else speaks)."""
        if self.kind == "reply":
            return "reply"
        # a shortcut asks the bot under someone's message: like a mention, it does not make the thread its own
        return "mention" if self.in_existing_thread or self.shortcut else "start"

    @property
    def id(self) -> str:
        """The turn's id: one message is one turn, however many events carry it (app_mention + message,
        retries). It names the thread: the store keeps a turn beside its thread's keys (one Redis Cluster slot)."""
        return turn_id(self.team, self.channel, self.chain_thread, self.ts)

    def record(self, *, owner: str, bot_user_id: str | None, now: float) -> TurnRecord:
        """The journal's record of this message, leased to `owner` (the process that will run it)."""
        return TurnRecord(
            id=self.id, team=self.team, channel=self.channel, user=self.user, text=self.text, ts=self.ts,
            reply_thread_ts=self.reply_thread_ts or "", chain_thread=self.chain_thread, kind=self.kind,
            in_existing_thread=self.in_existing_thread, files=list(self.files),
            owned_by_parent=bool(bot_user_id) and self.parent_user == bot_user_id, owner=owner,
            user_team=self.user_team or self.team, bot_user_id=bot_user_id or "", created=now,
            action_token=self.action_token,
            context_channel=self.context_channel or "", context_given=self.context_channel is not None,
            shortcut=self.shortcut)


def installing_team(body: dict, fallback: str | None = None) -> str:
    """The workspace the app is installed in, which owns every piece of this bot's state for the event.

    Not the sender's `team`: in a Slack Connect channel a partner organisation's member carries their own
    team id, while the thread, its chain and the edit budget belong to the installation. Slack names the
    installation in `authorizations` (Bolt reads it there too, for shared channels). An org-wide install
    (Enterprise Grid) is the org's: its enterprise id, so keys follow the installing org in every workspace.
    Otherwise the envelope's `team_id` comes next."""
    if not isinstance(body, dict):
        return str(fallback or "")
    auths = body.get("authorizations")
    if isinstance(auths, list) and auths and isinstance(auths[0], dict):
        if auths[0].get("is_enterprise_install") is True and auths[0].get("enterprise_id"):
            return str(auths[0]["enterprise_id"])
        if auths[0].get("team_id"):
            return str(auths[0]["team_id"])
    # slash commands (`is_enterprise_install` "true", `enterprise_id`) and clicks (`enterprise: {id}`)
    if body.get("is_enterprise_install") in (True, "true"):
        enterprise = body.get("enterprise_id") or _id_of(body.get("enterprise"))
        if enterprise:
            return str(enterprise)
    return str(body.get("team_id") or _id_of(body.get("team")) or fallback or "")


def _id_of(value) -> str:
    return str(value.get("id") or "") if isinstance(value, dict) else ""


def classify(event: dict, bot_user_id: str | None, team: str, *, agent_tab: bool = False) -> Incoming | None:
    """The message an event asks the bot to answer, or None when the bot should stay quiet. `team` is the installing
    workspace (installing_team), whoever sent the message. `agent_tab`: DMs are the app's Messages tab
    (agent messaging), where each top-level message starts a session of its own."""
    if not isinstance(event, dict) or event.get("bot_id") or event.get("bot_profile"):
        return None
    user = event.get("user")
    if not user or user == bot_user_id or not event.get("channel") or not event.get("ts"):
        return None
    kind = event.get("type")
    if kind == "app_mention":
        return _incoming(event, team, "mention")
    if kind != "message" or event.get("subtype") not in _USER_SUBTYPES:
        return None
    if event.get("channel_type") == "im":
        return _dm(event, team, agent_tab)
    thread_ts = event.get("thread_ts")
    if not thread_ts or thread_ts == event["ts"]:
        return None  # top-level channel chatter; mentions arrive as app_mention
    if bot_user_id and f"<@{bot_user_id}>" in (event.get("text") or ""):
        return None  # the app_mention event for the same message answers it
    return _incoming(event, team, "reply")


def _incoming(event: dict, team: str, kind: str) -> Incoming:
    ts = event["ts"]
    thread_ts = event.get("thread_ts") or ts
    return Incoming(
        team=team, channel=event["channel"], user=event["user"], text=event.get("text") or "", ts=ts,
        reply_thread_ts=thread_ts, chain_thread=thread_ts, kind=kind,
        in_existing_thread=kind == "mention" and thread_ts != ts, files=tuple(event.get("files") or ()),
        parent_user=event.get("parent_user_id") or "", user_team=event.get("user_team") or event.get("team") or "",
        action_token=_action_token(event),
    )


def _action_token(event: dict) -> str:
    """Where Slack puts a message's action_token: on the event (mentions, DMs, ...), or, as Bolt's
    fixtures show it, on the assistant thread it belongs to (slack-agents.md 7)."""
    thread = event.get("assistant_thread")
    token = event.get("action_token") or (thread.get("action_token") if isinstance(thread, dict) else None)
    return token if isinstance(token, str) else ""


def _dm(event: dict, team: str, agent_tab: bool) -> Incoming:
    """A DM. In the agent tab the person's message is the root of its own session: the answer goes in
    its thread, which is its chain. Otherwise a top-level DM is answered at the top level (one chain)."""
    thread_ts = event.get("thread_ts") or (event["ts"] if agent_tab else None)
    return Incoming(
        team=team, channel=event["channel"], user=event["user"], text=event.get("text") or "", ts=event["ts"],
        reply_thread_ts=thread_ts,
        chain_thread=thread_ts or DM_THREAD, kind="dm", files=tuple(event.get("files") or ()),
        parent_user=event.get("parent_user_id") or "", user_team=event.get("user_team") or event.get("team") or "",
        action_token=_action_token(event),
        context_channel=context_channel(event.get("app_context")),
    )


def context_channel(app_context) -> str | None:
    """The channel an `app_context` points at: the most relevant channel entity (or the channel of a
    message entity); "" when the person looks at nothing; None when there is no app_context at all."""
    if not isinstance(app_context, dict):
        return None
    for entity in app_context.get("entities") or []:
        if not isinstance(entity, dict):
            continue
        value = entity.get("value")
        if entity.get("type") == "slack#/types/channel_id" and isinstance(value, str) and value[:1] in "CGD":
            return value[:32]
        if isinstance(value, dict) and isinstance(value.get("channel_id"), str):  # message_context
            return value["channel_id"][:32]
    return ""
