"""A Slack emulator: the Web API methods the bot uses, with Slack's real limits, plus a tiny
workspace that delivers signed Events API callbacks, slash commands and button clicks.

Tests, the sandbox page and the benchmark drive the REAL Bolt app through it over real HTTP:
the app's `AsyncWebClient(base_url=emulator.api_url)` calls in, and the emulator posts
deliveries to `app_url` exactly as Slack would (see /work/shared/reference/slack.md).

Wire facts it relies on (checked against slack_sdk 3.47):
- AsyncWebClient sends chat.postMessage/update/postEphemeral and assistant.threads.setStatus as
  JSON bodies; most other methods (`params=`) as the *query string* of a POST with an empty
  form body. Form bodies from other clients are accepted too. The token comes as
  `Authorization: Bearer`, or as a `token` parameter.
- Native streaming (chat.startStream/appendStream/stopStream, also via `client.chat_stream`) and
  assistant.threads.setStatus are JSON bodies. What tests read: `stream(channel, ts)` (state,
  `.texts` after every call, tasks, plan), `user_stops_stream(...)` (the recipient's Stop; control
  POST /_emu/stop_stream), `current_status(channel, thread_ts)` and `status_history(...)`. The
  constructor's `stream_expiry_seconds` and `status_clear_seconds` are Slack's ~5 min and 2 min.
- Installations (slack_model.Installation): each token acts as its installation, whose bot user, scopes and
  workspace(s) every method reads (`acting`); the constructor's bot token is the first workspace's. More
  workspaces (`add_workspace`), channels (`add_channel`: private, group DMs) and people (`add_user`: title,
  tz, guests) are for tests. A person deleting a message (`user_deletes`, POST /_emu/delete) sends
  message_deleted, or a tombstone message_changed for a thread parent with replies; chat.delete does the same
  for the app's own messages (echoed with echo_bot_events). `subscriptions` (the manifest's bot_events) and
  `agent_view` are the workspace's settings for the app.
- Feature modules, each with its own docstring, methods, state and control endpoints: slack_agents
  (`emu.agents`: prompts, sessions, Home, app_home_opened / app_context_changed / agent_session_stopped,
  feedback clicks, message shortcuts), slack_search (`emu.search`: assistant.search.context,
  chat.getPermalink, conversations.history), slack_directory (`emu.directory`: user groups,
  conversations.members), slack_canvases (`emu.canvases`), slack_oauth (`emu.oauth`: Add to Slack,
  oauth.v2.access, rotation, org-wide installs, uninstall). Data types and validators are slack_model.
- files_upload_v2 POSTs the raw bytes (no auth header) to the upload_url returned by
  files.getUploadURLExternal and only checks for HTTP 200; Slack answers `text/plain`
  "OK - <size>", so we do as well.
"""

import argparse
import asyncio
import contextlib
import contextvars
import base64
import hashlib
import hmac
import itertools
import json
import mimetypes
import secrets
import time
import uuid
from typing import Any, Callable
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from . import guard
from .slack_agents import AgentSurface
from .slack_canvases import Canvases
from .slack_directory import Directory
from .slack_model import (  # noqa: F401  (re-exported: tests and the sandbox import them from here)
    MARKDOWN_TOTAL_LIMIT, MAX_BLOCKS, SESSION_STATUSES, TASK_STATUSES, TEXT_LIMIT, UPDATE_TEXT_LIMIT, Call,
    SIGN_IN_PAGE, Channel, Delivery, Grant, Installation, Message, SlackError, Stream, TokenBucket, User, Workspace,
    _find_action,
    _format_ts, _read_params, _ts_key, check_task_order, parse_blocks, parse_chunks, rendered_links,
)
from .slack_oauth import OAuth
from .slack_views import Views
from .slack_search import Search

REPLIES_PAGE_CAP = 15  # conversations.replies for non-Marketplace apps, whatever `limit` says
RESPONSE_URL_USES, RESPONSE_URL_TTL = 5, 30 * 60


DEFAULT_SCOPES = frozenset({
    "chat:write", "chat:write.public", "commands", "app_mentions:read", "channels:history",
    "groups:history", "im:history", "mpim:history", "users:read", "files:write", "files:read",
    # what the coming agent, search, canvas and governance work asks for (slack-agents.md 2-3, 7, 9)
    "assistant:write", "search:read.public", "search:read.files", "search:read.users", "canvases:write",
    "usergroups:read", "channels:read", "groups:read", "im:read", "mpim:read",
})
# Events the app subscribes to (the manifest's bot_events): a workspace setting, `SlackEmulator.subscriptions`.
# message.* events are also gated by their history scope, as before.
DEFAULT_SUBSCRIPTIONS = frozenset({
    "app_mention", "message.channels", "message.groups", "message.im", "message.mpim", "app_home_opened",
    "app_context_changed", "agent_session_stopped", "agent_session_title_changed", "app_uninstalled",
    "tokens_revoked", "subteam_members_changed",
})
# Scope checked per method (missing_scope); methods not listed are not scope-checked.
REQUIRED_SCOPES = {
    "chat.postMessage": "chat:write", "chat.update": "chat:write", "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write", "users.info": "users:read",
    "files.getUploadURLExternal": "files:write", "files.completeUploadExternal": "files:write",
    "files.delete": "files:write",
    "chat.startStream": "chat:write", "chat.appendStream": "chat:write", "chat.stopStream": "chat:write",
    "assistant.threads.setSuggestedPrompts": "assistant:write", "assistant.threads.setTitle": "assistant:write",
    "agents.sessions.setStatus": "chat:write", "agents.sessions.rename": "chat:write",
    "assistant.search.context": "search:read.public", "canvases.create": "canvases:write",
    "conversations.canvases.create": "canvases:write", "usergroups.list": "usergroups:read",
    "usergroups.users.list": "usergroups:read",
}
# Reading a conversation (conversations.replies, message.* events) needs its type's history scope.
HISTORY_SCOPES = {"channel": "channels:history", "group": "groups:history", "im": "im:history",
                  "mpim": "mpim:history"}
MESSAGE_EVENTS = {"channel": "message.channels", "group": "message.groups", "im": "message.im", "mpim": "message.mpim"}
# conversations.info / conversations.members need the type's read scope.
READ_SCOPES = {"channel": "channels:read", "group": "groups:read", "im": "im:read", "mpim": "mpim:read"}
# method -> (per_minute, burst, "team"|"channel"); "*" is every other method, each its own bucket.
DEFAULT_RATE_LIMITS: dict[str, tuple[float, int, str]] = {
    "chat.update": (50, 50, "team"),  # Tier 3, shared by every conversation
    "chat.postMessage": (60, 5, "channel"),  # ~1/s per channel, short bursts
    "conversations.replies": (1, 1, "team"),  # Tier 1 for non-Marketplace apps since 2025
    "chat.startStream": (20, 20, "team"),  # Tier 2
    "chat.appendStream": (100, 100, "team"),  # Tier 4
    "chat.stopStream": (20, 20, "team"),  # Tier 2
    "assistant.threads.setStatus": (600, 600, "team"),  # special tier: generous, unpublished; 10/s here
    # Tiers from slack-agents.md; where two sources give two tiers, the lower one.
    "conversations.history": (1, 1, "team"),  # Tier 1 for non-Marketplace apps, like replies (section 12)
    "assistant.threads.setSuggestedPrompts": (50, 50, "team"),  # t4 (REF) vs t3 (java-slack-sdk): t3
    "assistant.threads.setTitle": (50, 50, "team"),  # likewise
    "agents.sessions.setStatus": (50, 50, "team"),  # Tier 3
    "agents.sessions.rename": (50, 50, "team"),  # Tier 3
    "views.publish": (100, 100, "team"),  # Tier 4
    "views.open": (100, 100, "team"),  # Tier 4
    "canvases.create": (20, 20, "team"),  # Tier 2
    "conversations.canvases.create": (20, 20, "team"),  # Tier 2
    "usergroups.list": (20, 20, "team"),  # Tier 2
    "usergroups.users.list": (20, 20, "team"),  # Tier 2
    # "10+ a minute per workspace (400+ for large teams)": 10 here; per person 10 too (slack_search)
    "assistant.search.context": (10, 10, "team"),
    "*": (100, 100, "team"),
}

# Native streaming (chat.startStream / appendStream / stopStream) and thread status.
STREAM_MARKDOWN_LIMIT = 12_000  # markdown per call (markdown_text + markdown_text chunks)
STREAM_EXPIRY_SECONDS = 300.0  # Slack closes a stream after ~5 minutes even while appends flow
STATUS_CLEAR_SECONDS = 120.0  # setStatus: "a two minute timeout applies"
# The installation an API call or a workspace event acts for (see SlackEmulator.acting): set per request.
_ACTING: contextvars.ContextVar[Installation | None] = contextvars.ContextVar("slack_emulator_acting", default=None)
MAX_LOADING_MESSAGES = 10


