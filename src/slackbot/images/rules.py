"""Pure rules of the images Gemini makes (issue 21): sizes, names, the lines people read, which image
an edit starts from. No I/O."""

from __future__ import annotations

import hashlib
from typing import get_args

from ..files import kinds
from ..profiles import ImageSize

SIZES: tuple[str, ...] = get_args(ImageSize)  # smallest first
DEFAULT_SIZE = "1K"
TITLE_CHARS = 80  # a file title Slack shows in full
ALT_CHARS = 1000  # alt text (Slack's own limit on alt_txt)

PERSON_FULL = "You have reached today's limit of {n} images; more tomorrow (UTC)."
WORKSPACE_FULL = "This workspace has reached today's limit of {n} images; more tomorrow (UTC)."
REFUSED = "The image model declined to make that picture."
FAILED = "The image could not be made right now; please try again later."
NOT_SHARED = "The image was made but could not be shared in this thread."
NOTHING_TO_EDIT = "There is no image in this thread to edit: share one first."
UNREADABLE = "The image to edit could not be read from Slack."


def size_for(asked: str | None, largest: str) -> str:
    """The size made: the one asked for (1K if none), never above the setting's largest."""
    wanted = asked if asked in SIZES else DEFAULT_SIZE
    return SIZES[min(SIZES.index(wanted), SIZES.index(largest))]


def one_line(text: str, limit: int) -> str:
    """A prompt as a title or alt text: one line, whitespace folded, at most `limit` characters. Slack
    shows titles and alt text as plain text, so nothing in it becomes markup."""
    folded = " ".join(text.split())
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"


def file_name(turn_id: str, call_id: str, n: int, mime: str) -> str:
    """A name unique to one function call's nth image: a survivor finds its upload by it."""
    digest = hashlib.sha256(f"{turn_id}\n{call_id}".encode()).hexdigest()[:12]
    ext = (mime.split("/")[-1] or "png").replace("jpeg", "jpg")
    return f"image-{digest}-{n}.{ext}"


def entry_of(file: dict, by: str) -> dict | None:
    """What the thread's store keeps of a Slack file an edit could start from (None: not an image)."""
    if not isinstance(file, dict) or kinds.bad_field(file):
        return None
    kind = kinds.classify(file)
    url = file.get("url_private_download") or file.get("url_private") or ""
    if not kind or kind[0] != "image" or not url or not file.get("id"):
        return None
    return {"id": str(file["id"]), "name": kinds.display_name(file), "mime": kind[1], "url": url, "by": by}


def pick(named: str, here: list[dict], thread: list[dict]) -> dict | None:
    """The image an edit starts from. `named`: a file name or id Gemini gave (else the default);
    `here`: images shared with this message; `thread`: the thread's remembered images, newest first.
    By default: this message's image, else the newest the bot made in the thread, else the newest a
    person shared there."""
    wanted = named.strip().lower()
    if wanted:
        return next((e for e in [*here, *thread] if wanted in (e["id"].lower(), e["name"].lower())), None)
    if here:
        return here[-1]
    return next((e for e in thread if e["by"] == "bot"), None) or (thread[0] if thread else None)
