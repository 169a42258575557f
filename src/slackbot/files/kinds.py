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
import re
import typing
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit


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


# Longer than any name or MIME type Slack gives (file systems cap names at 255 bytes; RFC 6838 caps a
# MIME type's two names at 127 characters each): a file claiming more is skipped, not shown.
_MAX_NAME_CHARS = 1000
_MAX_MIME_CHARS = 255
_MAX_URL_CHARS = 4000
_TEXT_FIELDS = {"id": 100, "name": _MAX_NAME_CHARS, "title": _MAX_NAME_CHARS, "mimetype": _MAX_MIME_CHARS,
                "filetype": 100, "mode": 100, "file_access": 100, "user": 100, "bot_id": 100,
                "url_private": _MAX_URL_CHARS, "url_private_download": _MAX_URL_CHARS}


def bad_field(file: dict) -> str | None:
    """The first field of a file object that is not as Slack sends it (a size that is not a count,
    a 3,000-character MIME type, a list for a name), or None. Such a file is skipped on its own."""
    size = file.get("size")
    if size is not None and (type(size) is not int or size < 0):
        return "size"
    for key, limit in _TEXT_FIELDS.items():
        value = file.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return key
    return None


def plan(files: typing.Iterable[dict], *, bot_user_id: str | None, max_files: int, max_file_bytes: int,
         max_turn_bytes: int) -> Plan:
    """Which files to fetch, in the given order, and one note per file that is skipped."""
    out = Plan()
    total = 0
    for file in files:
        if not isinstance(file, dict) or posted_by_bot(file, bot_user_id):
            continue
        name = display_name(file)
        if bad_field(file):
            out.notes.append(skip_note(name, "malformed"))
            continue
        url = file.get("url_private_download") or file.get("url_private") or ""
        size = file.get("size") or 0
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
    """One short line naming the file and why Gemini did not get it (Markdown: the name and type are
    code spans, see `literal`)."""
    shown = literal(name)
    what = literal(mime) if mime.strip() else "this kind of file"
    reasons = {
        "malformed": f"Slack described {shown} in a way I can't read, so I answered without it.",
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


# A name or type in a note is cut to this many characters, so ten skipped files stay one short note.
NOTE_NAME_CHARS = 60
# Past this many skipped files, the rest are counted in one line.
NOTE_LINES = 6


def literal(text: str, limit: int = NOTE_NAME_CHARS) -> str:
    """Someone's file name or MIME type as literal text in Markdown: an inline code span, so in the
    markdown block and in the mrkdwn fallback alike `[Reset your password](https://evil…)`, a bare URL,
    `*`, `_` or `<!channel>` show as typed, never as a link, emphasis or mention (the renderer still
    neutralises Slack tokens, in code too). Backticks become quotes (they would close the span), any
    whitespace run is one space, and long text is cut with "…"."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text[: limit * 4]).split()).replace("`", "'")
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return f"`{flat or '?'}`"


def note_lines(notes: list[str]) -> list[str]:
    """At most NOTE_LINES lines: past that, the last one counts the files not named."""
    if len(notes) <= NOTE_LINES:
        return list(notes)
    more = len(notes) - (NOTE_LINES - 1)
    return [*notes[: NOTE_LINES - 1], f"{more} more files were skipped, so I answered without them."]


def text_part(name: str, data: bytes) -> dict:
    """A text-like file as a text part headed by its name."""
    body = data.decode("utf-8", errors="replace")
    return {"type": "text", "text": f"Attached file “{name}”:\n\n{body}"}


def media_part(part: str, mime: str, data: bytes) -> dict:
    return {"type": part, "mime_type": mime, "data": base64.b64encode(data).decode("ascii")}


# Slack's documented file URLs: url_private is /files-pri/<team>-<file>/<name>, url_private_download
# /files-pri/<team>-<file>/download/<name>. The id segment is letters, digits and one "-".
_FILE_ID = re.compile(r"[A-Za-z0-9]{1,40}-[A-Za-z0-9]{1,40}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def may_send_token(url: str, api_url: str) -> bool:
    """Whether `url` may be fetched with the bot token: a Slack file path, on Slack's file host (https on
    files.<API host>: files.slack.com, files.slack-gov.com) or on SLACK_API_URL's own origin (GovSlack
    proxies, the emulators). Nothing else: not a Web API method (`/api/chat.postMessage?...` would act
    as the bot), not another port, no userinfo, and nothing a server could read as another path after
    decoding (`..`, `%2e%2e`, `%2f`, `//`, backslashes, control characters)."""
    if len(url) > _MAX_URL_CHARS or any(not "!" <= c <= "~" or c == "\\" for c in url):
        return False  # printable ASCII only: what is checked here is exactly what goes on the wire
    try:
        target, api = urlsplit(url), urlsplit(api_url)
        origin = (target.scheme, target.hostname, target.port or _DEFAULT_PORTS.get(target.scheme))
        api_origin = (api.scheme, api.hostname, api.port or _DEFAULT_PORTS.get(api.scheme))
    except ValueError:  # a port that is not a number
        return False
    if "@" in target.netloc or target.netloc.endswith(":") or target.fragment or not target.hostname:
        return False
    if origin != api_origin and origin != ("https", f"files.{api.hostname}", 443):
        return False
    return _is_file_path(target.path)


def _is_file_path(path: str) -> bool:
    segments = path.split("/")
    if len(segments) not in (4, 5) or segments[:2] != ["", "files-pri"] or not _FILE_ID.fullmatch(segments[2]):
        return False
    if len(segments) == 5 and segments[3] != "download":
        return False
    name = segments[-1]
    for _ in range(4):  # however many times a server decodes it, the name stays one plain segment
        if name in ("", ".", "..") or "/" in name or "\\" in name or not name.isprintable():
            return False
        decoded = unquote(name)
        if decoded == name:
            return True
        name = decoded
    return False
