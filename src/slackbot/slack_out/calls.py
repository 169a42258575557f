"""Every Slack Web API call the bot makes, as data: one builder per method, and the budget each pays.

Pure: no I/O. The gateway (gateway.py) makes the calls; `budgets` is the one table of what each
method costs, and the list of methods the bot may call at all (the gateway refuses any other, and
tests/test_manifest.py checks the manifest's scopes against it). Adding a method (views.publish,
assistant.search.context, canvases, agent sessions) is a builder here and a row in `budgets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..config import Settings
from ..store.budgets import Budget


class Per(Enum):
    TEAM = "team"  # one bucket per workspace, shared by every channel and replica
    CHANNEL = "channel"  # one bucket per channel of a workspace
    PERSON = "person"  # one bucket per person of a workspace (Real-time Search: 10 a minute each)
    START_UP = "start-up"  # no bucket: once per process, retried after Retry-After by startup.py


@dataclass(frozen=True)
class Pays:
    budget: Budget | None
    per: Per = Per.TEAM


def budgets(s: Settings) -> dict[str, Pays]:
    """Slack method -> the budget it pays. Settings tune the busy ones; the rest keep under Slack's
    published tier (Tier 3 ~50/min, Tier 4 ~100/min) with room for other apps' calls."""
    starts = Budget(s.stream_starts_per_minute / 60.0, 3.0)
    return {
        # one post a channel is kept for an answer's first message, so continuations never delay a sign of life
        "chat.postMessage": Pays(Budget(s.post_per_channel_per_second, s.post_burst, reserve=1.0), Per.CHANNEL),
        # final edits may use the reserve and skip the queue, so finished answers land first
        "chat.update": Pays(Budget(s.edit_budget_per_minute / 60.0, s.edit_budget_burst, s.edit_final_reserve)),
        "chat.delete": Pays(Budget(40 / 60.0, 5.0)),  # Tier 3
        "files.delete": Pays(Budget(40 / 60.0, 5.0)),  # Tier 3
        "chat.postEphemeral": Pays(Budget(90 / 60.0, 20.0)),  # Tier 4
        "chat.startStream": Pays(starts),  # Tier 2
        "chat.stopStream": Pays(starts),  # Tier 2, a bucket of its own
        "chat.appendStream": Pays(Budget(s.stream_appends_per_minute / 60.0, 10.0, s.append_final_reserve)),  # Tier 4
        "assistant.threads.setStatus": Pays(Budget(s.status_per_minute / 60.0, 100.0)),
        # files_upload_v2: files.getUploadURLExternal, the upload, then this (both Tier 4): one token a file
        "files.completeUploadExternal": Pays(Budget(40 / 60.0, 5.0)),
        "conversations.replies": Pays(Budget(s.replies_budget_per_minute / 60.0, 1.0)),  # Tier 1
        "conversations.info": Pays(Budget(40 / 60.0, 10.0)),  # Tier 3
        "users.info": Pays(Budget(s.names_budget_per_minute / 60.0, max(1.0, s.names_budget_per_minute / 4))),
        # what Gemini looks up (lookup/functions.py): search is 10 a minute per person, each page counting;
        # history reads are 1 a minute per workspace for distributed non-Marketplace apps (slack-agents.md 7, 12)
        "assistant.search.context": Pays(Budget(s.search_per_person_per_minute / 60.0,
                                                s.search_per_person_per_minute), Per.PERSON),
        "conversations.history": Pays(Budget(s.history_budget_per_minute / 60.0, 1.0)),
        "conversations.members": Pays(Budget(90 / 60.0, 20.0)),  # Tier 4
        "chat.getPermalink": Pays(Budget(90 / 60.0, 20.0)),  # Tier 4; once per workspace, then built locally
        # the agent surface (slack-agents.md 1-3, 10): where sources give two tiers, the lower one (Tier 3)
        "assistant.threads.setSuggestedPrompts": Pays(Budget(40 / 60.0, 10.0)),
        "agents.sessions.setStatus": Pays(Budget(40 / 60.0, 10.0)),
        "views.publish": Pays(Budget(90 / 60.0, 20.0)),  # Tier 4
        "usergroups.users.list": Pays(Budget(40 / 60.0, 10.0)),  # Tier 2; cached (governance/access.py)
        "canvases.create": Pays(Budget(15 / 60.0, 3.0)),  # Tier 2; a long research report
        "views.open": Pays(Budget(90 / 60.0, 20.0)),  # Tier 4; a modal a person asked for (Edit plan)
        "auth.test": Pays(None, Per.START_UP),
        "apps.connections.open": Pays(None, Per.START_UP),  # with the app-level token (Socket Mode)
    }


@dataclass(frozen=True)
class Request:
    """One Web API call: Slack's method name, its arguments, and the channel it acts in (for
    per-channel budgets and log lines)."""

    method: str
    args: dict = field(repr=False)  # message text and tokens stay out of reprs and logs
    channel: str | None = None
    person: str | None = None  # whose budget a per-person method pays


@dataclass(frozen=True)
class Outcome:
    """One budgeted Slack call: done (with its answer), or not made (wait = seconds until a token,
    or until a retry after Slack broke), or failed."""

    ok: bool
    wait: float = 0.0
    error: str = ""
    data: dict | None = None
    unsure: bool = False  # Slack broke mid-call (5xx, connection): the write may have happened

    @property
    def ts(self) -> str:
        return str((self.data or {}).get("ts") or "")


def _given(**args) -> dict:
    return {k: v for k, v in args.items() if v is not None}


# --- messages -------------------------------------------------------------------------------------
def post(channel: str, payload: dict, thread_ts: str | None = None) -> Request:
    return Request("chat.postMessage", _given(channel=channel, thread_ts=thread_ts, **payload), channel)


