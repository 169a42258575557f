"""Per-channel profiles and remote MCP servers: what each turn sends besides the user's words.

Pure parsing and lookup, no I/O beyond reading the one file named by SLACKBOT_PROFILES_FILE.
Every problem becomes one line naming the place (`profiles.support.tools: ...`), which config.py
prefixes with the variable, so a bad file stops start-up with a readable error.

Profiles file (YAML or JSON):

    profiles:
      support:
        system_instruction: "You answer customer questions. Cite sources."
        model: gemini-3-flash-preview
        tools: [google_search, url_context]
        thinking_level: low
        max_output_tokens: 2048
        mcp_servers: [crm]        # optional: which SLACKBOT_MCP_SERVERS (default all, [] none)
        functions: [search_slack, who_is]  # optional: which workspace look-ups (default SLACKBOT_FUNCTIONS)
        research_agent: deep-research-preview-04-2026  # optional: its research jobs' agent (`--max` still max)
    channels:
      C0123456789: support      # by channel id
      "#eng-help": support      # or by name ("#" optional)
    default: support            # optional: channels not listed (else the settings' defaults)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from urllib.parse import urlsplit
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BUILTIN_TOOLS = ("google_search", "url_context", "code_execution")
ToolName = Literal["google_search", "url_context", "code_execution"]
# the bot's own functions Gemini may call (lookup/functions.py)
FUNCTION_NAMES = ("search_slack", "read_thread", "recent_messages", "who_is", "generate_image", "edit_image")
FunctionName = Literal["search_slack", "read_thread", "recent_messages", "who_is", "generate_image", "edit_image"]
ImageSize = Literal["512", "1K", "2K", "4K"]  # image_config.image_size, smallest first
_ENV_REF = re.compile(r"^(?:env:([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\})$")


class Prompt(BaseModel):
    """A suggested prompt at the top of the app's Messages tab: a title, and the message it sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=75)
    message: str = Field(min_length=1, max_length=2000)


MAX_PROMPTS = 4  # Slack shows at most four (assistant.threads.setSuggestedPrompts, agent_view)


def parse_prompts(raw: str | list) -> tuple[Prompt, ...]:
    """Prompts from JSON text (or a parsed list); one line naming the problem otherwise."""
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_PROMPTS:
        raise ValueError(f"a list of 1 to {MAX_PROMPTS} prompts, each {{title, message}}")
    try:
        return tuple(Prompt.model_validate(item) for item in items)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"prompt {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None


class Profile(BaseModel):
    """A channel's turn settings; a field left out falls back to the global setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    system_instruction: str | None = None
    model: str | None = None
    tools: tuple[ToolName, ...] | None = None
    thinking_level: Literal["minimal", "low", "medium", "high"] | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=65536)
    mcp_servers: tuple[str, ...] | None = None  # names from SLACKBOT_MCP_SERVERS; None = all of them
    functions: tuple[FunctionName, ...] | None = None  # workspace look-ups; None = SLACKBOT_FUNCTIONS
    suggested_prompts: tuple[Prompt, ...] | None = Field(None, min_length=1, max_length=MAX_PROMPTS)
    image_model: str | None = None  # the model generate_image/edit_image run on; None = SLACKBOT_IMAGE_MODEL
    # the Deep Research agent of research jobs started in its channels; None = GEMINI_RESEARCH_AGENT
    # (`--max` and the modal's deeper agent still pick SLACKBOT_RESEARCH_MAX_AGENT)
    research_agent: str | None = Field(None, min_length=1)
    # governance (issue 24): None = the settings' (SLACKBOT_ALLOW_USERS, ..., SLACKBOT_DAILY_TOKENS_PER_*)
    allow_users: tuple[str, ...] | None = None
    deny_users: tuple[str, ...] | None = None
    allow_groups: tuple[str, ...] | None = None
    deny_groups: tuple[str, ...] | None = None
    daily_tokens_per_user: int | None = Field(None, ge=0)
    daily_tokens_per_channel: int | None = Field(None, ge=0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, dict] = Field(default_factory=dict)
    channels: dict[str, str] = Field(default_factory=dict)
    # OAuth installs: a workspace (T…) or an Enterprise Grid org (E…) -> its profile, for its channels
    # that `channels` does not name
    workspaces: dict[str, str] = Field(default_factory=dict)
    default: str | None = None


class ProfileMap(BaseModel):
    model_config = ConfigDict(frozen=True)

    profiles: dict[str, Profile] = Field(default_factory=dict)
    by_id: dict[str, str] = Field(default_factory=dict)
    by_name: dict[str, str] = Field(default_factory=dict)
    by_team: dict[str, str] = Field(default_factory=dict)
    default: str | None = None

    @property
    def needs_names(self) -> bool:
        return bool(self.by_name)

    def for_channel(self, channel_id: str, channel_name: str | None = None, team: str = "") -> Profile | None:
        """The profile in effect in a channel, or None for the global settings: the channel's own, else
        its installation's (`team`: a workspace or org id), else the default."""
        key = self.by_id.get(channel_id)
        if key is None and channel_name:
            key = self.by_name.get(_norm_name(channel_name))
        key = key or self.by_team.get(team) or self.default
        return self.profiles.get(key) if key else None


