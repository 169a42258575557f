"""The Slack emulator's data model and validators: what Slack stores (users, channels, messages,
streams) and the rules it checks on what an app sends (Block Kit, stream chunks, views).

Pure: no I/O, no emulator state. The emulator (slack.py) and its feature modules (slack_agents.py,
slack_search.py, slack_canvases.py, slack_oauth.py, slack_directory.py) build on it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

TEXT_LIMIT = 40_000  # chat.postMessage truncates beyond this
UPDATE_TEXT_LIMIT = 4_000  # chat.update refuses beyond this (msg_too_long)
MAX_BLOCKS = 50
SECTION_TEXT_LIMIT = 3_000
HEADER_TEXT_LIMIT = 150
MARKDOWN_TOTAL_LIMIT = 12_000  # cumulative over a message's markdown blocks -> msg_too_long

SIGN_IN_PAGE = ("<!DOCTYPE html><html><head><title>Slack</title></head><body>"
                "<h1>Sign in to your workspace</h1><form action=\"/signin\"></form></body></html>")

KNOWN_BLOCK_TYPES = frozenset({
    "actions", "context", "context_actions", "divider", "file", "header", "image", "input",
    "markdown", "rich_text", "section", "table", "video",
})

TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})


class SlackError(Exception):
    """A Web API failure: answered as {"ok": false, "error": ...} with `status`, or, for a 5xx from
    Slack's edge (`content_type` text/plain or text/html), as the bare page such a proxy sends."""

    def __init__(self, error: str, status: int = 200, retry_after: int | None = None,
                 content_type: str = "application/json", **extra: Any):
        super().__init__(error)
        self.error, self.status, self.retry_after, self.extra = error, status, retry_after, extra
        self.content_type = content_type

    def response(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
        if self.content_type == "application/json":
            return web.json_response({"ok": False, "error": self.error, **self.extra}, status=self.status,
                                     headers=headers)
        reason = web.Response(status=self.status).reason
        text = f"{self.status} {reason}" if self.content_type == "text/plain" else \
            f"<html><head><title>{self.status} {reason}</title></head><body><h1>{reason}</h1></body></html>"
        return web.Response(text=text, status=self.status, content_type=self.content_type, headers=headers)


_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
_MD_LINK = re.compile(r"\]\(\s*<?([^\s()<>]+)")  # [label](url) and [label](<url>)
_ANGLE_LINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>|\s]*)[|>]")  # <https://x> and mrkdwn <url|label>
_BARE_URL = re.compile(r"(?:https?://|www\.)[^\s<>()`|]+", re.IGNORECASE)


def _outside_code(text: str) -> str:
    """Text with its code removed, as CommonMark (and, near enough, mrkdwn) reads it: fenced blocks, and
    code spans (a run of n backticks up to the next run of exactly n; an unmatched run is literal)."""
    kept, fence = [], ""
    for line in text.split("\n"):
        m = _FENCE_LINE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end():].strip():
                fence = ""
        elif m and not (m.group(1)[0] == "`" and "`" in line[m.end():]):
            fence = m.group(1)
        else:
            kept.append(line)
    text = "\n".join(kept)
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    following: list[int | None] = [None] * len(runs)  # the next run of the same length, if any
    last: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        length = runs[i][1] - runs[i][0]
        following[i], last[length] = last.get(length), i
    out, pos, i = [], 0, 0
    while i < len(runs):
        close = following[i]
        if close is None:
            i += 1
            continue
        out.append(text[pos:runs[i][0]] + " ")
        pos, i = runs[close][1], close + 1
    return "".join(out) + text[pos:]


def rendered_links(text: str, *, markdown: bool) -> list[str]:
    """Link targets a reader could click in a markdown block (`markdown`: [label](url), <url> autolinks,
    bare URLs) or in mrkdwn (<url|label>, <url>, bare URLs, which Slack links), code excluded in both.
    A model of Slack's renderers for telling literal text from a link, not a full Markdown parser."""
    plain = _outside_code(text)
    found = _MD_LINK.findall(plain) if markdown else []
    return found + _ANGLE_LINK.findall(plain) + _BARE_URL.findall(plain)