def update(channel: str, ts: str, payload: dict) -> Request:
    return Request("chat.update", {"channel": channel, "ts": ts, **payload}, channel)


def delete(channel: str, ts: str) -> Request:
    return Request("chat.delete", {"channel": channel, "ts": ts}, channel)


def delete_file(file_id: str) -> Request:
    return Request("files.delete", {"file": file_id})


def ephemeral(channel: str, user: str, text: str, thread_ts: str | None = None) -> Request:
    return Request("chat.postEphemeral", _given(channel=channel, user=user, text=text, thread_ts=thread_ts), channel)


def create_canvas(channel: str, title: str, markdown: str) -> Request:
    """A canvas tab in `channel` holding Markdown (headings, tables and links stay as written)."""
    return Request("canvases.create", {"channel_id": channel, "title": title,
                                       "document_content": {"type": "markdown", "markdown": markdown}}, channel)


def open_view(trigger_id: str, view: dict) -> Request:
    """A modal, opened in answer to a click (its trigger_id is single-use and lives 3 seconds)."""
    return Request("views.open", {"trigger_id": trigger_id, "view": view})


# --- native streams and the thread status -------------------------------------------------------
def start_stream(channel: str, thread_ts: str | None, markdown_text: str, *, recipient_user: str,
                 recipient_team: str, chunks: list[dict] | None = None) -> Request:
    """`chunks`: task cards and plan titles (progress.py) shown with the text, never in it."""
    return Request("chat.startStream", _given(channel=channel, thread_ts=thread_ts, markdown_text=markdown_text or None,
                                              recipient_user_id=recipient_user, recipient_team_id=recipient_team,
                                              chunks=chunks or None), channel)


def append_stream(channel: str, ts: str, markdown_text: str, chunks: list[dict] | None = None) -> Request:
    return Request("chat.appendStream", _given(channel=channel, ts=ts, markdown_text=markdown_text or None,
                                               chunks=chunks or None), channel)


def stop_stream(channel: str, ts: str, markdown_text: str | None = None, *, chunks: list[dict] | None = None,
                blocks: list[dict] | None = None) -> Request:
    """`blocks`: drawn under the text (the feedback buttons of an answer's last message)."""
    return Request("chat.stopStream", _given(channel=channel, ts=ts, markdown_text=markdown_text or None,
                                             chunks=chunks or None, blocks=blocks or None), channel)


def set_status(channel: str, thread_ts: str | None, status: str, loading: list[str] | None = None) -> Request:
    return Request("assistant.threads.setStatus", _given(channel_id=channel, thread_ts=thread_ts, status=status,
                                                         loading_messages=loading or None), channel)


# --- the agent surface ---------------------------------------------------------------------------
def suggested_prompts(channel: str, prompts: list[dict], title: str | None = None) -> Request:
    """The Messages tab's prompts. Never with thread_ts: from an agent_view app that "silently fails"."""
    return Request("assistant.threads.setSuggestedPrompts", _given(channel_id=channel, prompts=prompts, title=title),
                   channel)


def session_status(channel: str, thread_ts: str, status: str, *, title: str | None = None,
                   initiator: str | None = None) -> Request:
    """An agent session's status (active | processing | suspended | closed); `title` and `initiator`
    count only when the call creates the session."""
    return Request("agents.sessions.setStatus", _given(channel_id=channel, thread_ts=thread_ts, status=status,
                                                       title=title, initiator_user_id=initiator), channel)


def publish_home(user: str, blocks: list[dict]) -> Request:
    return Request("views.publish", {"user_id": user, "view": {"type": "home", "blocks": blocks}})


# --- files ----------------------------------------------------------------------------------------
def upload(channel: str, thread_ts: str | None, content: bytes | str, filename: str, title: str,
           alt_txt: str | None = None) -> Request:
    return Request("files.completeUploadExternal", _given(channel=channel, thread_ts=thread_ts, content=content,
                                                          filename=filename, title=title, alt_txt=alt_txt), channel)


# --- reading ----------------------------------------------------------------------------------------
def replies(channel: str, ts: str, limit: int, oldest: str | None = None) -> Request:
    return Request("conversations.replies", _given(channel=channel, ts=ts, limit=limit, oldest=oldest), channel)


def user_info(user: str) -> Request:
    return Request("users.info", {"user": user})


def channel_info(channel: str) -> Request:
    return Request("conversations.info", {"channel": channel}, channel)


def search(query: str, *, action_token: str, person: str, channel_types: list[str], content_types: list[str],
           limit: int, after: int | None = None, before: int | None = None) -> Request:
    """Real-time Search as `person` (their action_token); paid from that person's budget."""
    return Request("assistant.search.context",
                   _given(query=query, action_token=action_token or None, channel_types=",".join(channel_types),
                          content_types=",".join(content_types), limit=limit, after=after, before=before),
                   person=person)


def history(channel: str, limit: int, oldest: str | None = None) -> Request:
    return Request("conversations.history", _given(channel=channel, limit=limit, oldest=oldest), channel)


def members(channel: str, cursor: str | None = None) -> Request:
    return Request("conversations.members", _given(channel=channel, limit=200, cursor=cursor or None), channel)


def get_permalink(channel: str, ts: str) -> Request:
    return Request("chat.getPermalink", {"channel": channel, "message_ts": ts}, channel)


def usergroup_users(group: str) -> Request:
    return Request("usergroups.users.list", {"usergroup": group})


# --- start-up (no workspace, no budget) -------------------------------------------------------------
def auth_test() -> Request:
    return Request("auth.test", {})


def open_socket(app_token: str) -> Request:
    return Request("apps.connections.open", {"app_token": app_token})