class SlackEmulator:
    def __init__(self, *, signing_secret: str = "test-signing-secret", bot_token: str = "xoxb-test-token",
                 app_token: str = "xapp-test-token", team_id: str = "T0001", bot_user_id: str = "UBOT", bot_id: str = "BBOT",
                 app_url: str | None = None, rate_limits: bool = True, echo_bot_events: bool = False,
                 scopes: set[str] | None = None, app_id: str = "A0001", delivery_timeout: float = 10.0,
                 stream_expiry_seconds: float = STREAM_EXPIRY_SECONDS,
                 status_clear_seconds: float = STATUS_CLEAR_SECONDS, agent_view: bool = True,
                 subscriptions: set[str] | None = None):
        self.signing_secret, self.bot_token, self.app_token = signing_secret, bot_token, app_token
        self.team_id, self.app_id = team_id, app_id
        self.app_url, self.rate_limits, self.echo_bot_events = app_url, rate_limits, echo_bot_events
        # The workspace's settings for the app: its manifest's features.agent_view and bot_events.
        self.agent_view = agent_view
        self.subscriptions = set(DEFAULT_SUBSCRIPTIONS if subscriptions is None else subscriptions)
        self.workspaces: dict[str, Workspace] = {team_id: Workspace(team_id, "Emulated Workspace", "emulated")}
        # The install the constructor's bot token stands for; OAuth (slack_oauth) adds more.
        self.primary = Installation(team_id, None, bot_user_id, bot_id, set(DEFAULT_SCOPES if scopes is None else scopes))
        self.installations: list[Installation] = [self.primary]
        self.tokens: dict[str, Grant] = {bot_token: Grant(self.primary), app_token: Grant(self.primary, "app")}
        self.revoked_tokens: set[str] = set()
        self._grant: Grant | None = None  # the grant of the API call being answered
        self._request_authorization = ""  # its Authorization header
        self.delivery_timeout = delivery_timeout
        self.stream_expiry_seconds, self.status_clear_seconds = stream_expiry_seconds, status_clear_seconds
        self.verification_token = "emulated-verification-token"  # deprecated field, still sent
        self.base_url = self.api_url = ""
        self._rate_config = dict(DEFAULT_RATE_LIMITS)
        self._ids = itertools.count(1)
        self._last_ts_us = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        self._feeds: set[asyncio.Queue] = set()
        self._tickets: set[str] = set()  # Socket Mode URLs handed out and not used yet (single use)
        self.sockets: set[web.WebSocketResponse] = set()  # Socket Mode connections open now
        # Feature modules, each owning its methods (`_api_*`), state, events and control endpoints.
        self.agents, self.search, self.directory = AgentSurface(self), Search(self), Directory(self)
        self.canvases, self.oauth, self.views = Canvases(self), OAuth(self), Views(self)
        self.components = (self.agents, self.search, self.directory, self.canvases, self.oauth, self.views)
        self.reset()

    # ---------------------------------------------- who is acting (installations)
    # An API call acts as the installation its token belongs to; a workspace event (a person posts)
    # acts as the installation covering that workspace. The bot's identity (bot_user_id, bot_id) and
    # its scopes are that installation's, so every method below reads them the same way.

    def _acting(self) -> Installation:
        return _ACTING.get() or self.primary

    @contextlib.contextmanager
    def acting(self, install: Installation | None):
        token = _ACTING.set(install)
        try:
            yield install
        finally:
            _ACTING.reset(token)

    @property
    def bot_user_id(self) -> str:
        return self._acting().bot_user_id

    @property
    def bot_id(self) -> str:
        return self._acting().bot_id

    @property
    def scopes(self) -> set[str]:
        return self._acting().scopes

    @scopes.setter
    def scopes(self, granted: set[str]) -> None:  # outside a request: the default installation's grant
        self._acting().scopes = set(granted)

    def team_of(self, ch: Channel) -> str:
        return ch.team or self.team_id

    def install_for(self, team_id: str) -> Installation | None:
        """The installation that serves a workspace (its own, else its org's), or None: not installed."""
        workspace = self.workspaces.get(team_id)
        if workspace is None:
            return None
        return next((i for i in self.installations if i.covers(workspace)), None)

    def add_workspace(self, team_id: str, name: str, *, enterprise_id: str | None = None,
                      enterprise_name: str | None = None, plan: str = "pro") -> Workspace:
        self.workspaces[team_id] = Workspace(team_id, name, name.lower().replace(" ", "-"), enterprise_id,
                                             enterprise_name, plan)
        return self.workspaces[team_id]

    def add_channel(self, channel_id: str, name: str, members: set[str], *, private: bool = False,
                    mpim: bool = False, im: bool = False, team: str | None = None) -> Channel:
        """A conversation for a test: a public or private channel, a group DM (`mpim`) or a DM (`im`).
        Add the bot's user id to `members` for the app to be in it."""
        ch = Channel(channel_id, name, im, set(members), is_private=private or mpim, is_mpim=mpim, team=team)
        self.channels[channel_id] = ch
        return ch

    def dm_with(self, user: str) -> Channel:
        """The person's DM with the app (its Messages tab), opened if they never wrote."""
        bot = self.install_for(self.users[user].team or self.team_id) if user in self.users else None
        bot_user = (bot or self.primary).bot_user_id
        for ch in self.channels.values():
            if ch.is_im and ch.members == {user, bot_user}:
                return ch
        return self.add_channel(f"D_{user.removeprefix('U_')}", user, {user, bot_user}, im=True,
                                team=self.users[user].team if user in self.users else None)

    def message(self, channel: str, ts: str) -> Message:
        msg = next((m for m in self.channels[channel].messages if m.ts == ts), None)
        if msg is None:
            raise LookupError(f"no message {ts} in {channel}")
        return msg

    def add_user(self, user_id: str, name: str, real_name: str, **fields: Any) -> User:
        """A person: `title`, `tz`, `guest` ("multi"/"single"), `is_admin`, `team` (see User)."""
        self.users[user_id] = User(user_id, name, real_name, **fields)
        return self.users[user_id]

    # ----------------------------------------------------------------- state

    def reset(self) -> None:
        """Back to the seeded workspace; configuration (rate limits, scopes, app_url, workspaces,
        installations and their tokens) is kept."""
        self.users = {u.id: u for u in (User("U_ALICE", "alice", "Alice Adams", title="Product Manager",
                                             tz="Europe/Berlin"),
                                        User("U_BOB", "bob", "Bob Brown", title="Billing Service Owner",
                                             tz="America/New_York"),
                                        User("U_CAROL", "carol", "Carol Chen", title="Engineer", tz="UTC"))}
        humans = set(self.users)
        bot = self.primary.bot_user_id
        self.channels = {c.id: c for c in (
            Channel("C_GENERAL", "general", False, humans | {bot}),
            Channel("C_RANDOM", "random", False, set(humans)),
            Channel("D_ALICE", "alice", True, {"U_ALICE", bot}),
        )}
        self.calls: list[Call] = []
        self.echoes: list[Delivery] = []  # the app's answers to echoed bot events (echo_bot_events)
        self.ephemerals: list[dict] = []
        self.files: list[dict] = []  # uploads by the bot and files people share (host_file)
        self.file_requests: list[dict] = []  # every GET of a file URL: host, path, whether it carried the token
        self.statuses: list[dict] = []  # every status shown or cleared, in order (see status_history)
        self.streams: dict[tuple[str, str], Stream] = {}  # (channel, ts) -> native stream
        self._shown_status: dict[tuple[str, str], dict] = {}  # (channel, thread_ts) -> status on screen
        self._buckets: dict[tuple, TokenBucket] = {}
        self._failures: dict[str, list[tuple[str, int, int | None, str, bool]]] = {}
        self._held: dict[str, int] = {}  # method -> successful calls whose answer is held back (hold_next)
        self.hold_seconds = 0.0
        self._uploads: dict[str, dict] = {}  # file_id -> pending upload
        self._responses: dict[str, dict] = {}  # response_url id -> its context
        for component in self.components:
            component.reset()

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def ratelimited(self, method: str | None = None) -> int:
        return sum(1 for c in self.calls if c.status == 429 and method in (None, c.method))

    def messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """Top-level messages of a channel, or a thread (parent + replies) in ts order."""
        msgs = self.channels[channel].messages
        if thread_ts is None:
            return [m for m in msgs if m.thread_ts in (None, m.ts)]
        return sorted((m for m in msgs if thread_ts in (m.ts, m.thread_ts)), key=lambda m: _ts_key(m.ts))

    def bot_messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[Message]:
        """The bot's messages, thread replies included, in one channel/thread or everywhere."""
        if thread_ts is not None:
            msgs = self.messages(channel, thread_ts)
        else:
            chans = [self.channels[channel]] if channel else self.channels.values()
            msgs = sorted((m for c in chans for m in c.messages), key=lambda m: _ts_key(m.ts))
        bot_ids = {i.bot_id for i in self.installations}
        return [m for m in msgs if m.bot_id in bot_ids]

    def set_rate_limit(self, method: str, per_minute: float, burst: int, scope: str = "team") -> None:
        if scope not in ("team", "channel"):
            raise ValueError("scope must be 'team' or 'channel'")
        self._rate_config[method] = (per_minute, burst, scope)
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] != method}

    def hold_next(self, method: str, seconds: float, times: int = 1) -> None:
        """The next `times` successful calls to `method` take effect at once but answer after `seconds`
        (so a test can kill the caller between Slack accepting a post and the caller hearing of it)."""
        self._held[method] = self._held.get(method, 0) + times
        self.hold_seconds = seconds

    def fail_next(self, method: str, error: str = "ratelimited", times: int = 1, retry_after: int = 1, *,
                  status: int | None = None, content_type: str = "application/json", applied: bool = False) -> None:
        """The next `times` calls to `method` fail, without taking effect: 429 + Retry-After for
        "ratelimited", else 200 ok:false. With a 5xx `status`, Slack's side broke: `content_type`
        application/json answers {"ok": false, "error": error}; text/plain ("500 Internal Server
        Error") and text/html (a gateway's error page) are what a proxy in front of Slack sends.
        `applied` (5xx only): the call takes effect first and only its answer is lost (a gateway
        timing out on a backend that finished), so the caller cannot know whether it happened."""
        if status is not None and not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        if content_type not in ("application/json", "text/plain", "text/html"):
            raise ValueError("content_type must be application/json, text/plain or text/html")
        if applied and status is None:
            raise ValueError("only a 5xx can follow a call that took effect")
        self._failures.setdefault(method, []).extend([(error, retry_after, status, content_type, applied)] * times)

    def heal(self, method: str | None = None) -> None:
        """Drop the failures still queued by fail_next (for `method`, or all): Slack is back."""
        if method is None:
            self._failures.clear()
        else:
            self._failures.pop(method, None)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll until predicate() is truthy (e.g. the bot answered in a background task)."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(interval)
        return result

    def _next_ts(self) -> str:
        # Slack ts: epoch seconds with 6 digits, unique and increasing within a channel.
        self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(3).upper()}"

    def _store(self, msg: Message) -> Message:
        self.channels[msg.channel].messages.append(msg)
        self._emit("message", self._message_state(msg))
        if msg.bot_id == self.bot_id and msg.thread_ts:  # the app's reply clears its thread status
            self._clear_status(msg.channel, msg.thread_ts, "message")
        if msg.bot_id == self.bot_id:
            self._echo(self._bot_message_event(msg))
        return msg

    def _edit(self, msg: Message, text: str | None, blocks: list | None) -> None:
        before = msg.to_json()
        if text is not None:
            msg.text = text
        if blocks is not None:
            msg.blocks = blocks or None  # [] clears the blocks, omitted keeps them
        msg.edits.append((time.time(), msg.text, msg.blocks))
        self._emit("message_changed", self._message_state(msg))
        ch = self.channels[msg.channel]
        self._echo({"type": "message", "subtype": "message_changed", "hidden": True, "channel": ch.id,
                    "channel_type": ch.channel_type, "ts": (ts := self._next_ts()), "event_ts": ts,
                    "message": msg.to_json(), "previous_message": before})

    def _delete(self, msg: Message) -> list[dict]:
        """Delete a message as Slack does, and return the message events that tells the app: a thread
        parent with replies stays as a tombstone (`message_changed` to subtype "tombstone"); anything
        else goes (`message_deleted`), and a deleted reply also changes its parent (`message_changed`:
        reply_count), removing a tombstone parent whose last reply went."""
        ch = self.channels[msg.channel]
        before = msg.to_json()
        if msg.thread_ts in (None, msg.ts) and len(self.messages(ch.id, msg.ts)) > 1:
            msg.subtype, msg.text, msg.blocks, msg.files = "tombstone", "This message was deleted.", None, []
            msg.user, msg.bot_id, msg.hidden, msg.thread_ts = "USLACKBOT", None, True, msg.ts
            self._emit("message_changed", self._message_state(msg))
            return [self._changed_event(ch, msg, before)]
        ch.messages.remove(msg)
        self._emit("message_deleted", {"channel": msg.channel, "ts": msg.ts})
        ts = self._next_ts()
        events = [{"type": "message", "subtype": "message_deleted", "hidden": True, "channel": ch.id,
                   "channel_type": ch.channel_type, "ts": ts, "event_ts": ts, "deleted_ts": msg.ts,
                   "previous_message": before}]
        parent = next((m for m in ch.messages if msg.thread_ts not in (None, msg.ts) and m.ts == msg.thread_ts), None)
        if parent is not None and parent.subtype == "tombstone" and len(self.messages(ch.id, parent.ts)) == 1:
            events += self._delete(parent)
        elif parent is not None:
            events.append(self._changed_event(ch, parent, parent.to_json()))
        return events

    def _changed_event(self, ch: Channel, msg: Message, before: dict) -> dict:
        ts = self._next_ts()
        return {"type": "message", "subtype": "message_changed", "hidden": True, "channel": ch.id,
                "channel_type": ch.channel_type, "ts": ts, "event_ts": ts,
                "message": self._reply_json(msg, self.messages(ch.id, msg.ts)), "previous_message": before}

    async def user_deletes(self, channel: str, ts: str, *, user: str | None = None) -> list[Delivery]:
        """A person deletes a message (their own; an admin any): the events Slack sends the app, if it
        hears the conversation, delivered in order. Returns their deliveries (none if not heard)."""
        ch = self.channels[channel]
        msg = next((m for m in ch.messages if m.ts == ts), None)
        if msg is None:
            raise LookupError(f"no message {ts} in {channel}")
        user = user or msg.user
        if user != msg.user and not (user in self.users and self.users[user].is_admin):
            raise ValueError(f"{user} may not delete {msg.user}'s message")
        events = self._delete(msg)
        if not self._hears(ch):
            return []
        with self.acting(self.install_for(self.team_of(ch))):
            return [await self.deliver_event(e) for e in events]

    def _message_state(self, msg: Message) -> dict:
        out = {**msg.to_json(), "channel": msg.channel, "visible_text": msg.visible_text,
               "edit_count": len(msg.edits)}
        if stream := self.streams.get((msg.channel, msg.ts)):
            out["stream"] = self._stream_live(stream).to_json()
        return out

    # ------------------------------------------------------------ Web API

    async def _handle_api(self, request: web.Request) -> web.Response:
        method, params, team = request.match_info["method"], {}, self.team_id
        try:
            params = await _read_params(request)
            grant = self._check_auth(request, params, method)
            with self.acting(grant.install if grant else None) as install:
                team = install.team_id or install.enterprise_id if install else team
                handler = self._handler(method)
                if (scope := REQUIRED_SCOPES.get(method)) and scope not in self.scopes:
                    raise SlackError("missing_scope", needed=scope, provided=",".join(sorted(self.scopes)))
                self._check_forced_failure(method, applied=False)
                self._check_rate_limit(method, params)
                # what the handler may ask (user tokens, client credentials); handlers do not await
                self._grant, self._request_authorization = grant, request.headers.get("Authorization", "")
                body = {"ok": True, **handler(params)}
                self._check_forced_failure(method, applied=True)
        except SlackError as e:
            self.calls.append(Call(method, params, False, e.error, e.status, time.time(), team))
            return e.response()
        self.calls.append(Call(method, params, True, None, 200, time.time(), team))
        if self._held.get(method):  # done in Slack, but the answer is slow to come back
            self._held[method] -= 1
            await asyncio.sleep(self.hold_seconds)
        return web.json_response(body)

    def _handler(self, method: str) -> Callable[[dict], dict]:
        name = "_api_" + method.replace(".", "_")
        for owner in (self, *self.components):
            if handler := getattr(owner, name, None):
                return handler
        raise SlackError("unknown_method")

    def _check_auth(self, request: web.Request, params: dict, method: str) -> Grant | None:
        """The grant the call's token stands for. oauth.v2.access authenticates the app by its client
        credentials instead (slack_oauth), so it has none."""
        if method in self.oauth.CLIENT_AUTH_METHODS:
            return None
        header = request.headers.get("Authorization", "")
        token = params.pop("token", None)
        token = header[len("Bearer "):] if header.startswith("Bearer ") else token
        if not token:
            raise SlackError("not_authed")
        grant = self.tokens.get(token)
        if grant is None:
            raise SlackError("token_revoked" if token in self.revoked_tokens else "invalid_auth")
        # apps.connections.open takes only the app-level token (xapp-), every other method a bot or user token
        if (grant.kind == "app") != (method == "apps.connections.open"):
            raise SlackError("not_allowed_token_type")
        if grant.expires is not None and time.time() >= grant.expires:
            raise SlackError("token_expired")  # token rotation: refresh it with oauth.v2.access
        return grant

    def _check_forced_failure(self, method: str, *, applied: bool) -> None:
        if (queue := self._failures.get(method)) and queue[0][4] == applied:
            error, retry_after, status, content_type, _ = queue.pop(0)
            if status is not None:
                raise SlackError(error, status, content_type=content_type)
            if error == "ratelimited":
                raise SlackError(error, 429, retry_after)
            raise SlackError(error)

    def _check_rate_limit(self, method: str, params: dict) -> None:
        if not self.rate_limits:
            return
        per_minute, burst, scope = self._rate_config.get(method, self._rate_config["*"])
        where = self.team_id if scope == "team" else str(params.get("channel") or params.get("channel_id"))
        bucket = self._buckets.setdefault((method, where), TokenBucket(per_minute, burst))
        if wait := bucket.take():
            raise SlackError("ratelimited", 429, wait)

    def _channel(self, channel_id: Any) -> Channel:
        """A channel by id, by "#name", or a user id (posting to a user opens the DM), in a workspace the
        acting installation covers: another workspace's channels do not exist for it."""
        if not isinstance(channel_id, str):
            raise SlackError("channel_not_found")
        install = self._acting()
        if (ch := self.channels.get(channel_id)) and install.covers(self.workspaces[self.team_of(ch)]):
            return ch
        for ch in self.channels.values():
            if (channel_id == f"#{ch.name}" or (ch.is_im and channel_id in ch.members - {self.bot_user_id})) \
                    and install.covers(self.workspaces[self.team_of(ch)]):
                return ch
        raise SlackError("channel_not_found")

    def _check_can_post(self, ch: Channel) -> None:
        if self.bot_user_id in ch.members:
            return
        if ch.is_im or ch.is_private:
            raise SlackError("channel_not_found")  # the bot cannot even see it
        if "chat:write.public" not in self.scopes:
            raise SlackError("not_in_channel")

    def _find(self, ch: Channel, ts: Any) -> Message:
        for msg in ch.messages:
            if msg.ts == ts:
                return msg
        raise SlackError("message_not_found")

    def _thread_root(self, ch: Channel, thread_ts: str | None) -> str | None:
        # Replying to a reply lands in the parent's thread, as in Slack.
        parent = next((m for m in ch.messages if m.ts == thread_ts), None)
        return parent.thread_ts if parent and parent.thread_ts else (thread_ts or None)

    @staticmethod
    def _content(p: dict) -> tuple[str, list | None]:
        text = str(p.get("text") or "")
        blocks = parse_blocks(p.get("blocks"))
        if p.get("markdown_text"):  # newer parameter: a markdown message without blocks
            text, blocks = str(p["markdown_text"]), parse_blocks([{"type": "markdown", "text": str(p["markdown_text"])}])
        if not text and not blocks and not p.get("attachments"):
            raise SlackError("no_text")
        return text, blocks

    def _api_auth_test(self, p: dict) -> dict:
        """Who the token is: its installation's workspace (or org, for an org-wide install) and bot."""
        install = self._acting()
        if install.is_enterprise_install:
            # An org-wide token names the org: team_id is the enterprise id here (the docs show no
            # auth.test for org tokens; bolt reads only bot_id, user_id, enterprise_id and url from it).
            org = next(w for w in self.workspaces.values() if w.enterprise_id == install.enterprise_id)
            team, team_id, url = org.enterprise_name or org.enterprise_id, install.enterprise_id, org.enterprise_id
        else:
            workspace = self.workspaces[install.team_id]
            team, team_id, url = workspace.name, workspace.id, workspace.domain
        out = {"url": f"{self.base_url}/" + ("" if team_id == self.team_id else f"{url}/"), "team": team,
               "user": "bot", "team_id": team_id,
               "user_id": install.bot_user_id, "bot_id": install.bot_id,
               "is_enterprise_install": install.is_enterprise_install}
        if install.enterprise_id:
            out["enterprise_id"] = install.enterprise_id
        if self._grant and self._grant.kind == "user":  # a person's token: that person, no bot
            out.update(user_id=self._grant.user, user=self._grant.user)
            out.pop("bot_id")
        return out

    def _api_apps_connections_open(self, p: dict) -> dict:
        # Slack answers a single-use WebSocket URL (wss://wss-primary.slack.com/link/?ticket=...&app_id=...)
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        ws_base = "ws" + self.base_url.removeprefix("http")
        return {"url": f"{ws_base}/link/?{urlencode({'ticket': ticket, 'app_id': self.app_id})}"}

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        """Socket Mode: a ticket from apps.connections.open opens one connection, which Slack greets with
        `hello`. (Delivering events over it is not emulated: tests deliver them over HTTP.)"""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                                "debug_info": {"host": "emulator", "approximate_connection_time": 18060},
                                "connection_info": {"app_id": self.app_id}})
            async for _ in ws:  # envelope acks ({"envelope_id": ...}); nothing to answer
                pass
        finally:
            self.sockets.discard(ws)
        return ws

    def _api_chat_postMessage(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        self._check_can_post(ch)
        text, blocks = self._content(p)
        msg = self._store(Message(self._next_ts(), ch.id, self.bot_user_id, self.bot_id, text[:TEXT_LIMIT],
                                  blocks, self._thread_root(ch, p.get("thread_ts"))))
        return {"channel": ch.id, "ts": msg.ts, "message": msg.to_json()}

    def _api_chat_update(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch, p.get("ts"))
        if msg.bot_id != self.bot_id:
            raise SlackError("cant_update_message")
        if (stream := self.streams.get((ch.id, msg.ts))) and self._stream_live(stream).state == "streaming":
            raise SlackError("streaming_state_conflict")
        text = None if p.get("text") is None else str(p["text"])
        if text is not None and len(text) > UPDATE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        blocks = parse_blocks(p.get("blocks"))
        if p.get("markdown_text"):
            text, blocks = str(p["markdown_text"]), parse_blocks([{"type": "markdown", "text": str(p["markdown_text"])}])
        if text is None and blocks is None and not p.get("attachments"):
            raise SlackError("no_text")
        self._edit(msg, text, blocks)
        return {"channel": ch.id, "ts": msg.ts, "text": msg.text, "message": msg.to_json()}

    def _api_chat_postEphemeral(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        self._check_can_post(ch)
        if p.get("user") not in self.users:
            raise SlackError("user_not_found")
        if p["user"] not in ch.members:
            raise SlackError("user_not_in_channel")
        text, blocks = self._content(p)
        self._add_ephemeral(ch.id, p["user"], text, blocks, p.get("thread_ts"), "chat.postEphemeral")
        return {"message_ts": self._next_ts()}

    def _api_chat_delete(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch, p.get("ts"))
        if msg.bot_id != self.bot_id:
            raise SlackError("cant_delete_message")
        ts = msg.ts
        for event in self._delete(msg):  # Slack tells the app of its own deletions too (echo_bot_events)
            self._echo(event)
        return {"channel": ch.id, "ts": ts}

    def _api_files_delete(self, p: dict) -> dict:
        """files.delete (files:write): the app may delete only its own uploads. A file-only share message
        goes with the file (Slack hides it; the app hears message_deleted); one with text loses the file."""
        record = next((r for r in self.files if r["id"] == p.get("file")), None)
        if record is None:
            raise SlackError("file_not_found")
        if record.get("user", self.bot_user_id) != self.bot_user_id:
            raise SlackError("cant_delete_file")
        self.files.remove(record)
        for ch in self.channels.values():
            for msg in [m for m in ch.messages if any(f.get("id") == record["id"] for f in m.files or [])]:
                msg.files = [f for f in msg.files if f.get("id") != record["id"]]
                if not msg.files and not msg.text:
                    for event in self._delete(msg):
                        self._echo(event)
        return {}

    def _api_conversations_replies(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        self._check_readable(ch)
        thread = self.messages(ch.id, str(p.get("ts")))
        if not thread:
            raise SlackError("thread_not_found")
        try:
            limit = min(max(int(p.get("limit") or 1000), 1), REPLIES_PAGE_CAP)
            start = 0
            if p.get("cursor"):  # Slack-style cursor: base64("next_ts:<ts>")
                next_ts = base64.b64decode(p["cursor"]).decode().removeprefix("next_ts:")
                start = next(i for i, m in enumerate(thread) if _ts_key(m.ts) >= _ts_key(next_ts))
        except (ValueError, StopIteration):
            raise SlackError("invalid_cursor" if p.get("cursor") else "invalid_limit") from None
        page, rest = thread[start:start + limit], thread[start + limit:]
        cursor = base64.b64encode(f"next_ts:{rest[0].ts}".encode()).decode() if rest else ""
        return {"messages": [self._reply_json(m, thread) for m in page], "has_more": bool(rest),
                "response_metadata": {"next_cursor": cursor}}

    def _check_readable(self, ch: Channel) -> None:
        """Reading a conversation's messages: its type's history scope, and the bot in it."""
        needed = HISTORY_SCOPES[ch.channel_type]
        if needed not in self.scopes:
            raise SlackError("missing_scope", needed=needed)
        if self.bot_user_id not in ch.members:
            raise SlackError("not_in_channel")

    @staticmethod
    def _reply_json(msg: Message, thread: list[Message]) -> dict:
        out = msg.to_json()
        if msg is thread[0] and msg.thread_ts in (None, msg.ts) and len(thread) > 1:  # the parent
            out.update(thread_ts=msg.ts, reply_count=len(thread) - 1, latest_reply=thread[-1].ts,
                       reply_users=sorted({m.user for m in thread[1:] if m.user}))
        return out

    def _channel_json(self, ch: Channel) -> dict:
        out = {"id": ch.id, "name": ch.name, "is_channel": not ch.is_im and not ch.is_private,
               "is_group": ch.is_private and not ch.is_mpim, "is_im": ch.is_im, "is_mpim": ch.is_mpim,
               "is_private": ch.is_private or ch.is_im, "is_archived": False,
               "is_member": self.bot_user_id in ch.members, "num_members": len(ch.members),
               "context_team_id": self.team_of(ch)}
        if ch.is_im:
            out["user"] = next(iter(ch.members - {self.bot_user_id}), None)
        if canvas := self.canvases.channel_canvas(ch.id):
            out["properties"] = {"canvas": {"file_id": canvas["id"], "is_empty": not canvas["markdown"],
                                            "quip_thread_id": canvas["id"]}}
        return out

    def _check_can_see(self, ch: Channel) -> None:
        """Conversation metadata: its type's read scope; a private one only from inside."""
        needed = READ_SCOPES[ch.channel_type]
        if needed not in self.scopes:
            raise SlackError("missing_scope", needed=needed)
        if (ch.is_private or ch.is_im) and self.bot_user_id not in ch.members:
            raise SlackError("channel_not_found")

    def _api_conversations_info(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        self._check_can_see(ch)
        return {"channel": self._channel_json(ch)}

    def _api_conversations_join(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        if ch.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        if ch.is_private and self.bot_user_id not in ch.members:
            raise SlackError("channel_not_found")
        ch.members.add(self.bot_user_id)
        return {"channel": self._channel_json(ch)}

    def _api_users_info(self, p: dict) -> dict:
        if p.get("user") == self.bot_user_id:
            return {"user": User(self.bot_user_id, "bot", "Bot", is_bot=True).to_json(self.team_id)}
        user = self.users.get(p.get("user"))
        if user is None or not self._acting().covers(self.workspaces[user.team or self.team_id]):
            raise SlackError("user_not_found")
        return {"user": user.to_json(self.team_id)}

    def _api_files_getUploadURLExternal(self, p: dict) -> dict:
        try:
            length = int(p["length"])
            filename = str(p["filename"])
        except (KeyError, ValueError):
            raise SlackError("invalid_arguments") from None
        file_id = self._new_id("F")
        self._uploads[file_id] = {"filename": filename, "length": length, "content": None,
                                  "alt_txt": p.get("alt_txt")}
        return {"upload_url": f"{self.base_url}/_emu/upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, p: dict) -> dict:
        entries = p.get("files")
        try:
            entries = json.loads(entries) if isinstance(entries, str) else entries
            ids = [e["id"] for e in entries]
        except (TypeError, KeyError, json.JSONDecodeError):
            raise SlackError("invalid_arguments") from None
        if not ids or any(self._uploads.get(i, {}).get("content") is None for i in ids):
            raise SlackError("file_not_found")  # never issued, or the bytes never arrived
        channel_ids = [c for c in [p.get("channel_id"), *str(p.get("channels") or "").split(",")] if c]
        chans = [self._channel(c) for c in channel_ids]
        for ch in chans:
            self._check_can_post(ch)
        completed = []
        for entry in entries:
            up = self._uploads.pop(entry["id"])
            record = {"id": entry["id"], "filename": up["filename"], "title": entry.get("title") or up["filename"],
                      "content": up["content"], "channel": chans[0].id if chans else None,
                      "thread_ts": p.get("thread_ts"), "initial_comment": p.get("initial_comment")}
            if up.get("alt_txt"):  # files.getUploadURLExternal's alt_txt: the image's description
                record["extra"] = {"alt_txt": up["alt_txt"]}
            self.files.append(record)
            completed.append(self._file_json(record))
            self._emit("file", {k: v for k, v in record.items() if k != "content"} | {"size": len(up["content"])})
        for ch in chans:  # sharing posts a file_share message from the bot
            self._store(Message(self._next_ts(), ch.id, self.bot_user_id, self.bot_id, p.get("initial_comment") or "",
                                thread_ts=self._thread_root(ch, p.get("thread_ts")), subtype="file_share",
                                files=completed))
        return {"files": completed}

    def _file_json(self, record: dict) -> dict:
        name = record["filename"]
        url = self.file_url(record["id"], name)
        mimetype = record.get("mimetype") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        out = {"id": record["id"], "name": name, "title": record["title"], "mimetype": mimetype,
               "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
               "size": record.get("size", len(record["content"])), "user": record.get("user", self.bot_user_id),
               "mode": record.get("mode", "hosted"), "is_external": record.get("mode") == "external",
               "url_private": url, "url_private_download": self.file_url(record["id"], name, download=True),
               "permalink": url,
               "created": int(time.time())}
        return out | (record.get("extra") or {})

    # ------------------------------------- native streaming and thread status
    # Facts (docs.slack.dev method pages, slack_sdk 3.48 AsyncChatStream): startStream needs thread_ts,
    # and in channels (not DMs) recipient_user_id + recipient_team_id; each call carries at most 12,000
    # characters of markdown; Slack closes a stream after ~5 minutes (message_not_in_streaming_state);
    # chat.update on a message still streaming answers streaming_state_conflict and works once it is
    # not. The recipient can press Stop in Slack's client: the message keeps the text so far and the
    # app's next appendStream/stopStream answers stopped_by_user (the app learns it only that way).
    # Appends are not echoed as message_changed events: they are not chat.update edits.

    def _stream_live(self, stream: Stream) -> Stream:
        """The stream with its expiry applied (Slack's clock runs whether or not anyone calls)."""
        if stream.state == "streaming" and time.monotonic() >= stream.expires:
            stream.state = "expired"
        return stream

    def _expire_later(self, stream: Stream) -> None:
        # The page should see a stream end when Slack would end it, not at the next call.
        def expire() -> None:
            if self.streams.get((stream.channel, stream.ts)) is stream and stream.state == "streaming":
                stream.state = "expired"
                self._emit_stream(stream)
        asyncio.get_running_loop().call_later(max(0.0, stream.expires - time.monotonic()), expire)

    def _emit_stream(self, stream: Stream) -> None:
        ch = self.channels.get(stream.channel)
        msg = next((m for m in ch.messages if m.ts == stream.ts), None) if ch else None
        if msg is not None:  # a deleted message has nothing left to show
            self._emit("message_changed", self._message_state(msg))

    def _render_stream(self, stream: Stream, msg: Message) -> None:
        """What Slack draws: the markdown so far, blocks chunks, then stopStream's blocks under it."""
        blocks = ([{"type": "markdown", "text": stream.markdown}] if stream.markdown else []) + stream.blocks
        msg.text, msg.blocks = stream.markdown, blocks + (stream.end_blocks or []) or None

    def _stream_content(self, stream: Stream, msg: Message, p: dict, method: str) -> None:
        """Apply one call's markdown_text and chunks to the stream, and record what the reader now sees."""
        chunks = parse_chunks(p.get("chunks"))
        check_task_order(stream.tasks, chunks)
        markdown = str(p.get("markdown_text") or "")
        added = markdown + "".join(c["text"] for c in chunks if c["type"] == "markdown_text")
        if len(markdown) > STREAM_MARKDOWN_LIMIT or len(added) > STREAM_MARKDOWN_LIMIT:
            raise SlackError("msg_too_long")
        stream.markdown += added
        for chunk in chunks:
            if chunk["type"] == "task_update":
                stream.tasks[chunk["id"]] = {k: v for k, v in chunk.items() if k != "type"}
                stream.task_history.append(stream.tasks[chunk["id"]])
            elif chunk["type"] == "plan_update":
                stream.plan_title = chunk["title"]
            elif chunk["type"] == "blocks":
                stream.blocks.extend(chunk["blocks"])
        self._render_stream(stream, msg)
        stream.history.append((time.time(), method, added, stream.markdown))

    def _streaming(self, p: dict) -> tuple[Stream, Message]:
        """The stream named by channel + ts, if the app may still write to it."""
        ch = self._channel(p.get("channel"))
        msg = self._find(ch, p.get("ts"))
        if msg.bot_id != self.bot_id:
            raise SlackError("message_not_owned_by_app")
        stream = self.streams.get((ch.id, msg.ts))
        if stream is None:
            raise SlackError("message_not_in_streaming_state")
        state = self._stream_live(stream).state
        if state != "streaming":
            raise SlackError("stopped_by_user" if state == "stopped_by_user" else "message_not_in_streaming_state")
        return stream, msg

    def _api_chat_startStream(self, p: dict) -> dict:
        ch = self._channel(p.get("channel"))
        self._check_can_post(ch)
        if not p.get("thread_ts"):
            raise SlackError("invalid_arguments")  # streamed messages are always replies
        if not ch.is_im and not p.get("recipient_user_id"):
            raise SlackError("missing_recipient_user_id")
        if not ch.is_im and not p.get("recipient_team_id"):
            raise SlackError("missing_recipient_team_id")
        mode = p.get("task_display_mode") or "timeline"
        if mode not in ("timeline", "plan"):
            raise SlackError("invalid_arguments")
        parse_chunks(p.get("chunks"))  # validate before anything is posted
        now = time.monotonic()
        msg = Message(self._next_ts(), ch.id, self.bot_user_id, self.bot_id, "",
                      thread_ts=self._thread_root(ch, str(p["thread_ts"])))
        stream = Stream(ch.id, msg.ts, msg.thread_ts or msg.ts, p.get("recipient_user_id"),
                        p.get("recipient_team_id"), now, now + self.stream_expiry_seconds, mode)
        self.streams[(ch.id, msg.ts)] = stream
        self._stream_content(stream, msg, p, "chat.startStream")
        self._store(msg)
        self._expire_later(stream)
        self.agents.bridge(ch.id, stream.thread_ts, "processing", "chat.startStream")  # starts the session
        return {"channel": ch.id, "ts": msg.ts}

    def _api_chat_appendStream(self, p: dict) -> dict:
        stream, msg = self._streaming(p)
        if not p.get("markdown_text") and not p.get("chunks"):
            raise SlackError("no_text")
        self._stream_content(stream, msg, p, "chat.appendStream")
        self._emit_stream(stream)
        return {"channel": stream.channel, "ts": stream.ts}

    def _api_chat_stopStream(self, p: dict) -> dict:
        stream, msg = self._streaming(p)
        if p.get("session_status") is not None and p["session_status"] not in SESSION_STATUSES:
            raise SlackError("invalid_arguments")
        end_blocks = parse_blocks(p.get("blocks"))
        metadata = p.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError:
                raise SlackError("invalid_metadata_format") from None
        if metadata is not None and not (isinstance(metadata, dict) and "event_type" in metadata):
            raise SlackError("invalid_metadata_format")
        self._stream_content(stream, msg, p, "chat.stopStream")
        stream.end_blocks, stream.metadata, stream.session_status = end_blocks, metadata, p.get("session_status")
        stream.state = "stopped"
        self._render_stream(stream, msg)
        self._emit_stream(stream)
        self.agents.bridge(stream.channel, stream.thread_ts, p.get("session_status") or "active", "chat.stopStream")
        return {"channel": stream.channel, "ts": stream.ts, "message": msg.to_json()}

    def stream(self, channel: str, ts: str) -> Stream:
        """The native stream of a message, with Slack's expiry applied (KeyError if it never streamed)."""
        return self._stream_live(self.streams[(channel, ts)])

    def user_stops_stream(self, channel: str, ts: str, user: str | None = None) -> Stream:
        """The person the stream is for presses Stop in Slack's client. The text so far stays; the
        app's next appendStream/stopStream answers stopped_by_user. Only the recipient sees Stop."""
        stream = self.streams.get((channel, ts))
        if stream is None:
            raise LookupError(f"no stream {ts} in {channel}")
        if self._stream_live(stream).state != "streaming":
            raise ValueError(f"stream {ts} is not streaming ({stream.state})")
        if stream.recipient_user_id and user is not None and user != stream.recipient_user_id:
            raise ValueError(f"only {stream.recipient_user_id} can stop this stream")
        stream.state = "stopped_by_user"
        self._emit_stream(stream)
        return stream

    def status_history(self, channel: str, thread_ts: str) -> list[dict]:
        """Every status shown under a thread and every clear, in order. A clear has status "" and
        `via` "app" (setStatus with an empty status), "message" (the app posted) or "timeout"."""
        return [s for s in self.statuses if s["channel"] == channel and s["thread_ts"] == thread_ts]

    def current_status(self, channel: str, thread_ts: str) -> dict | None:
        """The status shown under a thread now, or None when it is clear."""
        shown = self._shown_status.get((channel, thread_ts))
        if shown and time.monotonic() - shown["shown_at"] >= self.status_clear_seconds:
            self._clear_status(channel, thread_ts, "timeout")
            return None
        return shown

    def _set_status(self, channel: str, thread_ts: str, status: str, loading: list, via: str) -> dict:
        entry = {"channel": channel, "thread_ts": thread_ts, "status": status, "loading_messages": loading,
                 "time": time.time(), "via": via}
        self.statuses.append(entry)
        key = (channel, thread_ts)
        shown = entry | {"shown_at": time.monotonic()}
        if status:
            self._shown_status[key] = shown
        else:
            self._shown_status.pop(key, None)
        self._emit("status", entry)
        return shown

    def _clear_status(self, channel: str, thread_ts: str, via: str) -> None:
        if (channel, thread_ts) in self._shown_status:
            self._set_status(channel, thread_ts, "", [], via)

    def _api_assistant_threads_setStatus(self, p: dict) -> dict:
        if not self.scopes & {"chat:write", "assistant:write"}:
            raise SlackError("missing_scope", needed="chat:write")
        if not p.get("channel_id") or not p.get("thread_ts") or p.get("status") is None:
            raise SlackError("invalid_arguments")
        ch = self._channel(p["channel_id"])
        loading = p.get("loading_messages") or []
        if isinstance(loading, str):  # form-encoded: JSON text
            try:
                loading = json.loads(loading)
            except json.JSONDecodeError:
                raise SlackError("invalid_arguments") from None
        if not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES \
                or not all(isinstance(m, str) for m in loading):
            raise SlackError("invalid_arguments")
        thread_ts, status = str(p["thread_ts"]), str(p["status"])
        # on an agent session: a status is processing, an empty one active (slack-agents.md 2, "Bridge")
        self.agents.bridge(ch.id, thread_ts, "processing" if status else "active", "assistant.threads.setStatus")
        if not status:
            self._set_status(ch.id, thread_ts, "", [], "app")
            return {}
        shown = self._set_status(ch.id, thread_ts, status, loading, "app")

        def expire() -> None:  # "a two minute timeout applies": cleared unless replaced meanwhile
            if self._shown_status.get((ch.id, thread_ts)) is shown:
                self._clear_status(ch.id, thread_ts, "timeout")
        asyncio.get_running_loop().call_later(self.status_clear_seconds, expire)
        return {}

    def _api_reactions_add(self, p: dict) -> dict:
        msg = self._find(self._channel(p.get("channel")), p.get("timestamp"))
        users = msg.reactions.setdefault(str(p.get("name")), [])
        if self.bot_user_id in users:
            raise SlackError("already_reacted")
        users.append(self.bot_user_id)
        self._emit("message_changed", self._message_state(msg))
        return {}

    def _add_ephemeral(self, channel: str, user: str, text: str, blocks: list | None,
                       thread_ts: str | None, via: str) -> None:
        eph = {"channel": channel, "user": user, "text": text, "blocks": blocks, "thread_ts": thread_ts, "via": via}
        self.ephemerals.append(eph)
        self._emit("ephemeral", eph)

    # ------------------------------------------ uploads and response_url

    async def _handle_upload(self, request: web.Request) -> web.Response:
        pending = self._uploads.get(request.match_info["file_id"])
        if pending is None:
            return web.Response(status=404, text="unknown upload", content_type="text/plain")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file") or next(iter(form.values()), b"")
            data = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            data = await request.read()
        pending["content"] = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    def file_url(self, file_id: str, name: str, *, download: bool = False) -> str:
        """Where Slack serves a file: /files-pri/<team>-<file>/[download/]<name> on its file host (here,
        the emulator's own origin), the name percent-encoded as one path segment."""
        segment = quote(name.replace("/", "_").replace("\\", "_"), safe="") or "file"
        return f"{self.base_url}/files-pri/{self.team_id}-{file_id}/{'download/' if download else ''}{segment}"

    async def _handle_file(self, request: web.Request) -> web.Response:
        """url_private(_download): the bytes for the bot token with files:read, Slack's sign-in page otherwise."""
        header = request.headers.get("Authorization", "")
        authorized = header == f"Bearer {self.bot_token}" and "files:read" in self.scopes
        if not authorized and header.startswith("Bearer "):  # another installation's live bot token (OAuth)
            grant = self.tokens.get(header[len("Bearer "):])
            authorized = bool(grant and grant.kind == "bot" and "files:read" in grant.install.scopes
                              and (grant.expires is None or time.time() < grant.expires))
        file_id = request.match_info.get("file_id") or request.match_info["team_file"].rpartition("-")[2]
        self.file_requests.append({"host": request.host, "path": request.path_qs, "file": file_id,
                                   "authorization": bool(header), "authorized": authorized, "time": time.time()})
        if not authorized:  # what Slack answers a browser or a token without files:read
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html", charset="utf-8")
        record = next((r for r in self.files if r["id"] == file_id), None)
        if record is None or record.get("deleted"):
            return web.Response(status=404, text="file_not_found", content_type="text/plain")
        if record.get("redirect_to"):
            raise web.HTTPFound(record["redirect_to"])
        mimetype = self._file_json(record)["mimetype"]
        return web.Response(body=record["content"], content_type=mimetype)

    def _new_response_url(self, channel: str, user: str, thread_ts: str | None = None,
                          message_ts: str | None = None) -> str:
        rid = self._new_id("R")
        self._responses[rid] = {"channel": channel, "user": user, "thread_ts": thread_ts,
                                "message_ts": message_ts, "uses": 0, "created": time.time()}
        return f"{self.base_url}/_emu/response/{rid}"

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        ctx = self._responses.get(request.match_info["rid"])
        if ctx is None or ctx["uses"] >= RESPONSE_URL_USES or time.time() - ctx["created"] > RESPONSE_URL_TTL:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        ctx["uses"] += 1
        try:
            body = json.loads(await request.text())
            blocks = parse_blocks(body.get("blocks"))
        except (json.JSONDecodeError, AttributeError):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        except SlackError as e:
            return web.json_response({"ok": False, "error": e.error}, status=400)
        self._apply_response(ctx, body, str(body.get("text") or ""), blocks, "response_url")
        return web.json_response({"ok": True})

    def _apply_response(self, ctx: dict, body: dict, text: str, blocks: list | None, via: str) -> None:
        """A response_url post or an ack body: replace/delete the source message, post, or whisper."""
        ch = self.channels[ctx["channel"]]
        source = next((m for m in ch.messages if m.ts == ctx.get("message_ts")), None)
        thread_ts = body.get("thread_ts") or ctx.get("thread_ts")
        if source and body.get("delete_original"):
            for event in self._delete(source):
                self._echo(event)
        elif source and body.get("replace_original"):
            self._edit(source, text, blocks if blocks is not None else [])
        elif body.get("response_type") == "in_channel":
            self._store(Message(self._next_ts(), ch.id, self.bot_user_id, self.bot_id, text, blocks,
                                self._thread_root(ch, thread_ts)))
        else:
            self._add_ephemeral(ch.id, ctx["user"], text, blocks, thread_ts, via)

    # --------------------------------------------- files people share

    def host_file(self, name: str, content: bytes, *, mimetype: str | None = None, user: str = "U_ALICE",
                  mode: str = "hosted", size: int | None = None, deleted: bool = False,
                  redirect_to: str | None = None, extra: dict | None = None) -> dict:
        """A file a person uploaded, as Slack's file object (what message events carry in `files`).

        Behaviours for tests: `deleted` (404 for the token), `redirect_to` (302 there), `mode`
        ("external", "tombstone"), `size` (what Slack reports, when it differs from the bytes)."""
        record = {"id": self._new_id("F"), "filename": name, "title": name, "content": content, "user": user,
                  "mimetype": mimetype, "mode": mode, "deleted": deleted, "redirect_to": redirect_to,
                  "channel": None, "thread_ts": None, "initial_comment": None, "extra": extra}
        if size is not None:
            record["size"] = size
        self.files.append(record)
        return self._file_json(record)

    def file_record(self, file_id: str) -> dict:
        return next(r for r in self.files if r["id"] == file_id)

    async def user_shares(self, channel: str, text: str, files: list[dict], *, user: str = "U_ALICE",
                          thread_ts: str | None = None) -> Delivery:
        """A person posts a message with files: a `file_share` message event (and an `app_mention`
        for a mention), each carrying the `files` array, as Slack delivers them."""
        ch = self.channels[channel]
        msg = self._store(Message(self._next_ts(), ch.id, user, None, text, thread_ts=self._thread_root(ch, thread_ts),
                                  subtype="file_share", files=list(files)))
        for f in files:
            record = self.file_record(f["id"])
            record["channel"], record["thread_ts"] = ch.id, msg.thread_ts
        with self.acting(self.install_for(self.team_of(ch))):
            events = [{**e, "files": list(files), "upload": True, "display_as_bot": False,
                       **({"subtype": "file_share"} if e["type"] == "message" else {})}
                      for e in self._user_message_events(ch, msg)]
            if not events:
                return Delivery(0, "", {}, 0.0, error="not delivered: the app is not in the channel", message=msg)
            deliveries = list(await asyncio.gather(*(self.deliver_event(e) for e in events)))
        for d in deliveries:
            d.message, d.all = msg, deliveries
        return deliveries[0]

    async def _http_share(self, request: web.Request) -> web.Response:
        """Control endpoint: {channel, text, user, thread_ts, files: [{name, mimetype, data (base64)}]}."""
        b = await request.json()
        files = [self.host_file(str(f["name"])[:200], base64.b64decode(f["data"]), mimetype=f.get("mimetype") or None,
                                user=b.get("user") or "U_ALICE") for f in b.get("files") or []]
        d = await self.user_shares(b["channel"], b.get("text") or "", files, user=b.get("user") or "U_ALICE",
                                   thread_ts=b.get("thread_ts"))
        return web.json_response({"message": self._message_state(d.message), "delivery": d.to_json()})

    # ------------------------------------------------- driving the app

    def _signature(self, body: bytes, timestamp: str, secret: str) -> str:
        base = b"v0:" + timestamp.encode() + b":" + body
        return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()

    def _client(self) -> aiohttp.ClientSession:
        # One session for every delivery: the benchmark sends hundreds a second.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.delivery_timeout),
                connector=aiohttp.TCPConnector(limit=1000))
        return self._session

    async def send_signed(self, body: bytes | str, content_type: str, headers: dict | None = None, *,
                          bad_signature: bool = False, timestamp: int | None = None) -> Delivery:
        """POST a signed request to app_url. Never raises for network trouble: status 0 + error."""
        body = body.encode() if isinstance(body, str) else body
        if not self.app_url:
            return Delivery(0, "", {}, 0.0, error="app_url is not set")
        ts = str(int(time.time() if timestamp is None else timestamp))
        secret = self.signing_secret + ("-wrong" if bad_signature else "")
        all_headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                       "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": self._signature(body, ts, secret),
                       **(headers or {})}
        started = time.perf_counter()
        try:
            async with self._client().post(self.app_url, data=body, headers=all_headers) as resp:
                text = await resp.text()
                delivery = Delivery(resp.status, text, dict(resp.headers), time.perf_counter() - started)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            delivery = Delivery(0, "", {}, time.perf_counter() - started, error=f"{type(e).__name__}: {e}")
        delivery.all = [delivery]
        return delivery

    def _envelope(self, event: dict, event_id: str | None, team: str | None = None) -> dict:
        """The Events API envelope, for the workspace the event happened in and the installation it is
        delivered to (`authorizations`; an org-wide install has no team there, as bolt expects)."""
        install = self._acting()
        ch = self.channels.get(str(event.get("channel")))
        team = team or (self.team_of(ch) if ch else install.team_id or self.team_id)
        enterprise = self.workspaces[team].enterprise_id if team in self.workspaces else install.enterprise_id
        envelope = {
            "token": self.verification_token, "team_id": team, "context_team_id": team,
            "context_enterprise_id": enterprise, "api_app_id": self.app_id, "event": event, "type": "event_callback",
            "event_id": event_id or self._new_id("Ev"), "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": install.enterprise_id,
                                "team_id": None if install.is_enterprise_install else team,
                                "user_id": install.bot_user_id, "is_bot": True,
                                "is_enterprise_install": install.is_enterprise_install}],
            "is_ext_shared_channel": False, "event_context": "4-" + secrets.token_urlsafe(24),
        }
        if enterprise:
            envelope["enterprise_id"] = enterprise
        return envelope

    def subscribed(self, event_type: str) -> bool:
        return event_type in self.subscriptions

    async def deliver_workspace_event(self, event: dict, team: str | None = None) -> Delivery:
        """An event the workspace sends on its own (app_home_opened, app_uninstalled, ...), to the
        installation serving `team`, if the app subscribes to it. Not subscribed, not installed: not sent."""
        if not self.subscribed(event["type"]):
            return Delivery(0, "", {}, 0.0, payload={"event": event},
                            error=f"not delivered: the app does not subscribe to {event['type']}")
        install = self.install_for(team or self.team_id)
        if install is None:
            return Delivery(0, "", {}, 0.0, payload={"event": event}, error="not delivered: the app is not installed")
        with self.acting(install):
            return await self.deliver_event(event)

    async def _post_envelope(self, envelope: dict, retry_num: int | None, retry_reason: str) -> Delivery:
        headers = {} if retry_num is None else {"X-Slack-Retry-Num": str(retry_num),
                                                "X-Slack-Retry-Reason": retry_reason}
        delivery = await self.send_signed(json.dumps(envelope).encode(), "application/json", headers)
        delivery.event_id, delivery.payload = envelope["event_id"], envelope
        return delivery

    async def deliver_event(self, event: dict, *, retry_num: int | None = None, retry_reason: str = "http_timeout",
                            event_id: str | None = None, team: str | None = None) -> Delivery:
        """Deliver `event` to the acting installation; `team` names the workspace when the event has
        no channel to tell it."""
        return await self._post_envelope(self._envelope(event, event_id, team), retry_num, retry_reason)

    async def redeliver(self, delivery: Delivery, retry_num: int = 1, retry_reason: str = "http_timeout") -> Delivery:
        """Slack's retry: the same envelope and event_id, freshly signed, with retry headers."""
        if not delivery.event_id:
            raise ValueError("only Events API deliveries are retried by Slack")
        return await self._post_envelope(delivery.payload, retry_num, retry_reason)

    def _echo(self, event: dict) -> None:
        # Slack sends the bot its own messages and edits; deliver them without blocking the API answer.
        if self.echo_bot_events and self.app_url:
            task = asyncio.get_running_loop().create_task(self._deliver_echo(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver_echo(self, event: dict) -> None:
        self.echoes.append(await self.deliver_event(event))

    async def echoes_answered(self) -> list[Delivery]:
        """Wait until the app has answered every echo sent so far; returns every echo's delivery."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return list(self.echoes)

    def _bot_message_event(self, msg: Message) -> dict:
        ch = self.channels[msg.channel]
        profile = {"id": self.bot_id, "app_id": self.app_id, "name": "bot", "team_id": self.team_of(ch)}
        return {**msg.to_json(), "app_id": self.app_id, "bot_profile": profile, "channel": ch.id,
                "channel_type": ch.channel_type, "event_ts": msg.ts, "team": self.team_of(ch)}

    def _hears(self, ch: Channel) -> bool:
        """Whether the app gets message.* events of a conversation: installed in its workspace, a
        member, subscribed to the type's event and holding its history scope."""
        install = self.install_for(self.team_of(ch))
        return (install is not None and install.bot_user_id in ch.members
                and HISTORY_SCOPES[ch.channel_type] in install.scopes and self.subscribed(MESSAGE_EVENTS[ch.channel_type]))

    def _user_message_events(self, ch: Channel, msg: Message, user_team: str | None = None) -> list[dict]:
        # Slack only sends events from conversations the app is in, for the scopes it holds.
        install = self.install_for(self.team_of(ch))
        if install is None or install.bot_user_id not in ch.members:
            return []
        base = {"user": msg.user, "text": msg.text, "ts": msg.ts, "event_ts": msg.ts, "channel": ch.id,
                "team": user_team or self.team_of(ch), "client_msg_id": str(uuid.uuid4())}
        if user_team and user_team != self.team_id:
            # Slack Connect: the event names the sender's organisation; the envelope and its
            # `authorizations` still name the workspace the app is installed in.
            base.update(user_team=user_team, source_team=user_team)
        if msg.thread_ts:
            parent = next((m for m in ch.messages if m.ts == msg.thread_ts), None)
            base.update(thread_ts=msg.thread_ts, parent_user_id=parent.user if parent else None)
        mentioned = f"<@{install.bot_user_id}>" in msg.text
        # Real-time Search's action_token: in app_mention, in message.im/.mpim/.groups, and in
        # message.channels when the app is mentioned (slack-agents.md 7).
        token = self.search.issue_action_token(msg.user, self.team_of(ch)) if msg.user else None
        events = []
        if self._hears(ch):
            with_token = token and (mentioned or ch.channel_type != "channel")
            events.append({"type": "message", **base, "channel_type": ch.channel_type,
                           **({"action_token": token} if with_token else {})})
        if not ch.is_im and mentioned and "app_mentions:read" in install.scopes and self.subscribed("app_mention"):
            events.append({"type": "app_mention", **base, **({"action_token": token} if token else {})})
        if ch.is_im and self.agent_view and (context := self.agents.app_context(msg.user)) is not None:
            events = [{**e, "app_context": context} for e in events]  # the channel the person looks at
        return events

    async def user_message(self, channel: str, text: str, *, user: str = "U_ALICE", thread_ts: str | None = None,
                           deliver: bool = True, user_team: str | None = None) -> Delivery:
        """A person posts. Channels get a `message` event and, for a mention, a separate `app_mention`
        (delivered concurrently, as Slack does); DMs get `message` with channel_type "im".
        `user_team`: the sender belongs to another organisation (a Slack Connect channel)."""
        ch = self.channels[channel]
        msg = self._store(Message(self._next_ts(), ch.id, user, None, text,
                                  thread_ts=self._thread_root(ch, thread_ts)))
        with self.acting(self.install_for(self.team_of(ch))):
            events = self._user_message_events(ch, msg, user_team)
            if not deliver or not events:
                why = "not delivered (deliver=False)" if not deliver else "not delivered: the app is not in the channel"
                return Delivery(0, "", {}, 0.0, payload={"event": events[0] if events else {}}, error=why, message=msg)
            deliveries = list(await asyncio.gather(*(self.deliver_event(e) for e in events)))
        for d in deliveries:
            d.message, d.all = msg, deliveries
        return deliveries[0]

    async def slash_command(self, command: str, text: str, *, user: str = "U_ALICE",
                            channel: str = "C_GENERAL") -> Delivery:
        ch = self.channels[channel]
        workspace = self.workspaces[self.team_of(ch)]
        install = self.install_for(workspace.id)
        fields = {
            "token": self.verification_token, "team_id": workspace.id, "team_domain": workspace.domain,
            "channel_id": ch.id, "channel_name": "directmessage" if ch.is_im else ch.name, "user_id": user,
            "user_name": self.users[user].name if user in self.users else user, "command": command,
            "text": text, "api_app_id": self.app_id,
            "is_enterprise_install": "true" if install and install.is_enterprise_install else "false",
            "response_url": self._new_response_url(ch.id, user),
            "trigger_id": self.views.issue_trigger(self._new_id("T.") + ".emu", user, ch.id),
        }
        if workspace.enterprise_id:
            fields.update(enterprise_id=workspace.enterprise_id, enterprise_name=workspace.enterprise_name or "")
        delivery = await self.send_signed(urlencode(fields), "application/x-www-form-urlencoded")
        delivery.payload = fields
        self._show_ack(delivery, {"channel": ch.id, "user": user})
        return delivery

    def _show_ack(self, delivery: Delivery, ctx: dict) -> None:
        # Slack shows a command's ack body to the user (ephemeral unless response_type in_channel).
        try:
            body = json.loads(delivery.body) if delivery.status == 200 and delivery.body else None
        except json.JSONDecodeError:
            body = {"text": delivery.body}  # a plain-text ack is shown as is
        if isinstance(body, dict) and (body.get("text") or body.get("blocks")):
            self._apply_response(ctx, body, str(body.get("text") or ""), body.get("blocks"), "ack")

    async def click_button(self, message: Message, action_id: str, *, user: str = "U_ALICE",
                           value: str | None = None) -> Delivery:
        """A person clicks a button (or another element) in a message: a `block_actions` payload. For
        feedback buttons (`value` "positive"/"negative", or the button's own value), see
        AgentSurface.click_feedback."""
        block_id, element = _find_action(message.blocks or [], action_id)
        ch = self.channels[message.channel]
        container = {"type": "message", "message_ts": message.ts, "channel_id": ch.id, "is_ephemeral": False}
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
        action = {"type": element.get("type", "button"), "action_id": action_id, "block_id": block_id,
                  "text": element.get("text"), "value": element.get("value") if value is None else value,
                  "action_ts": _format_ts(time.time())}
        payload = {
            "type": "block_actions", **self.interaction_base(ch, user), "container": container,
            "channel": {"id": ch.id, "name": ch.name}, "message": message.to_json(), "state": {"values": {}},
            "response_url": self._new_response_url(ch.id, user, message.thread_ts, message.ts),
            "actions": [action],
        }
        return await self.send_interaction(payload)

    def interaction_base(self, ch: Channel, user: str) -> dict:
        """What every interactivity payload carries: who, in which workspace/org, for which app."""
        workspace = self.workspaces[self.team_of(ch)]
        install = self.install_for(workspace.id)
        name = self.users[user].name if user in self.users else user
        enterprise = ({"id": workspace.enterprise_id, "name": workspace.enterprise_name or ""}
                      if workspace.enterprise_id else None)
        return {"user": {"id": user, "username": name, "name": name, "team_id": workspace.id},
                "api_app_id": self.app_id, "token": self.verification_token,
                "trigger_id": self.views.issue_trigger(self._new_id("T.") + ".emu", user, ch.id),
                "team": {"id": workspace.id, "domain": workspace.domain},
                "enterprise": enterprise, "is_enterprise_install": bool(install and install.is_enterprise_install)}

    async def send_interaction(self, payload: dict) -> Delivery:
        delivery = await self.send_signed(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
        delivery.payload = payload
        return delivery

    # ------------------------------------- control endpoints and feed

    def _emit(self, kind: str, data: dict) -> None:
        event = {**data, "type": kind}
        for queue in self._feeds:
            if not queue.full():  # a stalled page loses events rather than growing memory
                queue.put_nowait(event)

    def state(self) -> dict:
        return {
            "team_id": self.team_id, "bot_user_id": self.bot_user_id, "bot_id": self.bot_id,
            "channels": [{**self._channel_json(c), "members": sorted(c.members),
                          "messages": [self._message_state(m) for m in c.messages]} for c in self.channels.values()],
            "users": [u.to_json(self.team_id) for u in self.users.values()],
            "ephemerals": self.ephemerals, "statuses": self.statuses,
            "thread_statuses": [s for k in list(self._shown_status) if (s := self.current_status(*k))],
            "files": [self._file_json(r) | {"channel": r["channel"], "thread_ts": r["thread_ts"]} for r in self.files],
            **{type(c).__name__.lower(): c.state() for c in self.components},
        }

    async def _http_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _http_calls(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        return web.json_response([c.__dict__ for c in self.calls[since:]])

    async def _http_user_message(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.user_message(b["channel"], b["text"], user=b.get("user") or "U_ALICE",
                                    thread_ts=b.get("thread_ts"), deliver=b.get("deliver", True))
        return web.json_response({"message": self._message_state(d.message), "delivery": d.to_json(),
                                  "all": [x.to_json() for x in d.all]})

    async def _http_slash_command(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.slash_command(b["command"], b.get("text", ""), user=b.get("user") or "U_ALICE",
                                     channel=b.get("channel") or "C_GENERAL")
        return web.json_response({"delivery": d.to_json()})

    async def _http_click(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.click_button(self.message(b["channel"], b["ts"]), b["action_id"], user=b.get("user") or "U_ALICE",
                                    value=b.get("value"))
        return web.json_response({"delivery": d.to_json()})

    async def _http_delete(self, request: web.Request) -> web.Response:
        b = await request.json()
        deliveries = await self.user_deletes(b["channel"], b["ts"], user=b.get("user"))
        return web.json_response({"deliveries": [d.to_json() for d in deliveries]})

    async def _http_reset(self, request: web.Request) -> web.Response:
        self.reset()
        self._emit("reset", {})
        return web.json_response({"ok": True})

    async def _http_rate_limit(self, request: web.Request) -> web.Response:
        b = await request.json()
        if "enabled" in b:
            self.rate_limits = bool(b["enabled"])
        if "method" in b:
            self.set_rate_limit(b["method"], b["per_minute"], b["burst"], b.get("scope", "team"))
        return web.json_response({"ok": True})

    async def _http_fail_next(self, request: web.Request) -> web.Response:
        b = await request.json()
        self.fail_next(b["method"], b.get("error", "ratelimited"), b.get("times", 1), b.get("retry_after", 1),
                       status=b.get("status"), content_type=b.get("content_type", "application/json"),
                       applied=bool(b.get("applied")))
        return web.json_response({"ok": True})

    async def _http_stop_stream(self, request: web.Request) -> web.Response:
        b = await request.json()
        stream = self.user_stops_stream(b["channel"], b["ts"], b.get("user"))
        return web.json_response({"ok": True, "stream": stream.to_json()})

    async def _http_feed(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one `data:` line of JSON per workspace change."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._feeds.add(queue)
        try:
            await resp.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 15)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")  # also notices a closed page
                    continue
                if event is None:  # the emulator is stopping
                    break
                await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            self._feeds.discard(queue)
        return resp

    @web.middleware
    async def _control_guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        # /_emu/* drives the workspace: local callers only, and control POSTs only as JSON, so no web
        # page can drive it (guard.py). Upload and response_url stand for Slack's own URLs: exempt.
        if request.path.startswith("/_emu/"):
            return await guard.local_control(request, handler, exempt=("/_emu/upload/", "/_emu/response/"))
        return await handler(request)

    @web.middleware
    async def _control_errors(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        # Bad input to a control endpoint is the caller's mistake: 400 with the reason, not a 500.
        try:
            return await handler(request)
        except (LookupError, ValueError) as e:
            return web.json_response({"ok": False, "error": f"{type(e).__name__}: {e}"}, status=400)

    # --------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=100 * 2**20, middlewares=[self._control_guard, self._control_errors])
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_post("/_emu/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{team_file}/{name}", self._handle_file)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._handle_file)
        app.router.add_get("/_emu/files/{file_id}", self._handle_file)  # by id, for local tools (the sandbox page)
        app.router.add_post("/_emu/response/{rid}", self._handle_response_url)
        app.router.add_get("/_emu/state", self._http_state)
        app.router.add_get("/_emu/calls", self._http_calls)
        app.router.add_get("/_emu/feed", self._http_feed)
        app.router.add_post("/_emu/user_message", self._http_user_message)
        app.router.add_post("/_emu/slash_command", self._http_slash_command)
        app.router.add_post("/_emu/click", self._http_click)
        app.router.add_post("/_emu/reset", self._http_reset)
        app.router.add_post("/_emu/rate_limit", self._http_rate_limit)
        app.router.add_post("/_emu/fail_next", self._http_fail_next)
        app.router.add_post("/_emu/stop_stream", self._http_stop_stream)
        app.router.add_post("/_emu/share", self._http_share)
        app.router.add_post("/_emu/delete", self._http_delete)
        for component in self.components:
            component.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        self.api_url = self.base_url + "/api/"
        return self.base_url

    async def stop(self) -> None:
        for queue in self._feeds:  # let SSE handlers finish so shutdown does not wait on them
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
        for ws in list(self.sockets):
            await ws.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _serve(args: argparse.Namespace) -> None:
    emulator = SlackEmulator(signing_secret=args.signing_secret, bot_token=args.bot_token, app_url=args.app_url,
                             rate_limits=not args.no_rate_limits, echo_bot_events=args.echo_bot_events)
    await emulator.start(args.host, args.port)
    print(f"Slack emulator: Web API {emulator.api_url}, control {emulator.base_url}/_emu/state, "
          f"delivering to {args.app_url or '(nowhere yet)'}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Emulated Slack Web API + workspace for the bot")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--app-url", default=None, help="where to deliver, e.g. http://127.0.0.1:3000/slack/events")
    parser.add_argument("--signing-secret", default="test-signing-secret")
    parser.add_argument("--bot-token", default="xoxb-test-token")
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--echo-bot-events", action="store_true")
    try:
        asyncio.run(_serve(parser.parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
