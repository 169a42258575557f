"""A canvas as a readable page for the sandbox: the emulated canvas's Markdown drawn simply. Pure.

Every word of a canvas is someone else's text (the agent's report), so each piece is HTML-escaped
before any tag goes around it, only http(s) URLs become links, and the page runs no script at all (the
sandbox serves it with a CSP saying so). It reads line by line; its few regexes have bounded repeats,
so the work stays linear in the text.

Drawn: headings, paragraphs, bulleted and numbered lists (indentation kept), quotes, rules, fenced
code, tables, `code`, **bold**, _emphasis_ and [links](https://…). Anything else shows as the text it is.
"""

from __future__ import annotations

import re
from html import escape

_FENCE = ("```", "~~~")
_LIST = re.compile(r"( {0,12})([-*+]|\d{1,9}[.)]) (.*)")
_RULE = re.compile(r" {0,3}([-*_])( ?\1){2,} ?")
_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\((https?://[^\s()<>]{1,2000})\)")
_CODE = re.compile(r"`([^`\n]{1,2000})`")
_EMPHASIS = re.compile(r"(?<![\w*])([_*])([^\s_*][^_*\n]{0,500}?)\1(?![\w*])")  # _a_ or *a*, not snake_case
MAX_DEPTH = 4  # list indentation shown, in steps


def page(markdown: str, *, title: str = "") -> str:
    """The whole HTML page; `title` defaults to the canvas's first heading."""
    heading = title or _first_heading(markdown) or "Canvas"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(heading)} · canvas</title><style>{_STYLE}</style></head>\n"
            f'<body><div class="bar">Canvas · sandbox workspace</div>'
            f'<article class="canvas">\n{render(markdown)}\n</article></body></html>\n')


def _first_heading(markdown: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def render(markdown: str) -> str:
    """The canvas body as HTML (escaped throughout)."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith(_FENCE):
            i = _code_block(lines, i, out)
        elif stripped.startswith("#") and (level := _heading_level(stripped)):
            out.append(f"<h{level}>{inline(stripped[level:].strip().rstrip('#').strip())}</h{level}>")
            i += 1
        elif _RULE.fullmatch(line):
            out.append("<hr>")
            i += 1
        elif stripped.startswith(">"):
            i = _quote(lines, i, out)
        elif _LIST.fullmatch(line):
            i = _list(lines, i, out)
        elif "|" in line and i + 1 < len(lines) and _table_rule(lines[i + 1]):
            i = _table(lines, i, out)
        else:
            i = _paragraph(lines, i, out)
    return "\n".join(out)


def _heading_level(stripped: str) -> int:
    level = len(stripped) - len(stripped.lstrip("#"))
    return level if level <= 6 and (len(stripped) == level or stripped[level] == " ") else 0


def _code_block(lines: list[str], i: int, out: list[str]) -> int:
    fence = lines[i].strip()[:3]
    body: list[str] = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(fence):
        body.append(lines[i])
        i += 1
    out.append(f"<pre><code>{escape(chr(10).join(body))}</code></pre>")
    return i + 1


def _quote(lines: list[str], i: int, out: list[str]) -> int:
    quoted: list[str] = []
    while i < len(lines) and lines[i].strip().startswith(">"):
        quoted.append(inline(lines[i].strip()[1:].strip()))
        i += 1
    out.append(f"<blockquote>{'<br>'.join(quoted)}</blockquote>")
    return i


def _list(lines: list[str], i: int, out: list[str]) -> int:
    """A run of list items of one kind (numbered: <ol>, else <ul>); indentation is shown, not nested."""
    items: list[str] = []
    ordered = _LIST.fullmatch(lines[i]).group(2)[0].isdigit()
    while i < len(lines) and (m := _LIST.fullmatch(lines[i])) and (m.group(2)[0].isdigit() == ordered or m.group(1)):
        depth = min(len(m.group(1)) // 2, MAX_DEPTH)
        attr = f' class="depth-{depth}"' if depth else ""
        items.append(f"<li{attr}>{inline(m.group(3).strip())}</li>")
        i += 1
    tag = "ol" if ordered else "ul"
    out.append(f"<{tag}>{''.join(items)}</{tag}>")
    return i


def _table_rule(line: str) -> bool:
    """The |---|:--:| line under a table's header (checked by its characters: no regex to backtrack)."""
    return "-" in line and "|" in line and not set(line.strip()) - set("|-: ")


def _cells(line: str) -> list[str]:
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") else row
    return [cell.strip() for cell in row.split("|")]


def _table(lines: list[str], i: int, out: list[str]) -> int:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[i]))
    rows: list[str] = []
    i += 2
    while i < len(lines) and "|" in lines[i] and lines[i].strip():
        rows.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
        i += 1
    out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return i


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    text: list[str] = []
    while i < len(lines) and lines[i].strip():
        if text and (lines[i].strip().startswith((*_FENCE, "#", ">")) or _LIST.fullmatch(lines[i])):
            break
        text.append(inline(lines[i].strip()))
        i += 1
    out.append(f"<p>{'<br>'.join(text)}</p>")
    return i