@dataclass
class Call:
    method: str
    params: dict
    ok: bool
    error: str | None
    status: int
    time: float
    team: str


@dataclass
class User:
    """A person (or bot user) of a workspace. `guest`: None (a full member), "multi" (multi-channel guest:
    is_restricted) or "single" (single-channel guest: is_restricted and is_ultra_restricted)."""

    id: str
    name: str
    real_name: str
    is_bot: bool = False
    title: str = ""
    tz: str = "UTC"
    guest: str | None = None
    is_admin: bool = False
    deleted: bool = False
    team: str | None = None  # None: the emulator's first workspace

    def to_json(self, team_id: str) -> dict:
        profile = {"real_name": self.real_name, "display_name": self.name, "real_name_normalized": self.real_name,
                   "title": self.title}
        offset = _tz_offset(self.tz)
        return {"id": self.id, "team_id": self.team or team_id, "name": self.name, "real_name": self.real_name,
                "is_bot": self.is_bot, "deleted": self.deleted, "tz": self.tz, "tz_label": self.tz,
                "tz_offset": offset, "is_admin": self.is_admin, "is_owner": False,
                "is_restricted": self.guest is not None, "is_ultra_restricted": self.guest == "single",
                "profile": profile}


def _tz_offset(tz: str) -> int:
    """Seconds east of UTC now, as users.info reports `tz_offset`."""
    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


@dataclass
class Message:
    ts: str
    channel: str
    user: str | None
    bot_id: str | None = None
    text: str = ""
    blocks: list | None = None
    thread_ts: str | None = None
    edits: list = field(default_factory=list)  # (time, text, blocks) per chat.update
    subtype: str | None = None
    files: list = field(default_factory=list)
    reactions: dict = field(default_factory=dict)  # name -> [user ids]
    hidden: bool = False  # a tombstone: a deleted thread parent that keeps its replies

    @property
    def visible_text(self) -> str:
        """What a reader sees: the markdown blocks' text when there are any, else `text`."""
        parts = [b.get("text", "") for b in self.blocks or [] if b.get("type") == "markdown"]
        return "\n".join(parts) if parts else self.text

    def links(self) -> list[str]:
        """Every link target a reader could click, in the markdown blocks and in the `text` fallback (see
        `rendered_links`)."""
        blocks = [b.get("text", "") for b in self.blocks or [] if b.get("type") == "markdown"]
        return [u for md in blocks for u in rendered_links(md, markdown=True)] + rendered_links(self.text, markdown=False)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        optional = {"bot_id": self.bot_id, "blocks": self.blocks, "thread_ts": self.thread_ts,
                    "subtype": self.subtype, "files": self.files, "hidden": self.hidden}
        out.update({k: v for k, v in optional.items() if v})
        if self.edits:
            out["edited"] = {"user": self.user, "ts": _format_ts(self.edits[-1][0])}
        if self.reactions:
            out["reactions"] = [{"name": n, "users": u, "count": len(u)} for n, u in self.reactions.items()]
        return out


@dataclass
class Channel:
    id: str
    name: str
    is_im: bool
    members: set
    messages: list = field(default_factory=list)
    is_private: bool = False
    is_mpim: bool = False  # a group DM (also private)
    team: str | None = None  # the workspace it belongs to; None: the emulator's first workspace

    @property
    def channel_type(self) -> str:
        """As message events name it: im, mpim, group (a private channel) or channel."""
        return "im" if self.is_im else "mpim" if self.is_mpim else "group" if self.is_private else "channel"

    @property
    def search_type(self) -> str:
        """As assistant.search.context's channel_types names it."""
        return {"im": "im", "mpim": "mpim", "group": "private_channel", "channel": "public_channel"}[self.channel_type]


@dataclass
class Workspace:
    """A team. `enterprise_id`: the Enterprise Grid org it belongs to. `plan` "free" turns on the free
    plan's rules (canvases: no standalone canvases, one canvas tab per channel)."""

    id: str
    name: str
    domain: str
    enterprise_id: str | None = None
    enterprise_name: str | None = None
    plan: str = "pro"


