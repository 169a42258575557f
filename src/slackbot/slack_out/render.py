"""Markdown <-> Slack text helpers: split answers into Slack-sized messages, build payloads, read user text.

Pure functions, no I/O. Slack's `markdown` block renders standard Markdown itself, so we never convert
Markdown; we only choose *where* to cut it. That needs fence tracking and a few line classes (heading,
blank line, table row), which a ~100-line line scanner does. A full parser (markdown-it-py, mistune) was
not used: it would parse the whole document, and its reading of earlier text can change as text is
appended (setext headings, lazy continuations), which breaks the streaming guarantee below. Here every
cut is decided from a window of at most `limit + 1` characters after the previous cut, so a chunk that is
complete once stays identical however much text follows (see `stable_split`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

DEFAULT_MESSAGE_CHARS = 3500
_MIN_LIMIT = 64

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]|$)")
# A space run, not where the next chunk would start a block. The lookbehind makes a run match only from its
# first char: without it each later char of a run rescans the run (quadratic on 40,000 spaces).
_SPACES = re.compile(r"(?<![ \t])[ \t]+(?=[^\s`~#>|*+-])")
_LEADING_WS = re.compile(r"\s*")
_PARTIAL_FENCE = re.compile(r"[ \t]*(?:`{1,2}|~{1,2})")
# Longest fence marker and indentation a line may have to count as a fence here. CommonMark sets no
# bound, but a message must hold a closing copy of the marker and the next one a reopening copy: a
# "fence" of 9,000 backticks would leave no room for text and cut the answer into one-character
# messages. A longer run is text (cut like any long word); Slack may still draw it as a code block.
_MAX_MARKER = 16
_MAX_INDENT = 16


@dataclass(frozen=True)
class _Fence:
    indent: str
    marker: str  # e.g. "```" or "~~~~"
    reopen: str  # marker + first word of the info string, e.g. "```python"

    @property
    def close(self) -> str:
        return self.indent + self.marker


def _fence_line(line: str) -> re.Match | None:
    m = _FENCE.match(line)
    return m if m and len(m.group(1)) <= _MAX_INDENT and len(m.group(2)) <= _MAX_MARKER else None


def _fence_step(state: _Fence | None, line: str) -> _Fence | None:
    """Fence state after `line` (CommonMark-ish, lenient about indentation)."""
    m = _fence_line(line)
    if not m:
        return state
    indent, marker, info = m.groups()
    if state is None:
        if marker[0] == "`" and "`" in info:
            return None  # ```inline``` code, not a fence
        words = info.split()
        return _Fence(indent, marker, marker + (words[0][:20] if words else ""))
    if marker[0] == state.marker[0] and len(marker) >= len(state.marker) and not info.strip():
        return None
    return state


def _scan(state: _Fence | None, text: str) -> _Fence | None:
    for line in text.split("\n"):
        state = _fence_step(state, line)
    return state


def _close_len(state: _Fence | None) -> int:
    return len(state.close) + 1 if state else 0


def _is_row(line: str) -> bool:
    return line.lstrip().startswith("|")


def _is_table_sep(line: str) -> bool:
    return _is_row(line) and "-" in line and not line.strip().strip("|:- \t")


def _choose_cut(window: str, fence: _Fence | None, header: str | None, budget: int, report: bool) -> tuple[int, str | None]:
    """Pick the cut offset in `window` (len <= budget + 1), looking at nothing else (this is what makes
    stable_split work). Also returns the table header to repeat in the next chunk when cutting inside a table."""
    best: dict[str, tuple[int, str | None]] = {}
    first = len(window) - len(window.lstrip())  # a chunk must hold some non-whitespace

    def consider(cls: str, c: int, st: _Fence | None, hdr: str | None = None) -> None:
        # The text before c ends with at least one whitespace char (newline or space run) that is stripped.
        if c > first and c - 1 + _close_len(st) <= budget:
            best[cls] = (c, hdr)

    state, off, prev, just_opened = fence, 0, "", False
    line_states: list[tuple[int, _Fence | None, str]] = []
    for i, line in enumerate(window.split("\n")):
        line_states.append((off, state, line))
        if state is None and not _is_row(line):
            header = None
        if i > 0:
            if state is not None:
                if not just_opened:
                    consider("code", off, state)
            else:
                h = _HEADING.match(line)
                if h and report and len(h.group(1)) <= 3:
                    consider("section", off, None)
                if h:
                    consider("heading", off, None)
                elif not prev.strip() or not line.strip():
                    consider("para", off, None)
                elif _is_row(prev) and _is_row(line):
                    if not _is_table_sep(prev):
                        consider("table", off, None, header)
                else:
                    consider("line", off, None)
        if state is None and _is_table_sep(line) and _is_row(prev) and len(prev) + len(line) < budget // 4:
            header = prev + "\n" + line
        if not _fence_line(line):
            for m in _SPACES.finditer(line):
                if m.start() > 0:
                    consider("space", off + m.end(), state)
        new = _fence_step(state, line)
        just_opened, state, prev = state is None and new is not None, new, line
        off += len(line) + 1

    order = (["section"] if report else []) + ["heading", "para", "line", "table", "code", "space"]
    for cls in order:  # best class whose latest cut still fills the message reasonably
        floor = budget // 4 if cls == "section" else budget // 2
        if cls in best and best[cls][0] >= floor:
            return best[cls]
    for cls in order:  # else the latest boundary, unless it leaves a scrap ("Here you go:" before a huge word)
        if cls in best and best[cls][0] >= budget // 4:
            return best[cls]
    # Hard cut: no usable boundary at all (e.g. one enormous word or code line).
    for line_off, st, line in reversed(line_states):
        c = budget - _close_len(st)
        if c > line_off and _fence_line(line) and line_off >= max(first + 1, budget // 4):
            return line_off, None  # cutting a fence line's info string could turn it into a closing fence
        if c > line_off or line_off == 0:
            return max(c, 1), None
    raise AssertionError("unreachable")


def _split(md: str, limit: int, report: bool) -> list[str]:
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be >= {_MIN_LIMIT}")
    # Linear in len(md): each chunk looks only at md[pos : pos + limit + 1] (no copies of the rest).
    chunks: list[str] = []
    pos, fence, header = 0, None, None
    end_of_text = len(md.rstrip())
    while True:
        if fence is None:
            pos = _LEADING_WS.match(md, pos).end()  # an indented first line would render as code
        if pos >= end_of_text:
            return chunks
        prefix = fence.reopen + "\n" if fence else header + "\n" if header else ""
        budget = limit - len(prefix)
        if end_of_text - pos <= budget:
            chunks.append(prefix + md[pos:end_of_text])
            return chunks
        window = md[pos : pos + budget + 1]
        cut, header = _choose_cut(window, fence, header, budget, report)
        cut, body, end = _fit(window, cut, fence, budget)
        chunks.append(prefix + body + ("\n" + end.close if end else ""))
        pos, fence = pos + cut, end


def _fit(text: str, cut: int, fence: _Fence | None, budget: int) -> tuple[int, str, _Fence | None]:
    """(cut, body, fence open after it): `cut` moved back until the chunk text[:cut], stripped, plus the
    close of a code block it leaves open fits `budget`. The state comes from what the chunk shows (it
    differs only after a hard cut in a fence line). A close is short (_MAX_MARKER), so this stays near
    the first cut: never a message per character."""
    while True:
        body = text[:cut].rstrip()
        end = _scan(fence, body)
        excess = len(body) + _close_len(end) - budget
        if excess <= 0 or cut <= 1:
            return cut, body, end
        cut = max(1, min(cut - 1, len(body) - excess))


def split_markdown(md: str, limit: int = DEFAULT_MESSAGE_CHARS) -> list[str]:
    """Split an answer into chunks of at most `limit` chars, one per Slack message.

    Boundaries, best first (a boundary must leave the chunk at least half full to win over a lower class):
    before a heading, at a blank line (outside code), at a line end (plain, then between table rows, then
    inside code), at a space, else a hard cut (also when the best boundary would leave the chunk less than a
    quarter full: a long word is cut into full messages, never after a scrap). A code block cut in two is
    closed (```) at the end of one chunk and reopened with its language (```python) at the start of the
    next; a table cut between rows repeats its header row + separator at the start of the next chunk, so
    every chunk renders on its own. Whitespace at cuts (and leading indentation of a chunk's first line)
    may be dropped; nothing else is. Blank input gives []. Every chunk but the last has balanced fences;
    the last is unclosed only if `md` is (partial text: use close_open_fences)."""
    return _split(md, limit, report=False)


def split_report(md: str, limit: int = DEFAULT_MESSAGE_CHARS) -> list[str]:
    """Like split_markdown, but each chunk starts at a #/##/### heading where possible, packing whole
    sections while they fit (a heading wins if the chunk before it is at least a quarter full)."""
    return _split(md, limit, report=True)


def stable_split(md: str, limit: int = DEFAULT_MESSAGE_CHARS) -> tuple[list[str], str]:
    """For streaming by edits: (frozen_chunks, tail) = (split_markdown(md)[:-1], split_markdown(md)[-1]).

    Each cut depends only on the `limit + 1` chars after the previous cut, so a frozen chunk is final: for
    any text t extending md, split_markdown(t)[:len(frozen)] == frozen. The tail (<= limit chars, may hold
    an unclosed fence) is what the current message shows; pass it through close_open_fences. ([], "") for
    blank input."""
    chunks = split_markdown(md, limit)
    return (chunks[:-1], chunks[-1]) if chunks else ([], "")


def _fence_at(md: str, start: int) -> _Fence | None:
    return _scan(None, md[:start]) if start else None


def open_code_block_at(md: str, start: int, end: int) -> int | None:
    """Where the code block still open at `end` began (the offset of its opening fence line) if that is
    after `start`; None when no block is open at `end`, or it began before `start`."""
    state, opened, off = _fence_at(md, start), None, start
    for line in md[start:end].split("\n"):
        new = _fence_step(state, line)
        if state is None and new is not None:
            opened = off
        state, off = new, off + len(line) + 1
    return opened if state is not None else None


_LIST_LINE = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)|[ \t]")  # an item, or indented: a list goes on


def _block_starts(md: str, start: int, end: int):
    """Offsets in (start, end] where a new block begins in md: a line after a blank line that closes a
    paragraph, a whole list, a table or a code block, or a heading. Not a blank line inside a code block,
    nor one between two items of a list; a list followed by a blank line ends only once the next line
    shows it does. One pass over md[start:end] (and the fence state before it)."""
    state, off, prev, blank = _fence_at(md, start), start, "", False
    lines = md[start:end].split("\n")
    for i, line in enumerate(lines):
        if state is None and prev and off > start:
            if line.strip() and (blank or _HEADING.match(line)):
                if not (_LIST_LINE.match(prev) and _LIST_LINE.match(line)):
                    yield off
            elif not line.strip() and blank and i == len(lines) - 1 and not _LIST_LINE.match(prev):
                yield off  # "...end of a paragraph.\n\n": the next block has not begun yet
        if not line.strip():
            blank = blank or i < len(lines) - 1
        else:
            prev, blank = line, False
        state = _fence_step(state, line)
        off += len(line) + 1


def block_end(md: str, start: int, end: int) -> int:
    """The latest offset in (start, end] where a message showing md[start:] may end so that the next one
    begins a block (see _block_starts); `start` when there is none yet."""
    best = start
    for off in _block_starts(md, start, end):
        best = off
    return best


def starts_block(md: str, pos: int) -> bool:
    """Whether a message may begin at `pos` without starting mid-paragraph, mid-list or mid-table."""
    if pos <= 0:
        return True
    line = md.rfind("\n", 0, len(md[:pos].rstrip())) + 1  # the last line with text before pos
    nl = md.find("\n", pos)
    return pos in _block_starts(md, line, len(md) if nl < 0 else nl)


def first_cut(md: str, start: int, limit: int = DEFAULT_MESSAGE_CHARS) -> int | None:
    """Where a message showing md[start:] must end (an offset into md), or None while it all fits.

    The same cut split_markdown would make for a chunk starting at `start`, and as stable: it depends
    only on the `limit + 1` characters after `start`, so it never moves as text is appended."""
    fence = _fence_at(md, start)
    pos = _LEADING_WS.match(md, start).end() if fence is None else start
    rest = md[pos:]
    budget = limit - (len(fence.reopen) + 1 if fence else 0)
    if len(rest.rstrip()) <= budget:
        return None
    cut, _ = _choose_cut(rest[: budget + 1], fence, None, budget, False)
    return pos + _fit(rest, cut, fence, budget)[0]


def render_span(md: str, start: int, end: int, *, final: bool) -> str:
    """What a message showing md[start:end] displays: a code block open at `start` is reopened, one
    open at `end` closed (a still-growing view also drops a half-typed fence line)."""
    fence = _fence_at(md, start)
    pos = _LEADING_WS.match(md, start, max(start, end)).end() if fence is None else start
    body = md[pos:end].rstrip()
    chunk = (fence.reopen + "\n" if fence else "") + body
    if not final:
        return close_open_fences(chunk)
    still_open = _scan(fence, body)
    return chunk + ("\n" + still_open.close if still_open else "")


def stream_piece(md: str, start: int, end: int, *, first: bool) -> str:
    """The markdown a native stream appends for md[start:end] (the first piece reopens a code block)."""
    if not first:
        return md[start:end]
    fence = _fence_at(md, start)
    pos = _LEADING_WS.match(md, start, max(start, end)).end() if fence is None else start
    return (fence.reopen + "\n" if fence else "") + md[pos:end]


def stream_closing(md: str, start: int, end: int) -> str:
    """What to append when a stream that showed md[start:end] ends: a fence close if one is open."""
    still_open = _scan(_fence_at(md, start), md[start:end])
    return ("\n" + still_open.close) if still_open else ""


def close_open_fences(partial_md: str) -> str:
    """Make a still-streaming answer render: drop a trailing half-typed fence line (` or ``) and close a
    fence left open. Adds at most len(indent + marker) + 1 chars."""
    lines = partial_md.split("\n")
    if _PARTIAL_FENCE.fullmatch(lines[-1]):
        lines.pop()
    text = "\n".join(lines)
    state = _scan(None, text)
    if state is None:
        return text
    return text + ("" if text.endswith("\n") else "\n") + state.close


def escape_mrkdwn(text: str) -> str:
    """Someone else's text (a question, a progress line, a file name) made safe for `mrkdwn` and `text`:
    &, < and > as entities, so `<!channel>`, `<@U…>` or `<https://evil|Slack login>` show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

# Slack's own markup in Markdown we did not write: a mention or broadcast (<@U…>, <!channel>, <!here>,
# <!everyone>, <!subteam^…>, <!date^…>) or a link whose label hides its target (<https://evil|Slack login>).
# Slack documents the markdown block as standard Markdown (links are [label](url)) and says nothing about
# these tokens, while its output is Slack markup; so they are never passed through. The shapes are exact
# so code keeps its brackets (`<!doctype html>`, `Map<@NonNull K, V>`). A "<" starts a match only where a
# token can follow, and every scan stops at the next "<" or ">": linear.
_SLACK_MARKUP = re.compile(
    r"<(?=@[UW][A-Z0-9_]+[|>]|!(?:here|channel|everyone|group)[|>]|!(?:subteam|date)\^"
    r"|[A-Za-z][A-Za-z0-9+.-]*:[^<>|]*\|)([^<>]*)>")


_ID_CHARS = string.ascii_uppercase + string.digits + "_"
_SCHEME_CHARS = string.ascii_letters + string.digits + "+.-"
_BANG_WORDS = ("here|", "channel|", "everyone|", "group|", "subteam^", "date^")


def _may_become_token(rest: str) -> bool:
    """Whether "<" + rest (no "<" or ">" in it) could still grow into a token _SLACK_MARKUP matches.
    String methods only, each linear: this sees a whole message in the worst case."""
    if not rest:
        return True
    if rest[0] == "@":
        uid = rest[1:].partition("|")[0]
        return not uid or (uid[0] in "UW" and not uid[1:].strip(_ID_CHARS))
    if rest[0] == "!":
        word = rest[1:]
        return any(word.startswith(w) or w.startswith(word) for w in _BANG_WORDS)
    scheme = rest.partition(":")[0]
    return scheme[:1].isascii() and scheme[:1].isalpha() and not scheme.strip(_SCHEME_CHARS)


def open_token_at(md: str, start: int, end: int) -> int | None:
    """The offset of a "<" in md[start:end] that begins a Slack token still open at `end` (a mention, a
    broadcast or a labelled link whose ">" has not come yet, however long), else None. Linear."""
    lt = md.rfind("<", start, end)
    if lt < 0 or md.find(">", lt, end) >= 0 or not _may_become_token(md[lt + 1 : end]):
        return None
    return lt


def step_gap(text: str) -> str:
    """What goes between one Gemini step's words and the next's: a paragraph break, unless the text
    is empty or ends with one already."""
    if not text.strip() or text.endswith("\n\n"):
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


def neutralize_slack_markup(md: str) -> str:
    """Markdown for a `markdown` block with Slack's mention/broadcast/disguised-link tokens shown as typed
    (their < and > as entities). Everything else, code included (`List<String>`, `<div>`, `<!doctype html>`),
    is left alone, so code renders as written. At most triples the text (a 3-char token becomes 9 chars),
    which keeps SLACKBOT_MESSAGE_CHARS (<= 3,900) under the block's 12,000.

    A token begun but not finished in `md` has its "<" escaped too: a native stream shows its appends
    joined, so a piece ending in `<https://evil…` and the next one starting `…|Slack login>` would
    otherwise make a live link that neither piece holds whole."""
    out = _SLACK_MARKUP.sub(r"&lt;\1&gt;", md)
    lt = open_token_at(out, 0, len(out))
    return out if lt is None else out[:lt] + "&lt;" + out[lt + 1 :]


def canvas_markdown(md: str) -> str:
    """A canvas's `document_content` Markdown from text we did not write (a research report from the web, a
    question): shown as written, never acting. Canvas Markdown embeds with image syntax (`![](@U123)` mentions
    and notifies a person, `![](#C123)` a channel, `![](https://…/archives/…)` a message or file), so every
    `![` becomes `!\\[`, which Markdown shows as typed (canvases draw no web images anyway); Slack's own tokens
    (`<!channel>`, `<@U…>`, `<url|label>`) are neutralised as in messages. Headings, tables, lists and
    `[label](url)` links are untouched. Code is not exempt: where a code span or fence begins is for the
    renderer to decide, and guessing it wrong would let an embed through; a `![` in code shows a backslash."""
    return neutralize_slack_markup(md.replace("![", "!\\["))


def message_payload(chunk: str, *, fallback_chars: int = 3000) -> dict:
    """chat.postMessage/chat.update kwargs: the markdown block renders; `text` is the notification fallback.

    Neither can ping or disguise a link: the block goes through neutralize_slack_markup, and the fallback is
    the chunk with &, <, > escaped, trimmed to `fallback_chars` with "…" without cutting an entity. Blank
    chunk -> placeholder "…"."""
    if not chunk.strip():
        chunk = "…"
    text = escape_mrkdwn(chunk)
    if len(text) > fallback_chars:
        text = text[: fallback_chars - 1]
        amp = text.rfind("&", max(0, len(text) - 4))
        if amp != -1 and ";" not in text[amp:]:
            text = text[:amp]
        text = text.rstrip() + "…"
    return {"text": text, "blocks": [{"type": "markdown", "text": neutralize_slack_markup(chunk)}]}


_SLACK_TOKEN = re.compile(r"<([^<>\n]+)>")
# A label stops at the next "<" too: with [^>]* every "<@U1|" of a text without ">" would scan to its end.
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9_]+)(?:\|[^<>]*)?>")
_BLANKS = re.compile(r"[ \t]*")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _convert_token(m: re.Match, names: dict[str, str]) -> str:
    target, _, label = m.group(1).partition("|")
    target, label = _unescape(target), _unescape(label)
    if target.startswith("@"):
        uid = target[1:]
        return "@" + names.get(uid, label.lstrip("@") or uid)
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        name = target[1:].split("^")[0]
        if name in ("here", "channel", "everyone"):
            return "@" + name
        return label or "@" + name
    if target.startswith("mailto:"):
        addr = target[len("mailto:"):]
        return addr if not label or label == addr else f"[{label}]({target})"
    if not label or label == target or label == target.split("://", 1)[-1]:
        return target
    return f"[{label}]({target})"


