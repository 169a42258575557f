"""Slack permalinks, read and built. Pure.

A message's permalink is `<workspace URL>/archives/<channel>/p<ts without the dot>`, and a reply's
adds `?thread_ts=<root ts>&cid=<channel>` (Slack's shape; the emulator's too). One chat.getPermalink
per workspace gives the workspace URL; every other link is built from it, at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str
    thread_ts: str  # the thread's root ("" when the message is a root itself)


def parse_permalink(link: str) -> MessageRef | None:
    """The message a permalink points at, or None when `link` is not one (also inside Slack's <…|…>)."""
    link = link.strip().removeprefix("<").removesuffix(">").split("|", 1)[0]
    parts = urlsplit(link)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or len(segments) < 3 or segments[-3] != "archives":
        return None
    channel, stamp = segments[-2], segments[-1]
    if not is_slack_id(channel, "CGD") or not stamp.startswith("p") or not stamp[1:].isdigit() or len(stamp) < 8:
        return None
    digits = stamp[1:]
    thread = (parse_qs(parts.query).get("thread_ts") or [""])[0]
    return MessageRef(channel, f"{digits[:-6]}.{digits[-6:]}", thread if _is_ts(thread) else "")


def is_slack_id(value: str, kinds: str) -> bool:
    """Whether `value` looks like a Slack id of one of these kinds (its first letter: C, G, D, U, W):
    upper-case letters and digits (underscores too, as test workspaces spell them)."""
    return len(value) > 2 and value[0] in kinds and value.upper() == value and value.replace("_", "").isalnum()


def _is_ts(value: str) -> bool:
    whole, dot, frac = value.partition(".")
    return bool(dot) and whole.isdigit() and frac.isdigit()


def workspace_base(permalink: str) -> str:
    """The workspace URL part of any permalink Slack gave ("" when it has no /archives/)."""
    base, found, _ = permalink.partition("/archives/")
    return base if found else ""


def permalink(base: str, channel: str, ts: str, thread_ts: str = "") -> str:
    url = f"{base}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        url += "?" + urlencode({"thread_ts": thread_ts, "cid": channel})
    return url
