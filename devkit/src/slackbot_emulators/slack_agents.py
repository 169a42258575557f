"""The agent surface of the Slack emulator (issue 19; /work/shared/reference/slack-agents.md 1-3, 5, 6, 8, 10).

Web API: assistant.threads.setSuggestedPrompts / setTitle (`not_agent_app` without agent_view; max 4
prompts; a `thread_ts` from an agent_view app "silently fails": ok, nothing shown), agents.sessions.setStatus
/ rename (active | processing | suspended | closed; `processing` shows Slack's Stop button only when the app
subscribes to `agent_session_stopped`, otherwise the call warns `missing_agent_session_stopped_event_subscription`
and no Stop is offered), views.publish (Home tab, at most 100 blocks).
Sessions also follow the documented bridge: chat.startStream and assistant.threads.setStatus with text make a
session `processing`, setStatus "" and chat.stopStream (`session_status`, default active) leave it.

Workspace side (what a person does; each returns the app's Delivery): `open_app_home` (app_home_opened,
tab messages or home), `look_at` (app_context_changed: the channel the person is viewing, remembered and
sent as `app_context` on their next DM and `context` on app_home_opened), `stop_session`
(agent_session_stopped), `rename_session` (agent_session_title_changed), `click_feedback` (block_actions
from a feedback_buttons element) and `message_shortcut` (message_action with a callback_id).

Tests read `suggested_prompts(channel)`, `session(channel, thread_ts)`, `home_view(user)`, and the task
cards of a stream through `SlackEmulator.stream(channel, ts).tasks` / `.task_history`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .slack_model import (
    SESSION_STATUSES, Component, Delivery, Message, SlackError, _format_ts, json_arg, parse_blocks,
)

MAX_PROMPTS = 4
MAX_TITLE = 200  # agents.sessions.* title
MAX_HOME_BLOCKS = 100  # views.publish: a Home view holds at most 100 blocks
MAX_SHORTCUTS = 5  # manifest-schema says 5, node-slack-sdk 10: the lower
PROCESSING_SECONDS = 3600.0  # "processing reverts to active after 1 h; re-send to extend"
STOP_WARNING = "missing_agent_session_stopped_event_subscription"
CUSTOMIZE_ARGS = ("icon_emoji", "icon_url", "username")  # need chat:write.customize


class AgentSurface(Component):
    def __init__(self, emu: Any):
        self.home_tab_enabled = True  # manifest features.app_home.home_tab_enabled
        self.processing_seconds = PROCESSING_SECONDS
        self.shortcuts: set[str] | None = None  # declared message shortcut callback_ids; None: any
        super().__init__(emu)

    def reset(self) -> None:
        self.prompts: dict[str, dict] = {}  # channel -> what the Messages tab shows at its top
        self.prompt_calls: list[dict] = []  # every setSuggestedPrompts, with whether it showed
        self.sessions: dict[tuple[str, str], dict] = {}  # (channel, thread_ts) -> session
        self.home_views: dict[str, dict] = {}  # user -> published Home view
        self.contexts: dict[str, dict] = {}  # user -> app_context (what they look at)

    # ------------------------------------------------------------ reading

    def suggested_prompts(self, channel: str) -> dict | None:
        return self.prompts.get(channel)

    def session(self, channel: str, thread_ts: str) -> dict | None:
        """The session with Slack's clock applied: `processing` reverts to active after an hour."""
        session = self.sessions.get((channel, thread_ts))
        if session and session["status"] == "processing" \
                and time.monotonic() - session["since"] >= self.processing_seconds:
            self._set(session, "active", "timeout")
        return session

    def home_view(self, user: str) -> dict | None:
        return self.home_views.get(user)

    def app_context(self, user: str | None) -> dict | None:
        if user is None or not self.emu.subscribed("app_context_changed"):
            return None
        return self.contexts.get(user)

    def state(self) -> dict:
        return {"prompts": self.prompts, "home_views": self.home_views,
                "sessions": [self.session(*key) for key in list(self.sessions)]}

    # ------------------------------------------------------------ Web API

    def _need_agent_view(self) -> None:
        if not self.emu.agent_view:
            raise SlackError("not_agent_app")

    def _api_assistant_threads_setSuggestedPrompts(self, p: dict) -> dict:
        self._need_agent_view()
        ch = self.emu._channel(p.get("channel_id"))
        prompts = json_arg(p.get("prompts"))
        if not isinstance(prompts, list) or not 0 < len(prompts) <= MAX_PROMPTS or not all(
                isinstance(x, dict) and isinstance(x.get("title"), str) and x["title"]
                and isinstance(x.get("message"), str) and x["message"] for x in prompts):
            raise SlackError("invalid_arguments")
        if p.get("title") is not None and not isinstance(p["title"], str):
            raise SlackError("invalid_arguments")
        # An agent_view app's prompts sit at the top of the Messages tab: with thread_ts the call "silently
        # fails" (ok, nothing shown).
        shown = not p.get("thread_ts")
        entry = {"channel": ch.id, "title": p.get("title"), "prompts": prompts, "thread_ts": p.get("thread_ts"),
                 "shown": shown, "time": time.time()}
        self.prompt_calls.append(entry)
        if shown:
            self.prompts[ch.id] = entry
            self.emu._emit("suggested_prompts", entry)
        return {}

    def _api_assistant_threads_setTitle(self, p: dict) -> dict:
        self._need_agent_view()
        if not p.get("channel_id") or not p.get("thread_ts") or not isinstance(p.get("title"), str):
            raise SlackError("invalid_arguments")
        ch = self.emu._channel(p["channel_id"])
        session = self._session(ch.id, str(p["thread_ts"]), "active", None)
        session["title"] = p["title"][:MAX_TITLE]
        self.emu._emit("session", session)
        return {}

    def _api_agents_sessions_setStatus(self, p: dict) -> dict:
        if not self.emu.agent_view:
            raise SlackError("feature_disabled")
        if any(p.get(k) for k in CUSTOMIZE_ARGS) and "chat:write.customize" not in self.emu.scopes:
            raise SlackError("missing_scope", needed="chat:write.customize")
        ch = self.emu._channel(p.get("channel_id"))
        if p.get("status") not in SESSION_STATUSES:
            raise SlackError("invalid_status")
        if not p.get("thread_ts"):
            raise SlackError("thread_ts_required")  # only Slack Code's session channels go without (not emulated)
        title = p.get("title")
        if title is not None and not (isinstance(title, str) and len(title) <= MAX_TITLE):
            raise SlackError("invalid_arguments")
        initiator = p.get("initiator_user_id")
        if initiator is not None and initiator not in self.emu.users:
            raise SlackError("user_not_found")
        session = self._session(ch.id, str(p["thread_ts"]), None, initiator, title)
        self._set(session, p["status"], "agents.sessions.setStatus")
        out = {"status": session["status"], "agent_status": session["status"], "title": session["title"]}
        if p["status"] == "processing" and not session["stop_button"]:
            out.update(warning=STOP_WARNING, response_metadata={"warnings": [STOP_WARNING]})
        return out

    def _api_agents_sessions_rename(self, p: dict) -> dict:
        ch = self.emu._channel(p.get("channel_id"))
        title = p.get("title")
        if not isinstance(title, str) or not 0 < len(title) <= MAX_TITLE:
            raise SlackError("invalid_arguments")
        session = self.session(ch.id, str(p.get("thread_ts")))
        if session is None:
            raise SlackError("session_not_found")
        session["title"] = title
        self.emu._emit("session", session)
        return {"title": title}

    def _api_views_publish(self, p: dict) -> dict:
        if not self.home_tab_enabled:
            raise SlackError("not_enabled")
        user = p.get("user_id")
        if user not in self.emu.users:
            raise SlackError("user_not_found")
        view = json_arg(p.get("view"))
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError("invalid_arguments")
        blocks = view.get("blocks") or []
        if len(blocks) > MAX_HOME_BLOCKS:
            raise SlackError("invalid_arguments", response_metadata={
                "messages": [f"[ERROR] must be no more than {MAX_HOME_BLOCKS} items [json-pointer:/view/blocks]"]})
        try:
            parse_blocks(blocks, max_blocks=MAX_HOME_BLOCKS)
        except SlackError:
            raise SlackError("invalid_arguments", response_metadata={
                "messages": ["[ERROR] invalid block [json-pointer:/view/blocks]"]}) from None
        current = self.home_views.get(user)
        if p.get("hash") and current and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        published = {**view, "id": current["id"] if current else self.emu._new_id("V"),
                     "hash": f"{time.time():.6f}", "team_id": self.emu.team_id, "app_id": self.emu.app_id,
                     "bot_id": self.emu.bot_id, "user": user}
        self.home_views[user] = published
        self.emu._emit("home_view", {"user": user, "blocks": len(blocks)})
        return {"view": published}

    # ------------------------------------------------------------ sessions

    def _session(self, channel: str, thread_ts: str, status: str | None, initiator: str | None,
                 title: str | None = None) -> dict:
        """The session of a thread, created if missing; title and initiator count only at creation."""
        key = (channel, thread_ts)
        if key not in self.sessions:
            ch = self.emu.channels[channel]
            human = next(iter(ch.members - {self.emu.bot_user_id}), None) if ch.is_im else None
            self.sessions[key] = {"channel": channel, "thread_ts": thread_ts, "status": status or "active",
                                  "title": title, "initiator_user_id": initiator or human, "stop_button": False,
                                  "since": time.monotonic(), "history": []}
        return self.sessions[key]

    def _set(self, session: dict, status: str, via: str) -> None:
        session["status"], session["since"] = status, time.monotonic()
        # Slack draws Stop beside "Working…" only for apps that listen for agent_session_stopped.
        session["stop_button"] = status == "processing" and self.emu.subscribed("agent_session_stopped")
        session["history"].append({"status": status, "via": via, "time": time.time()})
        self.emu._emit("session", {k: v for k, v in session.items() if k != "since"})

    def bridge(self, channel: str, thread_ts: str, status: str, via: str) -> None:
        """Streams and thread statuses move an agent app's session (the documented bridge)."""
        if self.emu.agent_view and status in SESSION_STATUSES:
            self._set(self._session(channel, thread_ts, None, None), status, via)

    # ------------------------------------------------------------ workspace side

    async def open_app_home(self, user: str, tab: str = "messages") -> Delivery:
        """The person opens the app: its Messages tab (where an agent app's chats live) or its Home tab."""
        if tab not in ("messages", "home"):
            raise ValueError("tab must be 'messages' or 'home'")
        dm = self.emu.dm_with(user)
        event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": dm.id, "tab": tab,
                                 "event_ts": _format_ts(time.time())}
        if tab == "home" and (view := self.home_views.get(user)):
            event["view"] = view
        if self.emu.agent_view and (context := self.app_context(user)) is not None:
            event["context"] = context
        return await self.emu.deliver_workspace_event(event, self.emu.team_of(dm))

    async def look_at(self, user: str, channel: str | None) -> Delivery:
        """The person views a channel (None: nothing in particular) beside the agent's container:
        app_context_changed, entities ordered by relevance, {} when none. Needs agent_view."""
        if not self.emu.agent_view:
            return Delivery(0, "", {}, 0.0, error="not delivered: app_context_changed needs agent_view")
        entities = []
        if channel is not None:
            ch = self.emu.channels[channel]
            entities.append({"type": "slack#/types/channel_id", "value": ch.id, "team_id": self.emu.team_of(ch)})
        context = {"entities": entities} if entities else {}
        self.contexts[user] = context
        dm = self.emu.dm_with(user)
        # The docs' example carries only `context`; node-slack-sdk adds user, channel and event_ts: sent here.
        event = {"type": "app_context_changed", "user": user, "channel": dm.id, "context": context,
                 "event_ts": _format_ts(time.time())}
        return await self.emu.deliver_workspace_event(event, self.emu.team_of(dm))

    async def stop_session(self, channel: str, thread_ts: str, user: str) -> Delivery:
        """The person presses Slack's own Stop on a processing session: agent_session_stopped with the
        messages still streaming there. The status does not change on its own: the app must leave
        processing (and stop its streams)."""
        session = self.session(channel, thread_ts)
        if session is None or session["status"] != "processing":
            raise ValueError(f"no processing session at {channel}/{thread_ts}")
        if not session["stop_button"]:
            raise ValueError("Slack shows no Stop button: the app does not subscribe to agent_session_stopped")
        if session["initiator_user_id"] and user != session["initiator_user_id"]:
            raise ValueError(f"only {session['initiator_user_id']} can stop this session")
        streaming = [st.ts for st in self.emu.streams.values() if st.channel == channel
                     and st.thread_ts == thread_ts and self.emu._stream_live(st).state == "streaming"]
        event = {"type": "agent_session_stopped", "channel": channel, "user": user, "thread_ts": thread_ts,
                 "event_ts": _format_ts(time.time()), "streaming_message_ts": streaming}
        return await self.emu.deliver_workspace_event(event, self.emu.team_of(self.emu.channels[channel]))

    async def rename_session(self, channel: str, thread_ts: str, user: str, title: str) -> Delivery:
        session = self.session(channel, thread_ts)
        if session is None:
            raise ValueError(f"no session at {channel}/{thread_ts}")
        previous, session["title"] = session["title"], title
        event = {"type": "agent_session_title_changed", "channel": channel, "user": user, "thread_ts": thread_ts,
                 "title": title, "event_ts": _format_ts(time.time())}
        if previous is not None:
            event["previous_title"] = previous
        return await self.emu.deliver_workspace_event(event, self.emu.team_of(self.emu.channels[channel]))

    async def click_feedback(self, message: Message, rating: str = "positive", *, user: str = "U_ALICE") -> Delivery:
        """The person presses 👍 ("positive") or 👎 ("negative") under an answer: block_actions whose action
        is the feedback_buttons element with the pressed button's value and text; `message` is the rated one."""
        if rating not in ("positive", "negative"):
            raise ValueError("rating must be 'positive' or 'negative'")
        block, element = next(((b, e) for b in message.blocks or [] if b.get("type") == "context_actions"
                               for e in b.get("elements") or [] if e.get("type") == "feedback_buttons"),
                              (None, None))
        if element is None:
            raise LookupError("the message has no feedback buttons")
        button = element[f"{rating}_button"]
        ch = self.emu.channels[message.channel]
        container = {"type": "message", "message_ts": message.ts, "channel_id": ch.id, "is_ephemeral": False}
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
        payload = {
            "type": "block_actions", **self.emu.interaction_base(ch, user), "container": container,
            "channel": {"id": ch.id, "name": ch.name}, "message": message.to_json(), "state": {"values": {}},
            "response_url": self.emu._new_response_url(ch.id, user, message.thread_ts, message.ts),
            "actions": [{"type": "feedback_buttons", "action_id": element["action_id"],
                         "block_id": block.get("block_id") or "emu-block", "value": button["value"],
                         "text": button["text"], "action_ts": _format_ts(time.time())}],
        }
        return await self.emu.send_interaction(payload)

    async def message_shortcut(self, message: Message, callback_id: str, *, user: str = "U_ALICE") -> Delivery:
        """The person runs a message shortcut on `message`: a message_action payload (ack within 3 s)."""
        if self.shortcuts is not None and callback_id not in self.shortcuts:
            raise ValueError(f"the app declares no message shortcut {callback_id!r}")
        ch = self.emu.channels[message.channel]
        # the message as Slack sends it: a thread's parent carries thread_ts and its reply counts
        shown = self.emu._reply_json(message, self.emu.messages(ch.id, message.ts)) \
            if message.thread_ts in (None, message.ts) else message.to_json()
        payload = {
            "type": "message_action", **self.emu.interaction_base(ch, user), "callback_id": callback_id,
            "action_ts": _format_ts(time.time()), "message_ts": message.ts, "message": shown,
            "channel": {"id": ch.id, "name": "directmessage" if ch.is_im else ch.name},
            "response_url": self.emu._new_response_url(ch.id, user, message.thread_ts or message.ts),
        }
        return await self.emu.send_interaction(payload)

    def declare_shortcuts(self, callback_ids: list[str]) -> None:
        """The manifest's message shortcuts (at most 5; callback_id at most 255 characters)."""
        if len(callback_ids) > MAX_SHORTCUTS or any(not 0 < len(c) <= 255 for c in callback_ids):
            raise ValueError(f"at most {MAX_SHORTCUTS} shortcuts, callback_id 1-255 characters")
        self.shortcuts = set(callback_ids)

    # ------------------------------------------------------------ control endpoints

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/_emu/app_home", self._http_app_home)
        app.router.add_post("/_emu/app_context", self._http_app_context)
        app.router.add_post("/_emu/stop_session", self._http_stop_session)
        app.router.add_post("/_emu/feedback", self._http_feedback)
        app.router.add_post("/_emu/shortcut", self._http_shortcut)

    async def _http_app_home(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.open_app_home(b.get("user") or "U_ALICE", b.get("tab") or "messages")
        return web.json_response({"delivery": d.to_json()})

    async def _http_app_context(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.look_at(b.get("user") or "U_ALICE", b.get("channel"))
        return web.json_response({"delivery": d.to_json()})

    async def _http_stop_session(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.stop_session(b["channel"], b["thread_ts"], b.get("user") or "U_ALICE")
        return web.json_response({"delivery": d.to_json()})

    async def _http_feedback(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.click_feedback(self.emu.message(b["channel"], b["ts"]), b.get("rating") or "positive",
                                      user=b.get("user") or "U_ALICE")
        return web.json_response({"delivery": d.to_json()})

    async def _http_shortcut(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.message_shortcut(self.emu.message(b["channel"], b["ts"]), b["callback_id"],
                                        user=b.get("user") or "U_ALICE")
        return web.json_response({"delivery": d.to_json()})

