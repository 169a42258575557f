"""A finished answer as Slack messages: text, native tables, code that ran, and its sources.

Pure functions, no I/O. `final_messages` is the one entry point; the streamer's final sync posts or
edits one message per payload it returns. While an answer streams it is shown as plain Markdown
(render.py); only the final text gets tables, code runs and sources, so nothing jumps mid-stream.

Slack facts this follows (docs.slack.dev, table block reference, checked 2026-11):
* `table` block: `rows` at most 100, each at most 20 cells (`raw_text` or `rich_text`),
  `column_settings` at most 20 ({align: left|center|right, is_wrapped}); one table per message
  (`only_one_table_allowed`), drawn after the message's other blocks. So a message holds the text
  before a table and the table; the text after it starts the next message. A table beyond the
  limits is shown as an aligned monospace code block instead.
* The `markdown` block renders the rest; the published reference has listed tables as unsupported,
  which is why tables never stay in it.
* `text` is the notification fallback: escaped, with a table as readable `a | b` lines.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import urlsplit

from .progress import tool_title
from .render import _fence_step, neutralize_slack_markup, split_markdown
from .render import escape_mrkdwn as _escape

MAX_TABLE_ROWS = 100
MAX_TABLE_CELLS = 20
MAX_CELL_CHARS = 1000
FALLBACK_CHARS = 3000
CODE_CHARS = 1500
OUTPUT_CHARS = 1500
SOURCE_TITLE_CHARS = 100

_ROW = re.compile(r"^\s*\|")
_SEP_CELL = re.compile(r"^\s*:?-{1,}:?\s*$")
_BOLD = re.compile(r"(\*\*|__)(.+?)\1")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")


@dataclass(frozen=True)
class _Table:
    rows: list[list[str]]
    aligns: list[str]
    source: str  # the Markdown lines, for the fallback text


# --- tables -----------------------------------------------------------------------------------------
def _cells(line: str) -> list[str]:
    """Cells of a Markdown table row: outer pipes dropped, `\\|` kept as a literal pipe."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells, cur, i = [], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if ch == "|":
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def _is_separator(line: str) -> bool:
    return bool(_ROW.match(line)) and all(_SEP_CELL.match(c) for c in _cells(line))