def slack_to_prompt(text: str, names: dict[str, str], bot_user_id: str | None = None) -> str:
    """Slack mrkdwn as users type it -> plain readable text for Gemini (names, links, channels, entities).

    The bot's own mention is removed: at a line start together with a following ":" or ","; before
    punctuation or a line end together with the spaces before it; elsewhere replaced by one space."""
    if bot_user_id:
        text = _drop_bot_mentions(text, bot_user_id)
    parts, last = [], 0
    for m in _SLACK_TOKEN.finditer(text):
        parts += [_unescape(text[last : m.start()]), _convert_token(m, names)]
        last = m.end()
    parts.append(_unescape(text[last:]))
    return "".join(parts).strip()


def _drop_bot_mentions(text: str, bot_user_id: str) -> str:
    """The bot-mention rules of slack_to_prompt, in linear time.

    Patterns like `[ \t]*<@BOT>` tried at every offset rescan a whitespace run from each of its chars
    (40,000 spaces took seconds), so the mention is found on its own and the blanks around it are
    measured from it, each blank examined a bounded number of times."""
    bot = re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>")
    lines = []
    for line in text.split("\n"):  # at a line start, with a following ":" or ","
        body = line.lstrip(" \t")
        if m := bot.match(body):
            line = body[m.end():].lstrip(" \t")
            if line[:1] in (",", ":"):
                line = line[1:].lstrip(" \t")
        lines.append(line)
    text = "\n".join(lines)
    out, last, spaced = [], 0, False
    for m in bot.finditer(text):
        before = text[last : m.start()].rstrip(" \t")
        after = _BLANKS.match(text, m.end()).end()
        if after == len(text) or text[after] in "\n,.;:!?)":  # before punctuation or a line end: dropped
            out.append(before)  # with the blanks before it (and after it, when a space already stands here)
            last = after if spaced and not before else m.end()
            spaced = False
        else:  # elsewhere, with the blanks around it, one space
            out.append(before + ("" if spaced and not before else " "))
            last, spaced = after, True
    out.append(text[last:])
    return "".join(out)


def mentioned_user_ids(text: str) -> list[str]:
    """User ids mentioned as <@U…>/<@W…>, in order and unique, so the caller can look up their names."""
    return list(dict.fromkeys(_USER_MENTION.findall(text)))


def sources_section(citations: list[dict]) -> str:
    """A "**Sources**" numbered list of unique cited links (first title wins), or "" if there are none."""
    seen: dict[str, str] = {}
    for c in citations:
        url = (c.get("url") or "").strip()
        if url and url not in seen:
            seen[url] = " ".join(str(c.get("title") or "").split())
    if not seen:
        return ""
    lines = ["**Sources**"]
    for i, (url, title) in enumerate(seen.items(), 1):
        safe_url = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
        label = (title or url.split("://", 1)[-1]).replace("[", "(").replace("]", ")")
        lines.append(f"{i}. [{label}]({safe_url})")
    return "\n".join(lines)