@dataclass(eq=False)
class Installation:
    """The app installed in one workspace (`team_id`) or, org-wide, in every workspace of an enterprise
    (`is_enterprise_install`, `team_id` None): whose bot user acts, with which scopes."""

    team_id: str | None
    enterprise_id: str | None
    bot_user_id: str
    bot_id: str
    scopes: set
    is_enterprise_install: bool = False
    installer: str | None = None
    user_scopes: set = field(default_factory=set)

    def covers(self, workspace: Workspace) -> bool:
        if self.is_enterprise_install:
            return workspace.enterprise_id is not None and workspace.enterprise_id == self.enterprise_id
        return workspace.id == self.team_id


@dataclass(eq=False)
class Grant:
    """What a token stands for: the bot of an installation (`kind` "bot"), a person's user token
    ("user", `user` set) or the app-level token ("app"). `expires`: time.time() deadline (rotation)."""

    install: Installation
    kind: str = "bot"
    user: str | None = None
    expires: float | None = None
    refresh_token: str | None = None


@dataclass(eq=False)  # `all` holds the delivery itself; compare by identity
class Delivery:
    """What the app answered to one delivery. status 0 means no answer (see `error`)."""

    status: int
    body: str
    headers: dict
    latency: float
    event_id: str | None = None
    payload: dict = field(default_factory=dict)
    all: list = field(default_factory=list)
    error: str | None = None
    message: Message | None = None  # the stored user message, for user_message()

    def to_json(self) -> dict:
        return {"status": self.status, "body": self.body, "latency": self.latency,
                "event_id": self.event_id, "error": self.error}


@dataclass(eq=False)
class Stream:
    """One native streaming message, from chat.startStream to its end.

    `state` is "streaming", then one of "stopped" (chat.stopStream), "stopped_by_user" (the
    recipient pressed Stop) or "expired" (Slack closed it after `stream_expiry_seconds`).
    `history` has one entry per call that changed it: (time, method, markdown added, text after)."""

    channel: str
    ts: str
    thread_ts: str
    recipient_user_id: str | None
    recipient_team_id: str | None
    started: float  # time.monotonic()
    expires: float  # time.monotonic() deadline
    task_display_mode: str = "timeline"
    state: str = "streaming"
    markdown: str = ""
    tasks: dict = field(default_factory=dict)  # task id -> latest task_update chunk (the task card now)
    task_history: list = field(default_factory=list)  # every task_update, in order
    plan_title: str | None = None
    blocks: list = field(default_factory=list)  # blocks chunks, in order
    end_blocks: list | None = None  # chat.stopStream `blocks`, drawn under the text
    metadata: Any = None
    session_status: str | None = None
    history: list = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The visible text after each call: how a reader saw it grow."""
        return [h[3] for h in self.history]

    def to_json(self) -> dict:
        return {"state": self.state, "recipient_user_id": self.recipient_user_id, "tasks": list(self.tasks.values()),
                "plan_title": self.plan_title, "task_display_mode": self.task_display_mode,
                "appends": len(self.history)}


def parse_chunks(raw: Any) -> list[dict]:
    """Streaming chunks as Slack reads them (slack_sdk.models.messages.chunk): markdown_text{text},
    task_update{id, title, status}, plan_update{title}, blocks{blocks}; anything else is invalid_chunks."""
    if raw is None or raw == "":
        return []
    chunks = raw
    if isinstance(raw, str):  # form-encoded callers send JSON text
        try:
            chunks = json.loads(raw)
        except json.JSONDecodeError:
            raise SlackError("invalid_chunks") from None
    if not isinstance(chunks, list):
        raise SlackError("invalid_chunks")
    for chunk in chunks:
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if kind == "markdown_text" and isinstance(chunk.get("text"), str):
            continue
        if kind == "plan_update" and isinstance(chunk.get("title"), str):
            continue
        if kind == "task_update" and _valid_task(chunk):
            continue
        if kind == "blocks" and isinstance(chunk.get("blocks"), list) and chunk["blocks"]:
            parse_blocks(chunk["blocks"])  # invalid_blocks, as Slack answers for bad blocks
            continue
        raise SlackError("invalid_chunks")
    return chunks


def _valid_task(chunk: dict) -> bool:
    """task_update{id, title, status, details?, output?, sources?: [{type: "url", url, text}]}
    (slack_sdk.models.messages.chunk.TaskUpdateChunk / URLSource)."""
    if not (all(isinstance(chunk.get(k), str) and chunk[k] for k in ("id", "title"))
            and chunk.get("status") in TASK_STATUSES):
        return False
    if any(k in chunk and not isinstance(chunk[k], str) for k in ("details", "output")):
        return False
    sources = chunk.get("sources", [])
    return isinstance(sources, list) and all(
        isinstance(src, dict) and src.get("type") == "url" and isinstance(src.get("url"), str) and src["url"]
        and isinstance(src.get("text"), str) for src in sources)


TASK_ORDER = {"pending": 0, "in_progress": 1, "complete": 2, "error": 2}


def check_task_order(tasks: dict, chunks: list[dict]) -> None:
    """A task card only moves forward: pending -> in_progress -> complete | error (steps may be
    skipped, a status may repeat with new details); a finished task takes no more updates."""
    seen = {task_id: task["status"] for task_id, task in tasks.items()}
    for chunk in chunks:
        if chunk["type"] != "task_update":
            continue
        before, after = seen.get(chunk["id"]), chunk["status"]
        if before is not None and (TASK_ORDER[before] == 2 or TASK_ORDER[after] < TASK_ORDER[before]):
            raise SlackError("invalid_chunks")
        seen[chunk["id"]] = after


class TokenBucket:
    """`burst` tokens, refilled at `per_minute`/60 a second; each call spends one."""

    def __init__(self, per_minute: float, burst: int):
        self.rate, self.burst = per_minute / 60.0, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> int:
        """0 if a token was spent, else the whole seconds until one is available (>= 1)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return max(1, math.ceil((1 - self.tokens) / self.rate))


