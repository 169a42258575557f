"""Which Slack file becomes which Interactions content part, and which is skipped and why. Pure.

The MIME types Gemini reads natively are not copied here: they are read at import time from the
installed SDK's own `Literal` types (`_gaos/types/interactions/{image,document,audio,video}content.py`,
e.g. `ImageContentMimeType`), so an SDK upgrade that adds a format is picked up by itself.
Text-like files (logs, source, Markdown, JSON, YAML, ...) become `text` parts headed by the file
name; Gemini reads them as well as any document and they cost no decoding.

Caps are decided here too, in the order files are given (the caller puts the newest message's files
first), so the same rules hold for a turn's own files and for a thread rebuilt from Slack.
"""

from __future__ import annotations

import base64
import typing
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urlsplit


def _sdk_mime_table() -> dict[str, str]:
    """MIME type -> content part type ("image", "document", "audio", "video"), from the SDK's Literals."""
    from google.genai._gaos.types import interactions as sdk

    table: dict[str, str] = {}
    for name in dir(sdk):
        if not name.endswith("ContentMimeType"):
            continue
        kind = name.removesuffix("ContentMimeType")
        model = getattr(sdk, f"{kind}Content", None)
        part_type = getattr(model, "model_fields", {}).get("type")
        part_type = part_type.default if part_type is not None else kind.lower()
        for member in typing.get_args(getattr(sdk, name)):
            if typing.get_origin(member) is typing.Literal:
                for mime in typing.get_args(member):
                    table.setdefault(str(mime), str(part_type))
    return table


MIME_PARTS: dict[str, str] = _sdk_mime_table()

# What Slack (or a browser) reports for a format the SDK spells differently: used only when the
# SDK's spelling is in the table, so this never widens what Gemini is sent.
_ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-ms-bmp": "image/bmp",
    "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
    "audio/x-aiff": "audio/aiff", "audio/x-flac": "audio/flac", "audio/mp4": "audio/m4a",
    "audio/x-m4a": "audio/m4a", "audio/x-aac": "audio/aac",
    "video/quicktime": "video/mov", "video/x-msvideo": "video/avi", "video/x-ms-wmv": "video/wmv",
    "video/3gpp2": "video/3gpp", "application/csv": "text/csv",
}
# Extension -> MIME when Slack says application/octet-stream (or nothing) for a known format.
_BY_EXTENSION = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
    "heic": "image/heic", "heif": "image/heif", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
    "pdf": "application/pdf", "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "doc": "application/msword", "odt": "application/vnd.oasis.opendocument.text",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel", "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "ppt": "application/vnd.ms-powerpoint", "odp": "application/vnd.oasis.opendocument.presentation",
    "mp3": "audio/mp3", "wav": "audio/wav", "ogg": "audio/ogg", "flac": "audio/flac", "m4a": "audio/m4a",
    "aac": "audio/aac", "opus": "audio/opus", "mp4": "video/mp4", "mov": "video/mov", "webm": "video/webm",
    "avi": "video/avi", "mpeg": "video/mpeg", "mpg": "video/mpg", "wmv": "video/wmv", "3gp": "video/3gpp",
}
# Text-like: sent as a text part. Slack's `filetype` for snippets and code, file extensions, and
# application/* types that are text in disguise.
_TEXT_MIMES = {"application/json", "application/xml", "application/x-yaml", "application/yaml",
               "application/javascript", "application/x-sh", "application/sql", "application/toml",
               "application/x-ndjson", "application/ld+json", "application/x-python", "application/typescript"}
_TEXT_EXTENSIONS = {
    "txt", "text", "log", "md", "markdown", "rst", "json", "jsonl", "ndjson", "yaml", "yml", "toml", "ini",
    "cfg", "conf", "env", "xml", "html", "htm", "css", "scss", "js", "mjs", "ts", "tsx", "jsx", "py", "rb",
    "go", "rs", "java", "kt", "kts", "scala", "c", "h", "cc", "cpp", "hpp", "cs", "swift", "m", "php", "pl",
    "sh", "bash", "zsh", "ps1", "sql", "graphql", "proto", "r", "lua", "dart", "ex", "exs", "erl", "hs",
    "clj", "tf", "hcl", "dockerfile", "makefile", "gradle", "properties", "diff", "patch", "tsv", "srt", "vtt",
}
_TEXT_FILETYPES = {"text", "post", "markdown", "javascript", "python", "shell", "json", "yaml", "xml", "html",
                   "css", "sql", "go", "java", "ruby", "rust", "c", "cpp", "csharp", "php", "kotlin", "swift",
                   "typescript", "diff", "dockerfile", "toml", "ini", "log"}
# Slack's file `mode`s whose bytes the bot cannot fetch.
_UNREACHABLE_MODES = {"external", "tombstone", "hidden_by_limit"}

MB = 1024 * 1024
# The text part of a message that is only files (a screenshot with no words): Gemini needs the ask.
FILES_ONLY = "(The message has no text, only the attached file(s). Respond to what they show.)"


@dataclass(frozen=True)
class Wanted:
    """A file to fetch: where from, how to send it, and what the user calls it."""

    id: str
    name: str
    url: str
    part: str  # "image" | "document" | "audio" | "video" | "text"
    mime: str
    size: int  # as Slack reports it (0 when unknown); the download enforces the cap anyway