def _align(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    return "right" if cell.endswith(":") else "left"


def _plain(cell: str) -> str:
    """raw_text shows characters as they are: drop Markdown emphasis, code ticks and link syntax.

    The cell is cut to a bounded length first, so the patterns below (each linear from one start, but
    retried from every '[' or '**') stay linear in the whole answer."""
    cell = cell[: MAX_CELL_CHARS * 2]
    cell = _LINK.sub(lambda m: m.group(1) or m.group(2), cell)
    cell = _BOLD.sub(r"\2", cell)
    cell = _CODE_SPAN.sub(r"\1", cell)
    cell = cell.replace("<br>", " ").replace("<br/>", " ").strip()
    return (cell[: MAX_CELL_CHARS - 1] + "…") if len(cell) > MAX_CELL_CHARS else cell


def split_tables(md: str) -> list[str | _Table]:
    """The answer as prose pieces and tables (a header row, a separator row, then rows), in order.
    Tables inside code blocks stay prose."""
    lines = md.split("\n")
    out: list[str | _Table] = []
    prose: list[str] = []
    fence = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if (fence is None and _ROW.match(line) and i + 1 < len(lines) and _is_separator(lines[i + 1])
                and len(_cells(line)) == len(_cells(lines[i + 1]))):
            j = i + 2
            while j < len(lines) and _ROW.match(lines[j]):
                j += 1
            header = _cells(line)
            width = len(header)
            body = [(_cells(r) + [""] * width)[:width] for r in lines[i + 2 : j]]
            aligns = [_align(c) for c in _cells(lines[i + 1])]
            if prose:
                out.append("\n".join(prose))
                prose = []
            out.append(_Table([header, *body], aligns, "\n".join(lines[i:j])))
            i = j
            continue
        fence = _fence_step(fence, line)
        prose.append(line)
        i += 1
    if prose:
        out.append("\n".join(prose))
    return out


def table_block(table: _Table) -> dict | None:
    """A Slack `table` block, or None when the table is beyond Slack's limits."""
    width = max(len(r) for r in table.rows)
    if len(table.rows) > MAX_TABLE_ROWS or width > MAX_TABLE_CELLS:
        return None
    rows = [[{"type": "raw_text", "text": _plain(c) or "–"} for c in (r + [""] * width)[:width]] for r in table.rows]
    settings = [{"align": a, "is_wrapped": True} for a in (table.aligns + ["left"] * width)[:width]]
    return {"type": "table", "rows": rows, "column_settings": settings}


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table_as_code(table: _Table) -> str:
    """The fallback for a table Slack cannot show: aligned columns in a code block."""
    plain = [[_plain(c).replace("`", "'") for c in r] for r in table.rows]
    width = max(len(r) for r in plain)
    plain = [(r + [""] * width)[:width] for r in plain]
    cols = [min(40, max(_width(r[k]) for r in plain)) for k in range(width)]

    def fmt(row: list[str]) -> str:
        return "  ".join(c[:40] + " " * max(0, cols[k] - _width(c[:40])) for k, c in enumerate(row)).rstrip()
    lines = [fmt(plain[0]), "  ".join("-" * w for w in cols), *(fmt(r) for r in plain[1:])]
    return "```\n" + "\n".join(lines) + "\n```"


# --- code runs and sources ------------------------------------------------------------------------
def _fence_for(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    return "`" * max(3, longest + 1)


def _trim(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return text[:cut].rstrip() + f"\n… ({len(text) - cut:,} more characters of {what} not shown)"


def code_run_markdown(run, number: int, total: int, output_chars: int = OUTPUT_CHARS) -> str:
    """A labelled code block for one run, and its output (long output trimmed, with a note)."""
    label = f"Code run {number}" if total > 1 else "Code run"
    outcome = "failed" if getattr(run, "outcome", "ok") == "error" else "ran"
    language = re.sub(r"[^A-Za-z0-9_+-]", "", getattr(run, "language", "") or "python")[:20]
    code = _trim((run.code or "").rstrip(), CODE_CHARS, "code")
    parts = [f"**{label}** ({language}, {outcome})", f"{_fence_for(code)}{language}\n{code}\n{_fence_for(code)}"]
    output = (run.output or "").rstrip()
    images = len(getattr(run, "images", []) or [])
    if output:
        output = _trim(output, output_chars, "output")
        fence = _fence_for(output)
        parts.append(f"Output:\n{fence}\n{output}\n{fence}")
    elif not images:
        parts.append("_(no output)_")
    if images:
        parts.append(f"_{images} image{'s' if images > 1 else ''} attached below._")
    return "\n".join(parts)


def _md_label(text: str) -> str:
    """Title text inside a Markdown link label: escaped, no brackets or emphasis that would break it."""
    text = " ".join(text.split())
    text = text.replace("[", "(").replace("]", ")")
    text = re.sub(r"([\\*_`~|])", r"\\\1", text)
    return _escape(text)


def _safe_url(url: str) -> str | None:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _dedup_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc.lower()}{parts.path.rstrip('/')}?{parts.query}"


def sources_markdown(citations: Iterable, max_sources: int = 10, max_chars: int = 2500) -> str:
    """"Sources" and a numbered list of unique links: `1. [Title](url) · host`. Titles and hosts are
    escaped; file citations without a link show their name. Bounded by count and characters. A Slack
    source is `[#channel · author · date](permalink)`: the markdown block's spelling of Slack's
    `<permalink|…>`, without the host (it is the workspace's own)."""
    seen: dict[str, tuple[str, str | None, bool]] = {}
    for c in citations:
        url = getattr(c, "url", None) if not isinstance(c, dict) else c.get("url")
        title = (getattr(c, "title", None) if not isinstance(c, dict) else c.get("title")) or ""
        safe = _safe_url(url or "")
        if url and not safe:
            continue  # not an http(s) link: never shown as one
        key = _dedup_key(safe) if safe else f"title:{title.strip().lower()}"
        if key == "title:" or key in seen:
            continue
        seen[key] = (title, safe, bool(getattr(c, "in_slack", False)))
    if not seen or max_sources <= 0:
        return ""
    lines = ["**Sources**"]
    used = len(lines[0])
    entries = list(seen.values())
    for n, (title, url, in_slack) in enumerate(entries, 1):
        host = (urlsplit(url).hostname or "").removeprefix("www.") if url and not in_slack else ""
        title = title[:SOURCE_TITLE_CHARS] + ("…" if len(title) > SOURCE_TITLE_CHARS else "")
        label = _md_label(title or host)
        line = f"{n}. [{label}]({url})" if url else f"{n}. {label}"
        if url and title and host and host.lower() not in title.lower():
            line += f" · {_escape(host)}"
        if n > max_sources or used + len(line) + 1 > max_chars:
            lines.append(f"_…and {len(entries) - n + 1} more_")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


# --- messages ---------------------------------------------------------------------------------------
def _fallback(text: str) -> str:
    text = _escape(text.strip() or "…")
    if len(text) > FALLBACK_CHARS:
        text = text[: FALLBACK_CHARS - 1]
        amp = text.rfind("&", max(0, len(text) - 5))
        if amp != -1 and ";" not in text[amp:]:
            text = text[:amp]
        text = text.rstrip() + "…"
    return text


def _payload(md: str, table: _Table | None = None) -> dict:
    blocks: list[dict] = [{"type": "markdown", "text": neutralize_slack_markup(md)}] if md.strip() else []
    text = md
    if table is not None:
        blocks.append(table_block(table))
        text = f"{md}\n\n{table.source}" if md.strip() else table.source
    return {"text": _fallback(text), "blocks": blocks or [{"type": "markdown", "text": "…"}]}


def final_messages(text: str, citations: Iterable = (), code_runs: Iterable = (), limit: int = 3500,
                   *, max_sources: int = 10, output_chars: int = OUTPUT_CHARS) -> list[dict]:
    """chat.postMessage/chat.update payloads for a finished answer, in order.

    The text is split as while streaming (split_markdown, `limit` Markdown characters a message);
    each table that fits Slack's limits becomes a `table` block closing the message that holds the
    text before it; code runs follow the answer as labelled code blocks; the sources list comes
    last. Never returns an empty list."""
    runs = list(code_runs)
    extras = [code_run_markdown(r, n, len(runs), output_chars) for n, r in enumerate(runs, 1)]
    sources = sources_markdown(citations, max_sources, max_chars=min(2500, limit))
    pieces = split_tables(text)
    tail = "\n\n".join(p for p in [*extras, sources] if p)
    messages: list[dict] = []
    prose = ""
    for piece in pieces:
        if isinstance(piece, str):
            prose = f"{prose}\n{piece}" if prose else piece
            continue
        if table_block(piece) is None:  # beyond Slack's limits: an aligned code block instead
            prose = f"{prose}\n{table_as_code(piece)}\n" if prose else f"{table_as_code(piece)}\n"
            continue
        chunks = split_markdown(prose, limit)
        messages += [_payload(c) for c in chunks[:-1]]
        messages.append(_payload(chunks[-1] if chunks else "", piece))
        prose = ""
    if tail:
        prose = f"{prose.rstrip()}\n\n{tail}" if prose.strip() else tail
    messages += [_payload(c) for c in split_markdown(prose, limit)]
    return messages or [_payload("…")]


# --- what a turn collects for its final messages, and its status lines -----------------------------
@dataclass
class Extras:
    """Everything besides text that a turn's stream yields and the final messages show."""

    citations: list = field(default_factory=list)
    code_runs: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # ToolActivity items with phase "failed"

    def add(self, item) -> None:
        kind = type(item).__name__
        if kind in ("Citation", "Source"):
            self.citations.append(item)
        elif kind == "CodeRun":
            self.code_runs.append(item)
        elif kind == "ToolActivity" and item.phase == "failed":
            self.failures.append(item)

    def failure_note(self) -> str:
        """One plain line for failed tools (the answer itself goes on)."""
        names = list(dict.fromkeys(_escape(f.name) for f in self.failures))
        if not names:
            return ""
        which = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        noun = "tool" if len(names) == 1 else "tools"
        return f"The {which} {noun} failed, so this answer may be missing what {'it' if len(names) == 1 else 'they'} would have added."


def tool_status(activity) -> str | None:
    """The thread status while a tool step runs (None once it is over): e.g. "Calling crm.lookup…"."""
    return f"{tool_title(activity)}…" if activity.phase == "call" else None