def _format_ts(seconds: float) -> str:
    return f"{seconds:.6f}"


def _ts_key(ts: str) -> tuple[int, int]:
    # Comparing as floats would lose the last digits of a 16-digit ts.
    whole, _, frac = ts.partition(".")
    return int(whole), int(frac or 0)


def parse_blocks(raw: Any, max_blocks: int = MAX_BLOCKS) -> list | None:
    """Validate Block Kit as Slack does for the limits the bot can hit. None = no blocks given.

    Malformed blocks, more than 50, a section text over 3,000 or a header over 150 characters
    answer `invalid_blocks`; markdown blocks over 12,000 characters in total answer
    `msg_too_long` (the text is valid, the message is too big)."""
    if raw is None or raw == "":
        return None
    blocks = raw
    if isinstance(raw, str):
        try:
            blocks = json.loads(raw)
        except json.JSONDecodeError:
            raise SlackError("invalid_blocks") from None
    if not isinstance(blocks, list) or len(blocks) > max_blocks:
        raise SlackError("invalid_blocks")
    markdown_total = 0
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in KNOWN_BLOCK_TYPES:
            raise SlackError("invalid_blocks")
        kind, text = block["type"], block.get("text")
        text_str = text.get("text", "") if isinstance(text, dict) else text
        if kind == "section" and (not (text_str or block.get("fields")) or len(text_str or "") > SECTION_TEXT_LIMIT):
            raise SlackError("invalid_blocks")
        if kind == "header" and not 0 < len(text_str or "") <= HEADER_TEXT_LIMIT:
            raise SlackError("invalid_blocks")
        if kind == "markdown":
            if not isinstance(text, str):
                raise SlackError("invalid_blocks")
            markdown_total += len(text)
        if kind == "actions" and not 0 < len(block.get("elements") or []) <= 25:
            raise SlackError("invalid_blocks")
        if kind == "table":
            _check_table(block)
        if kind == "context_actions":
            _check_context_actions(block)
        elif any(isinstance(e, dict) and e.get("type") == "feedback_buttons" for e in block.get("elements") or []):
            raise SlackError("invalid_blocks")  # feedback_buttons sit in a context_actions block only
    if sum(1 for b in blocks if b.get("type") == "table") > 1:
        raise SlackError("only_one_table_allowed")
    if markdown_total > MARKDOWN_TOTAL_LIMIT:
        raise SlackError("msg_too_long")
    return blocks


CONTEXT_ACTIONS_ELEMENTS = frozenset({"feedback_buttons", "icon_button"})
BUTTON_TEXT_LIMIT, BUTTON_VALUE_LIMIT = 75, 2_000