@dataclass
class Plan:
    wanted: list[Wanted] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _extension(name: str) -> str:
    suffix = PurePosixPath(name.lower()).suffix
    return suffix[1:] if suffix else name.lower()  # "Dockerfile", "Makefile": the name is the type


def display_name(file: dict) -> str:
    name = str(file.get("name") or file.get("title") or file.get("id") or "a file")
    return name[:80]


def classify(file: dict) -> tuple[str, str] | None:
    """(part type, MIME type) Gemini gets for this Slack file, or None when it cannot read it."""
    mime = str(file.get("mimetype") or "").split(";")[0].strip().lower()
    mime = _ALIASES.get(mime, mime)
    if mime in MIME_PARTS:
        return MIME_PARTS[mime], mime
    ext = _extension(display_name(file))
    guessed = _ALIASES.get(_BY_EXTENSION.get(ext, ""), _BY_EXTENSION.get(ext, ""))
    if guessed in MIME_PARTS and mime in ("", "application/octet-stream", "binary/octet-stream"):
        return MIME_PARTS[guessed], guessed
    if (mime.startswith("text/") or mime in _TEXT_MIMES or ext in _TEXT_EXTENSIONS
            or str(file.get("filetype") or "") in _TEXT_FILETYPES):
        return "text", mime if mime.startswith("text/") else "text/plain"
    return None


def posted_by_bot(file: dict, bot_user_id: str | None, bot_id: str | None = None) -> bool:
    """The bot's own uploads (a research report's .md): never fed back to Gemini as input."""
    return bool((bot_user_id and file.get("user") == bot_user_id) or (bot_id and file.get("bot_id") == bot_id))


def plan(files: typing.Iterable[dict], *, bot_user_id: str | None, max_files: int, max_file_bytes: int,
         max_turn_bytes: int) -> Plan:
    """Which files to fetch, in the given order, and one note per file that is skipped."""
    out = Plan()
    total = 0
    for file in files:
        if not isinstance(file, dict) or posted_by_bot(file, bot_user_id):
            continue
        name = display_name(file)
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        size = int(file.get("size") or 0)
        kind = classify(file)
        if file.get("mode") in _UNREACHABLE_MODES or file.get("file_access") == "check_file_info" or not url:
            out.notes.append(skip_note(name, "unreachable"))
        elif kind is None:
            out.notes.append(skip_note(name, "type", mime=str(file.get("mimetype") or "")))
        elif size > max_file_bytes:
            out.notes.append(skip_note(name, "too_big", cap=max_file_bytes))
        elif len(out.wanted) >= max_files:
            out.notes.append(skip_note(name, "too_many", cap=max_files))
        elif total + size > max_turn_bytes:
            out.notes.append(skip_note(name, "turn_full", cap=max_turn_bytes))
        else:
            total += size
            out.wanted.append(Wanted(str(file.get("id") or ""), name, url, kind[0], kind[1], size))
    return out


def skip_note(name: str, reason: str, *, cap: int = 0, mime: str = "") -> str:
    """One short line naming the file and why Gemini did not get it."""
    shown = f"“{safe(name)}”"
    what = safe(mime) or "this kind of file"
    reasons = {
        "unreachable": f"I couldn't open {shown} (it may be deleted, external or restricted), so I answered without it.",
        "type": f"I can't read {shown} ({what}), so I answered without it.",
        "too_big": f"{shown} is over the {_size(cap)} per-file limit, so I answered without it.",
        "too_many": f"I read at most {cap} files per message, so I answered without {shown}.",
        "turn_full": f"{shown} would go over the {_size(cap)} per-message limit, so I answered without it.",
        "signin": f"I couldn't open {shown}: this app lacks the files:read permission. Ask an admin to reinstall it.",
        "empty": f"{shown} is empty, so I answered without it.",
    }
    return reasons[reason]


def _size(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n / 1024:g} KB" if n >= 1024 else f"{n} bytes"


def safe(text: str) -> str:
    """A file name or type as it may appear in a Slack message: no markup, no mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def text_part(name: str, data: bytes) -> dict:
    """A text-like file as a text part headed by its name."""
    body = data.decode("utf-8", errors="replace")
    return {"type": "text", "text": f"Attached file “{name}”:\n\n{body}"}


def media_part(part: str, mime: str, data: bytes) -> dict:
    return {"type": part, "mime_type": mime, "data": base64.b64encode(data).decode("ascii")}


def allowed_origin(url: str, api_url: str) -> bool:
    """Only URLs on Slack's file host get the bot token: https on files.<API host> (files.slack.com,
    files.slack-gov.com), or exactly the origin of SLACK_API_URL (GovSlack proxies, the emulators)."""
    try:
        target, api = urlsplit(url), urlsplit(api_url)
        target_port, api_port = target.port, api.port
    except ValueError:
        return False
    if not target.hostname or target.username or target.password:
        return False
    if (target.scheme, target.hostname, target_port) == (api.scheme, api.hostname, api_port):
        return True
    return target.scheme == "https" and target_port in (None, 443) and target.hostname == f"files.{api.hostname}"
