"""Progress and feedback as Slack shows them on an agent's answer. Pure: no I/O.

* Task cards: each tool call (built-in search, URL context, code execution, MCP, the function tools)
  is a `task_update` chunk on the answer's native stream, moving pending -> in_progress -> complete
  or error, with URL sources where the tool has them. A thought summary is the detail of a
  "Thinking" card. Neither ever enters the answer's text (slack-agents.md 5).
* Feedback: a `context_actions` block with `feedback_buttons` under the answer's last message
  (slack-agents.md 6). Each button's value names the rating and the answer (its interaction id,
  model and profile), so a click needs no lookup to be counted and logged.
* Session titles: a short plain title from the question, without Slack markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

TaskStatus = Literal["pending", "in_progress", "complete", "error"]
TASK_ORDER = {"pending": 0, "in_progress": 1, "complete": 2, "error": 2}
THINKING_TASK = "thinking"
FEEDBACK_ACTION = "answer_feedback"
RATINGS = {"good": "positive", "bad": "negative"}  # button value's rating -> the metric's label
_TITLE_CHARS = 255  # task titles and details are kept short: a card is one line
_DETAIL_CHARS = 300
_SOURCES = 8  # URL sources per card
_SESSION_TITLE_CHARS = 60


@dataclass(frozen=True)
class Source:
    """A source listed under an answer: a web page, or (`in_slack`) a Slack message or file by its
    permalink, titled `#channel · author · date`."""

    url: str
    title: str
    in_slack: bool = False


@dataclass(frozen=True)
class TaskUpdate:
    task_id: str
    title: str
    status: TaskStatus
    sources: tuple[Source, ...] = ()
    details: str = ""

    def chunk(self) -> dict:
        """The `task_update` chunk (slack-sdk models/messages/chunk.py shape)."""
        out: dict = {"type": "task_update", "id": self.task_id[:64], "title": _plain(self.title, _TITLE_CHARS),
                     "status": self.status}
        if self.details:
            out["details"] = _plain(self.details, _DETAIL_CHARS)
        links = [s for s in self.sources if s.url.startswith(("https://", "http://"))][:_SOURCES]
        if links:
            out["sources"] = [{"type": "url", "url": s.url, "text": _plain(s.title or s.url, _TITLE_CHARS)}
                              for s in links]
        return out


def plan_chunk(title: str) -> dict:
    return {"type": "plan_update", "title": _plain(title, _TITLE_CHARS)}


def moves_forward(before: str | None, after: str) -> bool:
    """Slack's rule for a card: only forward, and a finished card takes no more updates."""
    return before is None or (TASK_ORDER[before] < 2 and TASK_ORDER[after] >= TASK_ORDER[before])


# --- tool steps -----------------------------------------------------------------------------------
_TOOL_TITLES = {"google_search": "Searching the web", "url_context": "Reading the linked pages",
                "code_execution": "Running code", "file_search": "Searching files", "google_maps": "Looking at maps"}


def tool_title(activity) -> str:
    """What a tool step's card (or the status) says: e.g. "Searching the web", "Calling crm.lookup"."""
    if activity.tool == "mcp_server":
        return f"Calling {activity.name}"
    return _TOOL_TITLES.get(activity.tool, f"Using {activity.tool}")


class ToolCards:
    """Built-in tool steps (gemini.ToolActivity: a call, then its result or failure) as task updates:
    each call gets a card id of its own; a result closes the oldest open card of the same tool."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], list[str]] = {}
        self._count = 0

    def updates(self, activity) -> list[TaskUpdate]:
        """A call: its card, pending then in progress (the model asked, the tool runs); a result or a
        failure: the card complete (with its sources) or in error."""
        key, title = (activity.tool, activity.name), tool_title(activity)
        if activity.phase == "call":
            self._count += 1
            task_id = f"tool-{self._count}"
            self._open.setdefault(key, []).append(task_id)
            return [TaskUpdate(task_id, title, "pending"), TaskUpdate(task_id, title, "in_progress")]
        waiting = self._open.get(key)
        if not waiting:
            return []
        sources = tuple(Source(url, text) for url, text in getattr(activity, "sources", ()) or ())
        return [TaskUpdate(waiting.pop(0), title, "error" if activity.phase == "failed" else "complete", sources)]


# --- feedback ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerTag:
    """What a rating is about: the answer's Gemini interaction, model and channel profile."""

    interaction: str
    model: str
    profile: str

    def value(self, rating: str) -> str:
        return json.dumps({"r": rating, "i": self.interaction, "m": self.model, "p": self.profile},
                          separators=(",", ":"))


def feedback_block(tag: AnswerTag) -> dict:
    button = lambda emoji, rating, label: {  # noqa: E731
        "text": {"type": "plain_text", "text": emoji}, "value": tag.value(rating), "accessibility_label": label}
    return {"type": "context_actions", "block_id": "answer_feedback", "elements": [{
        "type": "feedback_buttons", "action_id": FEEDBACK_ACTION,
        "positive_button": button("👍", "good", "This answer helped"),
        "negative_button": button("👎", "bad", "This answer did not help")}]}


def read_rating(value: str) -> tuple[str, AnswerTag] | None:
    """(rating, tag) from a clicked button's value; None for anything this bot did not write."""
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("r") not in RATINGS:
        return None
    fields = [str(data.get(k) or "")[:120] for k in ("i", "m", "p")]
    return data["r"], AnswerTag(*fields)


# --- text --------------------------------------------------------------------------------------
def _plain(text: str, limit: int) -> str:
    """One line of plain text: whitespace collapsed, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


_FORMATTING = str.maketrans({c: " " for c in "*_~`>#|[]"})


def session_title(question: str, limit: int = _SESSION_TITLE_CHARS) -> str:
    """A short plain title from a question: Slack tokens (<@U1>, <#C1|name>, <https://x|label>) become
    their label (or go), Markdown marks go, cut at a word. One pass over the text: linear."""
    out: list[str] = []
    i, n = 0, len(question)
    while i < n:
        if question[i] == "<":
            end = question.find(">", i)
            if end < 0:
                break  # an unclosed token: nothing after it is kept
            token = question[i + 1:end]
            label = token.partition("|")[2] if "|" in token else ""
            if label:
                out.append(label)
            elif not token.startswith(("@", "#", "!")):
                out.append(token)  # a bare link
            i = end + 1
            continue
        out.append(question[i])
        i += 1
    words = "".join(out).replace("&lt;", " ").replace("&gt;", " ").replace("&amp;", "&")
    words = " ".join(words.translate(_FORMATTING).replace("<", " ").replace(">", " ").split())
    if len(words) > limit:
        cut = words.rfind(" ", 0, limit)
        words = words[: cut if cut > limit // 2 else limit - 1].rstrip() + "…"
    return words or "New question"