def _check_context_actions(block: dict) -> None:
    """context_actions: 1-5 elements, feedback_buttons or icon_button; feedback_buttons have an
    action_id and a positive and a negative button, each plain_text text (<= 75) and a value (<= 2,000)
    (docs.slack.dev context-actions block; slack_sdk FeedbackButtonsElement)."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 0 < len(elements) <= 5:
        raise SlackError("invalid_blocks")
    for element in elements:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind not in CONTEXT_ACTIONS_ELEMENTS:
            raise SlackError("invalid_blocks")
        if kind == "feedback_buttons":
            if not isinstance(element.get("action_id"), str) or not element["action_id"]:
                raise SlackError("invalid_blocks")
            for side in ("positive_button", "negative_button"):
                button = element.get(side)
                text = button.get("text") if isinstance(button, dict) else None
                if not (isinstance(text, dict) and text.get("type") == "plain_text"
                        and isinstance(text.get("text"), str) and 0 < len(text["text"]) <= BUTTON_TEXT_LIMIT
                        and isinstance(button.get("value"), str) and 0 < len(button["value"]) <= BUTTON_VALUE_LIMIT):
                    raise SlackError("invalid_blocks")


TABLE_MAX_ROWS, TABLE_MAX_CELLS = 100, 20  # docs.slack.dev/reference/block-kit/blocks/table-block
TABLE_ALIGNS = {"left", "center", "right"}


def _check_table(block: dict) -> None:
    """The table block as documented: 1-100 rows, each 1-20 cells of raw_text {text} or rich_text
    {elements}; column_settings at most 20 of {align: left|center|right, is_wrapped: bool}."""
    rows = block.get("rows")
    if not isinstance(rows, list) or not 0 < len(rows) <= TABLE_MAX_ROWS:
        raise SlackError("invalid_blocks")
    for row in rows:
        if not isinstance(row, list) or not 0 < len(row) <= TABLE_MAX_CELLS:
            raise SlackError("invalid_blocks")
        for cell in row:
            kind = cell.get("type") if isinstance(cell, dict) else None
            if kind == "raw_text":
                if not isinstance(cell.get("text"), str) or not cell["text"]:
                    raise SlackError("invalid_blocks")
            elif kind == "rich_text":
                if not isinstance(cell.get("elements"), list):
                    raise SlackError("invalid_blocks")
            else:
                raise SlackError("invalid_blocks")
    settings = block.get("column_settings", [])
    if not isinstance(settings, list) or len(settings) > TABLE_MAX_CELLS:
        raise SlackError("invalid_blocks")
    for setting in settings:
        if setting is None:
            continue  # a null entry keeps a column's default
        if (not isinstance(setting, dict) or set(setting) - {"align", "is_wrapped"}
                or setting.get("align", "left") not in TABLE_ALIGNS
                or not isinstance(setting.get("is_wrapped", False), bool)):
            raise SlackError("invalid_blocks")


async def _read_params(request: web.Request) -> dict:
    """Query string + body (JSON or form): slack_sdk uses all three, and so does Slack."""
    params: dict[str, Any] = dict(request.query)
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.text() or "{}")
        except json.JSONDecodeError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        params.update(body)
    else:
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _find_action(blocks: list, action_id: str) -> tuple[str, dict]:
    for block in blocks:
        elements = list(block.get("elements") or []) + [block.get("accessory"), block.get("element")]
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block.get("block_id") or "emu-block", element
    raise LookupError(f"no element with action_id {action_id!r} in the message")


class Component:
    """A feature module of the emulator (slack_agents, slack_search, ...): its Web API methods, named
    `_api_<method with dots as underscores>` and found by the emulator's dispatch, its own state
    (`reset`, `state`) and its control endpoints (`routes`)."""

    def __init__(self, emu: Any):
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        pass

    def routes(self, app: web.Application) -> None:
        pass

    def state(self) -> dict:
        return {}


def json_arg(raw: Any, error: str = "invalid_arguments") -> Any:
    """A structured argument as JSON bodies carry it, or as the JSON text form bodies carry."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise SlackError(error) from None
    return raw
