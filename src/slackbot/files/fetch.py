"""Files people share become content parts of the turn: the download side (I/O).

* The bot token goes only to Slack's file paths on Slack's file host (`kinds.may_send_token`: never
  a Web API method, another host or port), only in the `Authorization` header, never in a URL. The
  URL is sent exactly as checked (no re-quoting or path normalising on the way). Redirects are
  followed by hand: to another allowed URL with the token, anywhere else not at all (the file is
  reported unreachable), so the token can never ride along elsewhere.
* Downloads stream in chunks and stop as soon as the byte cap is passed: no more than the cap is
  ever held in memory, whatever Content-Length claims.
* Without `files:read` Slack answers a file URL with its sign-in page (HTTP 200, text/html):
  that is detected and reported in one line, instead of feeding a login page to Gemini.
* Nothing is written anywhere: the bytes live in this turn's request to Gemini and are gone after.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from ..config import Settings
from . import kinds

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_MAX_REDIRECTS = 3


@dataclass
class TurnInput:
    """What Gemini is sent for one turn: the text part first, then one part per readable file."""

    parts: list[dict]
    notes: list[str] = field(default_factory=list)

    @property
    def input(self) -> Any:
        """The Interactions `input`: plain text when nothing was attached (the common case), else parts."""
        if len(self.parts) == 1 and self.parts[0]["type"] == "text":
            return self.parts[0]["text"]
        return self.parts

    @property
    def note(self) -> str:
        """One line per skipped file, at most kinds.NOTE_LINES of them. The streamer shows a note as one
        italic line (`_note_`), so the lines are joined to close and reopen the italics around each newline."""
        return "_\n_".join(kinds.note_lines(self.notes))


class Skipped(Exception):
    """A file that could not be fetched; `reason` is a `kinds.skip_note` reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


async def turn_parts(files: Iterable[dict], text: str, settings: Settings, *,
                     bot_user_id: str | None, token: str = "") -> TurnInput:
    """The turn's content parts (text, then files in the order given) and one note per skipped file.
    `token`: the workspace's bot token (OAuth installs: each its own; default SLACK_BOT_TOKEN)."""
    files = list(files)
    plan = kinds.plan(files, bot_user_id=bot_user_id, max_files=settings.files_max_count,
                      max_file_bytes=settings.file_max_bytes, max_turn_bytes=settings.files_max_bytes_per_turn)
    result = TurnInput([{"type": "text", "text": text if text.strip() or not files else kinds.FILES_ONLY}], list(plan.notes))
    if not plan.wanted:
        return result
    left = settings.files_max_bytes_per_turn
    timeout = aiohttp.ClientTimeout(total=settings.file_fetch_timeout_seconds)
    # One session per turn with files: files are rare next to messages, and nothing outlives the turn.
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
        for wanted in plan.wanted:
            cap = min(settings.file_max_bytes, left)
            try:
                data = await download(http, wanted.url, settings, cap=cap, html_ok=wanted.mime == "text/html",
                                      token=token)
            except Skipped as exc:
                # over the cap because earlier files used the turn's allowance: say so, not "too big"
                reason = "turn_full" if exc.reason == "too_big" and cap < settings.file_max_bytes else exc.reason
                log.info("file skipped", extra={"file": wanted.id, "reason": reason})
                shown_cap = settings.file_max_bytes if reason == "too_big" else settings.files_max_bytes_per_turn
                result.notes.append(kinds.skip_note(wanted.name, reason, cap=shown_cap))
                continue
            if not data:
                result.notes.append(kinds.skip_note(wanted.name, "empty"))
                continue
            left -= len(data)
            if wanted.part == "text":
                result.parts.append(kinds.text_part(wanted.name, data))
            else:
                result.parts.append(kinds.media_part(wanted.part, wanted.mime, data))
            del data  # the part holds the only copy from here on
            log.info("file attached", extra={"file": wanted.id, "part": wanted.part, "mime": wanted.mime})
    return result


async def download(http: aiohttp.ClientSession, url: str, settings: Settings, *, cap: int,
                   html_ok: bool = False, token: str = "") -> bytearray:
    """The file's bytes, at most `cap` of them, fetched with the bot token from Slack's file host only."""
    for _ in range(_MAX_REDIRECTS + 1):
        if not kinds.may_send_token(url, settings.slack_api_url):
            raise Skipped("unreachable", "not a Slack file URL")
        headers = {"Authorization": f"Bearer {token or settings.bot_token}"}
        try:
            async with http.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise Skipped("unreachable", f"HTTP {resp.status}")
                if resp.content_type == "text/html" and not html_ok:
                    # Slack's answer to a file URL the token may not read: its sign-in page
                    raise Skipped("signin", "HTML instead of the file")
                return await _read_capped(resp, cap)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise Skipped("unreachable", type(exc).__name__) from None
    raise Skipped("unreachable", "too many redirects")


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytearray:
    if resp.content_length is not None and resp.content_length > cap:
        raise Skipped("too_big", f"{resp.content_length} bytes")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        if len(buf) + len(chunk) > cap:
            raise Skipped("too_big", f"over {cap} bytes")
        buf += chunk
    return buf  # not bytes(buf): that would be a second copy of the file