def _norm_name(name: str) -> str:
    return name.strip().lstrip("#").lower()


def _looks_like_id(key: str) -> bool:
    return bool(re.fullmatch(r"[CDG][A-Z0-9_]{2,}", key))


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def load_profiles(path: str) -> ProfileMap:
    """Parse and check a profiles file; ValueError with one line on any problem."""
    try:
        raw_text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(raw_text) if path.endswith(".json") else yaml.safe_load(raw_text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ValueError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {first}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with 'profiles' and 'channels'")
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{path}: {_where(err.get('loc') or ()) or 'file'}: {err.get('msg')}") from None
    profiles = {}
    for name, body in parsed.profiles.items():
        try:
            profiles[name] = Profile.model_validate({**body, "name": name})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{path}: {_where(('profiles', name, *(err.get('loc') or ())))}: {err.get('msg')}") from None
    by_id, by_name = {}, {}
    for channel, target in parsed.channels.items():
        if target not in profiles:
            raise ValueError(f"{path}: channels.{channel}: unknown profile '{target}'")
        if _looks_like_id(channel):
            by_id[channel] = target
        else:
            by_name[_norm_name(channel)] = target
    for team, target in parsed.workspaces.items():
        if target not in profiles:
            raise ValueError(f"{path}: workspaces.{team}: unknown profile '{target}'")
        if not re.fullmatch(r"[TE][A-Z0-9]{2,}", team):
            raise ValueError(f"{path}: workspaces.{team}: not a workspace (T…) or enterprise (E…) id")
    if parsed.default is not None and parsed.default not in profiles:
        raise ValueError(f"{path}: default: unknown profile '{parsed.default}'")
    return ProfileMap(profiles=profiles, by_id=by_id, by_name=by_name, by_team=dict(parsed.workspaces),
                      default=parsed.default)


# --- remote MCP servers -----------------------------------------------------------------------
class McpServer(BaseModel):
    """One remote MCP server. Header values may be "env:NAME" or "${NAME}": read from the
    environment when a turn is sent, so secrets stay out of the JSON and out of every log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(pattern=r"^https?://\S+$")
    headers: dict[str, str] = Field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None

    def missing_env(self) -> list[str]:
        return [ref for ref in (_env_ref(v) for v in self.headers.values()) if ref and ref not in os.environ]

    def insecure(self, *, allow_loopback: bool) -> str:
        """Why this server would send its headers in the clear ('' when it would not): headers carry
        secrets, so they go only over https://, or (allowed on purpose, for development) to a loopback host."""
        if not self.headers or urlsplit(self.url).scheme == "https":
            return ""
        if allow_loopback and _is_loopback(urlsplit(self.url).hostname or ""):
            return ""
        return ("its headers would be sent without TLS; use an https:// URL (for local development only, "
                "SLACKBOT_MCP_ALLOW_INSECURE_LOOPBACK=true allows http:// to localhost/127.0.0.1/::1)")

    def tool(self) -> dict:
        """The `mcp_server` tool of a create body (MCPServerParam in the SDK)."""
        tool: dict = {"type": "mcp_server", "name": self.name, "url": self.url}
        if self.headers:
            tool["headers"] = {k: _resolve(v) for k, v in self.headers.items()}
        if self.allowed_tools is not None:
            tool["allowed_tools"] = [{"mode": "auto", "tools": list(self.allowed_tools)}]
        return tool

    def __repr__(self) -> str:  # header values never reach a repr or a log line
        return f"McpServer(name={self.name!r}, url={self.url!r}, headers=[{', '.join(self.headers)}])"

    __str__ = __repr__


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_ref(value: str) -> str | None:
    m = _ENV_REF.match(value.strip())
    return (m.group(1) or m.group(2)) if m else None


def _resolve(value: str) -> str:
    ref = _env_ref(value)
    return os.environ.get(ref, "") if ref else value


def parse_mcp_servers(text: str) -> tuple[McpServer, ...]:
    """SLACKBOT_MCP_SERVERS: a JSON list of servers; ValueError with one line (never a header value)."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(raw, list):
        raise ValueError("expected a JSON list of {name, url, headers, allowed_tools}")
    servers = []
    for i, item in enumerate(raw):
        try:
            server = McpServer.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = _where((i, *(err.get("loc") or ())))
            raise ValueError(f"[{where}]: {err.get('msg')}") from None  # input values are not echoed
        missing = server.missing_env()
        if missing:
            raise ValueError(f"[{i}] {server.name}: header refers to unset environment variable {missing[0]}")
        servers.append(server)
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ValueError("server names must be unique")
    return tuple(servers)