def inline(text: str) -> str:
    """One line: `code` spans first (their content only escaped), then links, then **bold**."""
    out, at = [], 0
    for m in _CODE.finditer(text):
        out.append(_links(text[at:m.start()]))
        out.append(f"<code>{escape(m.group(1))}</code>")
        at = m.end()
    out.append(_links(text[at:]))
    return "".join(out)


def _links(text: str) -> str:
    out, at = [], 0
    for m in _LINK.finditer(text):
        out.append(_bold(text[at:m.start()]))
        out.append(f'<a href="{escape(m.group(2))}" rel="noopener noreferrer">{_bold(m.group(1))}</a>')
        at = m.end()
    out.append(_bold(text[at:]))
    return "".join(out)


def _bold(text: str) -> str:
    pieces = text.split("**")
    if len(pieces) < 3:
        return _emphasis(text)
    if len(pieces) % 2 == 0:  # an unpaired "**" stays as written
        pieces[-2:] = [pieces[-2] + "**" + pieces[-1]]
    return "".join(f"<strong>{_emphasis(p)}</strong>" if n % 2 else _emphasis(p) for n, p in enumerate(pieces))


def _emphasis(text: str) -> str:
    out, at = [], 0
    for m in _EMPHASIS.finditer(text):
        out.append(escape(text[at:m.start()]))
        out.append(f"<em>{escape(m.group(2))}</em>")
        at = m.end()
    out.append(escape(text[at:]))
    return "".join(out)


_STYLE = """
body{margin:0;font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1d1c1d;background:#f8f8f8}
.bar{background:#3f0e40;color:#fff;padding:10px 24px;font-weight:600}
.canvas{max-width:820px;margin:24px auto;background:#fff;padding:32px 48px;border:1px solid #ddd;border-radius:8px}
h1,h2,h3,h4,h5,h6{line-height:1.25;margin:1.2em 0 .5em}h1{font-size:28px;margin-top:0}h2{font-size:22px}
pre{background:#f4f4f4;border:1px solid #e2e2e2;border-radius:4px;padding:10px;overflow:auto}
code{font:13px/1.45 Menlo,Consolas,monospace;background:#f4f4f4;padding:1px 3px;border-radius:3px}
pre code{padding:0;background:none}
blockquote{margin:0 0 1em;padding-left:12px;border-left:4px solid #ddd;color:#555}
table{border-collapse:collapse;margin:0 0 1em}th,td{border:1px solid #ddd;padding:6px 10px;text-align:left}
th{background:#f4f4f4}a{color:#1264a3}
li.depth-1{margin-left:1.5em}li.depth-2{margin-left:3em}li.depth-3{margin-left:4.5em}li.depth-4{margin-left:6em}
"""
