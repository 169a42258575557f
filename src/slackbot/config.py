"""The one Settings class. Every setting is an environment variable (or a line in `.env`).

Names given by the product issues are kept exactly (SLACK_*, GEMINI_*, REDIS_URL, PORT, ...);
everything else is SLACKBOT_*. `load_settings()` turns a bad value into one line naming the
variable, so start-up never shows a traceback for a configuration mistake.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .profiles import (FUNCTION_NAMES, ImageSize, McpServer, Profile, ProfileMap, Prompt, load_profiles,
                       parse_mcp_servers, parse_prompts)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3-flash-preview"
DEFAULT_RESEARCH_AGENT = "deep-research-pro-preview-12-2025"
_DEPRECATED_MODEL = re.compile(r"^(models/)?gemini-(1\.5|2\.0)-")
BUILTIN_TOOLS = {"google_search", "url_context", "code_execution"}
DEFAULT_PROMPTS = json.dumps([
    {"title": "Summarise this channel", "message": "Summarise the recent discussion in the channel I am looking at."},
    {"title": "Explain something", "message": "Explain how HTTP caching works, with a short example."},
    {"title": "Draft a message", "message": "Help me draft a short, friendly update for my team."},
    {"title": "Brainstorm", "message": "Give me five ideas for a team offsite, one line each."},
], ensure_ascii=False, separators=(",", ":"))


def _env(name: str, *, prefixed: bool = True):
    """Field kwargs binding a field to exactly one environment variable name."""
    return {"validation_alias": AliasChoices(f"SLACKBOT_{name}" if prefixed else name)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- Slack -----------------------------------------------------------------------------
    slack_bot_token: SecretStr = Field(SecretStr(""), **_env("SLACK_BOT_TOKEN", prefixed=False))
    slack_signing_secret: SecretStr = Field(SecretStr(""), **_env("SLACK_SIGNING_SECRET", prefixed=False))
    slack_app_token: SecretStr = Field(SecretStr(""), **_env("SLACK_APP_TOKEN", prefixed=False))
    slack_api_url: str = Field("https://slack.com/api/", **_env("SLACK_API_URL", prefixed=False))
    # --- OAuth installs (issue 23): set all three instead of SLACK_BOT_TOKEN to serve many workspaces ---
    slack_client_id: str = Field("", **_env("SLACK_CLIENT_ID", prefixed=False))
    slack_client_secret: SecretStr = Field(SecretStr(""), **_env("SLACK_CLIENT_SECRET", prefixed=False))
    database_url: SecretStr = Field(SecretStr(""), **_env("DATABASE_URL", prefixed=False))
    # the manifest's bot scopes, asked for on "Add to Slack" (comma list)
    slack_scopes: str = Field(",".join((
        "chat:write", "chat:write.public", "app_mentions:read", "channels:history", "groups:history", "im:history",
        "mpim:history", "users:read", "channels:read", "groups:read", "mpim:read", "search:read.public",
        "search:read.files", "search:read.users", "files:write", "files:read", "commands")),
        **_env("SLACK_SCOPES", prefixed=False))
    slack_redirect_uri: str = Field("", **_env("SLACK_REDIRECT_URI", prefixed=False))  # "" = the app's only one
    # a rotating token is refreshed when it has less than this left (Slack's tokens live 12 h)
    token_refresh_minutes: int = Field(120, ge=1, le=700, **_env("TOKEN_REFRESH_MINUTES"))
    install_cache_seconds: float = Field(30.0, ge=0, **_env("INSTALL_CACHE_SECONDS"))

    # --- Gemini ----------------------------------------------------------------------------
    gemini_api_key: SecretStr = Field(SecretStr(""), **_env("GEMINI_API_KEY", prefixed=False))
    gemini_base_url: str = Field("", **_env("GEMINI_BASE_URL", prefixed=False))
    use_enterprise: bool = Field(False, **_env("GOOGLE_GENAI_USE_ENTERPRISE", prefixed=False))
    google_cloud_project: str = Field("", **_env("GOOGLE_CLOUD_PROJECT", prefixed=False))
    google_cloud_location: str = Field("global", **_env("GOOGLE_CLOUD_LOCATION", prefixed=False))
    gemini_model: str = Field(DEFAULT_MODEL, **_env("GEMINI_MODEL", prefixed=False))
    research_agent: str = Field(DEFAULT_RESEARCH_AGENT, **_env("GEMINI_RESEARCH_AGENT", prefixed=False))
    system_instruction: str = Field(
        "You are a helpful assistant in a Slack workspace. Answer concisely in Markdown.",
        **_env("SYSTEM_INSTRUCTION"),
    )
    tools: str = Field("", **_env("TOOLS"))  # comma list of google_search,url_context,code_execution
    store_interactions: bool = Field(True, **_env("STORE_INTERACTIONS"))
    gemini_retry_attempts: int = Field(4, ge=1, le=10, **_env("GEMINI_RETRY_ATTEMPTS"))
    gemini_connect_retries: int = Field(2, ge=0, le=10, **_env("GEMINI_CONNECT_RETRIES"))
    stream_resume_attempts: int = Field(3, ge=0, le=20, **_env("STREAM_RESUME_ATTEMPTS"))
    gemini_timeout_seconds: float = Field(120.0, gt=0, **_env("GEMINI_TIMEOUT_SECONDS"))

    # --- Tools and profiles: remote MCP servers, per-channel profiles, answer extras (issue 13) ---
    # JSON list of {name, url, headers, allowed_tools}; header values "env:NAME" / "${NAME}" are read
    # from the environment each turn (secrets stay out of the JSON and out of logs)
    mcp_servers: str = Field("", **_env("MCP_SERVERS"), repr=False)
    # development only: an http:// MCP server on a loopback host may carry headers (never another host)
    mcp_allow_insecure_loopback: bool = Field(False, **_env("MCP_ALLOW_INSECURE_LOOPBACK"))
    profiles_file: str = Field("", **_env("PROFILES_FILE"))  # YAML/JSON: channels -> profile
    code_output_chars: int = Field(1500, ge=100, le=3000, **_env("CODE_OUTPUT_CHARS"))
    max_sources: int = Field(10, ge=0, le=40, **_env("MAX_SOURCES"))

    # --- What Gemini can look up in the workspace (issue 20: lookup/) ------------------------------
    functions: str = Field(",".join(FUNCTION_NAMES), **_env("FUNCTIONS"))  # comma list; "" = none
    max_function_steps: int = Field(4, ge=1, le=20, **_env("MAX_FUNCTION_STEPS"))
    search_per_person_per_minute: float = Field(10.0, gt=0, **_env("SEARCH_PER_PERSON_PER_MINUTE"))
    search_results: int = Field(10, ge=1, le=20, **_env("SEARCH_RESULTS"))
    history_budget_per_minute: float = Field(1.0, gt=0, **_env("HISTORY_BUDGET_PER_MINUTE"))
    function_wait_seconds: float = Field(5.0, ge=0, **_env("FUNCTION_WAIT_SECONDS"))

    # --- Images Gemini makes in the thread (issue 21: images/) ----------------------------------------
    image_model: str = Field("gemini-3.1-flash-image-preview", **_env("IMAGE_MODEL"))
    image_max_size: ImageSize = Field("2K", **_env("IMAGE_MAX_SIZE"))  # a bigger size asked for is made at this one
    images_per_user_per_day: int = Field(20, ge=0, **_env("IMAGES_PER_USER_PER_DAY"))
    images_per_workspace_per_day: int = Field(200, ge=0, **_env("IMAGES_PER_WORKSPACE_PER_DAY"))
    image_timeout_seconds: float = Field(120.0, gt=0, **_env("IMAGE_TIMEOUT_SECONDS"))
    _profiles: ProfileMap | None = PrivateAttr(None)  # parsed once, on first use

    # --- Redis and process -----------------------------------------------------------------
    redis_url: str = Field("redis://localhost:6379/0", **_env("REDIS_URL", prefixed=False))
    redis_prefix: str = Field("slackbot", **_env("REDIS_PREFIX"))
    port: int = Field(3000, ge=1, le=65535, **_env("PORT", prefixed=False))
    host: str = Field("0.0.0.0", **_env("HOST"))
    chain_ttl_days: float = Field(55.0, gt=0, **_env("CHAIN_TTL_DAYS"))
    dedup_ttl_seconds: int = Field(86400, ge=60, **_env("DEDUP_TTL_SECONDS"))
    shutdown_grace_seconds: float = Field(25.0, ge=0, **_env("SHUTDOWN_GRACE_SECONDS"))
    log_format: Literal["auto", "json", "text"] = Field("auto", **_env("LOG_FORMAT"))
    log_level: str = Field("INFO", **_env("LOG_LEVEL"))
    log_content: bool = Field(False, **_env("LOG_CONTENT"))  # debug only: log message text

    # --- Delivering answers into Slack (the planner: slack_out/plan.py) -------------------------
    delivery: Literal["planner", "edits"] = Field("planner", **_env("DELIVERY"))
    edit_budget_per_minute: float = Field(40.0, gt=0, **_env("EDIT_BUDGET_PER_MINUTE"))
    edit_budget_burst: float = Field(10.0, ge=1, **_env("EDIT_BUDGET_BURST"))
    edit_final_reserve: float = Field(8.0, ge=0, **_env("EDIT_FINAL_RESERVE"))
    edit_min_interval: float = Field(1.0, gt=0, **_env("EDIT_MIN_INTERVAL"))
    post_per_channel_per_second: float = Field(1.0, gt=0, **_env("POST_PER_CHANNEL_PER_SECOND"))
    post_burst: float = Field(3.0, ge=1, **_env("POST_BURST"))
    stream_starts_per_minute: float = Field(18.0, gt=0, **_env("STREAM_STARTS_PER_MINUTE"))
    stream_appends_per_minute: float = Field(90.0, gt=0, **_env("STREAM_APPENDS_PER_MINUTE"))
    stream_max_seconds: float = Field(240.0, gt=1, **_env("STREAM_MAX_SECONDS"))
    status_per_minute: float = Field(300.0, gt=0, **_env("STATUS_PER_MINUTE"))
    stall_seconds: float = Field(12.0, gt=0, **_env("STALL_SECONDS"))
    continue_chars: int = Field(600, ge=0, **_env("CONTINUE_CHARS"))
    append_final_reserve: float = Field(3.0, ge=0, **_env("APPEND_FINAL_RESERVE"))
    message_chars: int = Field(3500, ge=200, le=3900, **_env("MESSAGE_CHARS"))
    max_messages_per_answer: int = Field(8, ge=1, le=50, **_env("MAX_MESSAGES_PER_ANSWER"))
    replies_budget_per_minute: float = Field(1.0, gt=0, **_env("REPLIES_BUDGET_PER_MINUTE"))
    replies_wait_seconds: float = Field(3.0, ge=0, **_env("REPLIES_WAIT_SECONDS"))
    name_lookups_per_turn: int = Field(20, ge=0, **_env("NAME_LOOKUPS_PER_TURN"))
    names_budget_per_minute: float = Field(90.0, gt=0, **_env("NAMES_BUDGET_PER_MINUTE"))
    # a Slack write that meets a 5xx, a broken connection or a body that is not JSON: tries in all,
    # the first wait between them, doubling (429s are paced by their Retry-After instead)
    slack_retry_attempts: int = Field(4, ge=1, le=10, **_env("SLACK_RETRY_ATTEMPTS"))
    slack_retry_backoff: float = Field(0.5, gt=0, le=30, **_env("SLACK_RETRY_BACKOFF"))

    # --- Turns: concurrency, crash survival, cost guard ---------------------------------------
    max_concurrent_turns: int = Field(200, ge=1, **_env("MAX_CONCURRENT_TURNS"))
    redis_max_connections: int = Field(50, ge=4, **_env("REDIS_MAX_CONNECTIONS"))
    redis_pool_timeout: float = Field(10.0, gt=0, **_env("REDIS_POOL_TIMEOUT"))
    turn_lease_seconds: float = Field(15.0, gt=0.5, **_env("TURN_LEASE_SECONDS"))
    turn_deadline_seconds: float = Field(600.0, gt=1, **_env("TURN_DEADLINE_SECONDS"))
    journal_ttl_seconds: int = Field(7200, ge=60, **_env("JOURNAL_TTL_SECONDS"))
    user_max_active_answers: int = Field(3, ge=1, **_env("USER_MAX_ACTIVE_ANSWERS"))
    user_turns_per_minute: int = Field(10, ge=1, **_env("USER_TURNS_PER_MINUTE"))
    max_output_tokens: int = Field(8192, ge=16, **_env("MAX_OUTPUT_TOKENS"))
    # thought summaries: a "Thinking" task card on a native stream, else the thread status (never the answer)
    thinking_summaries: bool = Field(True, **_env("THINKING_SUMMARIES"))

    # --- The agent surface (issue 19): Messages tab, sessions, task cards, feedback, App Home --------
    # DMs live in the app's Messages tab: each message starts its own session (answered in its thread)
    agent_messaging: bool = Field(True, **_env("AGENT_MESSAGING"))
    # JSON list of at most 4 {title, message}: the prompts at the top of the Messages tab (a channel's
    # profile may have its own); the manifest's agent_view.suggested_prompts holds the same
    suggested_prompts: str = Field(DEFAULT_PROMPTS, **_env("SUGGESTED_PROMPTS"))
    feedback_buttons: bool = Field(True, **_env("FEEDBACK_BUTTONS"))  # 👍/👎 under final answers
    operators: str = Field("", **_env("OPERATORS"))  # comma list of Slack user ids: /gemini feedback

    # --- Governance (issue 24): who may use the bot where, daily token budgets, audit, retention ---
    # comma lists of ids; an allow list left empty allows everyone, a deny list always wins
    allow_channels: str = Field("", **_env("ALLOW_CHANNELS"))
    deny_channels: str = Field("", **_env("DENY_CHANNELS"))
    allow_users: str = Field("", **_env("ALLOW_USERS"))
    deny_users: str = Field("", **_env("DENY_USERS"))
    allow_groups: str = Field("", **_env("ALLOW_GROUPS"))  # user group ids (S...)
    deny_groups: str = Field("", **_env("DENY_GROUPS"))
    allow_dms: bool = Field(True, **_env("ALLOW_DMS"))
    allow_guests: bool = Field(True, **_env("ALLOW_GUESTS"))  # multi- and single-channel guests
    allow_connect: bool = Field(True, **_env("ALLOW_CONNECT"))  # Slack Connect partners' members
    group_cache_seconds: int = Field(600, ge=1, **_env("GROUP_CACHE_SECONDS"))
    admins: str = Field("", **_env("ADMINS"))  # user ids who may forget any thread and see workspace usage
    # tokens a day (UTC); 0 = no limit
    daily_tokens_per_user: int = Field(0, ge=0, **_env("DAILY_TOKENS_PER_USER"))
    daily_tokens_per_channel: int = Field(0, ge=0, **_env("DAILY_TOKENS_PER_CHANNEL"))
    daily_tokens_per_workspace: int = Field(0, ge=0, **_env("DAILY_TOKENS_PER_WORKSPACE"))
    research_estimate_tokens: int = Field(250000, ge=0, **_env("RESEARCH_ESTIMATE_TOKENS"))  # reserved per job
    # days after a thread's last answer when its chain is forgotten at Gemini and in Redis; 0 = off
    retention_days: float = Field(0.0, ge=0, **_env("RETENTION_DAYS"))
    retention_deletes_per_second: float = Field(5.0, gt=0, **_env("RETENTION_DELETES_PER_SECOND"))
    retention_tick_seconds: float = Field(30.0, gt=0, **_env("RETENTION_TICK_SECONDS"))
    # a forgetting's deletes not confirmed this long after it (the process died, Gemini or Slack failed)
    # are finished by the governance worker of any replica
    delete_retry_seconds: float = Field(60.0, gt=0, **_env("DELETE_RETRY_SECONDS"))
    audit_file: str = Field("", **_env("AUDIT_FILE"))  # a JSON Lines file: one line per turn / research job
    audit_content: bool = Field(False, **_env("AUDIT_CONTENT"))  # include the asker's text in audit lines

    # --- Research ---------------------------------------------------------------------------
    research_poll_initial: float = Field(10.0, gt=0, **_env("RESEARCH_POLL_INITIAL"))
    research_poll_max: float = Field(60.0, gt=0, **_env("RESEARCH_POLL_MAX"))
    research_poll_backoff: float = Field(1.5, ge=1, **_env("RESEARCH_POLL_BACKOFF"))
    research_max_minutes: float = Field(90.0, gt=0, **_env("RESEARCH_MAX_MINUTES"))
    research_status_every: float = Field(30.0, gt=0, **_env("RESEARCH_STATUS_EVERY"))
    research_lease_seconds: float = Field(60.0, gt=1, **_env("RESEARCH_LEASE_SECONDS"))
    research_max_per_user: int = Field(2, ge=1, **_env("RESEARCH_MAX_PER_USER"))
    research_file_threshold: int = Field(12000, ge=0, **_env("RESEARCH_FILE_THRESHOLD"))
    research_worker: bool = Field(True, **_env("RESEARCH_WORKER"))  # run the worker inside `serve`
    # issue 22: the agent drafts a plan the requester approves (Start / Edit plan / Cancel) before it researches
    research_planning: bool = Field(True, **_env("RESEARCH_PLANNING"))
    research_plan_timeout_minutes: float = Field(60.0, gt=0, **_env("RESEARCH_PLAN_TIMEOUT_MINUTES"))
    research_max_agent: str = Field("deep-research-max-preview-04-2026", min_length=1, **_env("RESEARCH_MAX_AGENT"))
    # the HTTPS origin Slack reaches the bot at: research jobs ask Gemini to call `<it>/gemini/webhook` when done
    public_url: str = Field("", **_env("PUBLIC_URL"))

    # --- Files people share (issue 10): caps on what one turn downloads and sends to Gemini ---------
    file_max_bytes: int = Field(20 * 1024 * 1024, ge=1, **_env("FILE_MAX_BYTES"))
    files_max_bytes_per_turn: int = Field(50 * 1024 * 1024, ge=1, **_env("FILES_MAX_BYTES_PER_TURN"))
    files_max_count: int = Field(10, ge=0, **_env("FILES_MAX_COUNT"))
    file_fetch_timeout_seconds: float = Field(60.0, gt=0, **_env("FILE_FETCH_TIMEOUT_SECONDS"))

    @field_validator("gemini_model")
    @classmethod
    def _replace_deprecated_model(cls, value: str) -> str:
        if _DEPRECATED_MODEL.match(value):
            log.warning("GEMINI_MODEL %s is deprecated; using %s instead", value, DEFAULT_MODEL)
            return DEFAULT_MODEL
        return value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: str) -> str:
        unknown = {t.strip() for t in value.split(",") if t.strip()} - BUILTIN_TOOLS
        if unknown:
            raise ValueError(f"unknown tool(s) {sorted(unknown)}; choose from {sorted(BUILTIN_TOOLS)}")
        return value

    @field_validator("image_model")
    @classmethod
    def _an_image_model(cls, value: str) -> str:
        if "-image" not in value:  # the API refuses image output from any other model
            raise ValueError("must name an image model, e.g. gemini-3.1-flash-image-preview")
        return value

    @field_validator("functions")
    @classmethod
    def _known_functions(cls, value: str) -> str:
        unknown = {f.strip() for f in value.split(",") if f.strip()} - set(FUNCTION_NAMES)
        if unknown:
            raise ValueError(f"unknown function(s) {sorted(unknown)}; choose from {list(FUNCTION_NAMES)}")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _valid_mcp_servers(cls, value: str) -> str:
        parse_mcp_servers(value)  # raises one line; the parsed list is rebuilt on use (cheap)
        return value

    @field_validator("suggested_prompts")
    @classmethod
    def _valid_prompts(cls, value: str) -> str:
        parse_prompts(value)  # raises one line
        return value

    @field_validator("operators")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        bad = [u for u in (x.strip() for x in value.split(",")) if u and not re.fullmatch(r"[UW][A-Z0-9_]{2,30}", u)]
        if bad:
            raise ValueError(f"not Slack user ids: {bad[:3]}")
        return value

    @field_validator("profiles_file")
    @classmethod
    def _valid_profiles(cls, value: str) -> str:
        if value.strip():
            load_profiles(value.strip())
        return value.strip()

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query):
            raise ValueError("must be an origin such as https://bot.example.com (no path)")
        return value

    @field_validator("store_interactions")
    @classmethod
    def _store_required(cls, value: bool) -> bool:
        if not value:
            raise ValueError("must be true: store=false disables previous_interaction_id (thread memory)")
        return value

    @model_validator(mode="after")
    def _journal_outlives_turns(self) -> "Settings":
        if self.journal_ttl_seconds < self.turn_deadline_seconds + 60:
            raise ValueError("SLACKBOT_JOURNAL_TTL_SECONDS: must exceed SLACKBOT_TURN_DEADLINE_SECONDS by a minute")
        return self

    @model_validator(mode="after")
    def _mcp_secrets_only_over_tls(self) -> "Settings":
        for server in self.mcp_server_list:
            if problem := server.insecure(allow_loopback=self.mcp_allow_insecure_loopback):
                raise ValueError(f"SLACKBOT_MCP_SERVERS: {server.name}: {problem}")
        return self

    @model_validator(mode="after")
    def _profiles_name_known_mcp_servers(self) -> "Settings":
        known = {server.name for server in self.mcp_server_list}
        for profile in self.profile_map.profiles.values():
            unknown = sorted(set(profile.mcp_servers or ()) - known)
            if unknown:
                raise ValueError(f"SLACKBOT_PROFILES_FILE: profiles.{profile.name}.mcp_servers: "
                                 f"{unknown[0]!r} is not in SLACKBOT_MCP_SERVERS")
        return self

    @model_validator(mode="after")
    def _oauth_complete(self) -> "Settings":
        oauth = {"SLACK_CLIENT_ID": self.slack_client_id, "SLACK_CLIENT_SECRET": self.client_secret,
                 "DATABASE_URL": self.db_url}
        given, missing = [k for k, v in oauth.items() if v], [k for k, v in oauth.items() if not v]
        if given and missing:
            raise ValueError(f"{missing[0]}: OAuth installs need {', '.join(oauth)}; "
                             f"{', '.join(given)} set but {', '.join(missing)} missing")
        if given and self.bot_token:
            raise ValueError("SLACK_BOT_TOKEN: set it (one workspace) or SLACK_CLIENT_ID and the rest (OAuth), not both")
        if self.db_url and not self.db_url.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("DATABASE_URL: must be a PostgreSQL URL (postgresql://user:password@host/db)")
        return self

    @model_validator(mode="after")
    def _enterprise_needs_project(self) -> "Settings":
        if self.use_enterprise and not self.google_cloud_project:
            raise ValueError("GOOGLE_CLOUD_PROJECT: required when GOOGLE_GENAI_USE_ENTERPRISE is true")
        return self

    # --- derived --------------------------------------------------------------------------------
    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.tools.split(",") if t.strip())

    @property
    def tool_list(self) -> list[dict]:
        return [{"type": t} for t in self.tool_names]

    @property
    def function_names(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.functions.split(",") if f.strip())

    @property
    def mcp_server_list(self) -> tuple[McpServer, ...]:
        return parse_mcp_servers(self.mcp_servers)

    def mcp_tools(self, only: tuple[str, ...] | None = None) -> list[dict]:
        """`mcp_server` tools for a create body (`only`: these names), header values resolved now."""
        return [server.tool() for server in self.mcp_server_list if only is None or server.name in only]

    @property
    def prompt_list(self) -> tuple[Prompt, ...]:
        return parse_prompts(self.suggested_prompts)

    @property
    def operator_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.operators.split(",") if u.strip())

    @property
    def profile_map(self) -> ProfileMap:
        if not self.profiles_file:
            return ProfileMap()
        if self._profiles is None:
            self._profiles = load_profiles(self.profiles_file)
        return self._profiles

    @property
    def default_profile(self) -> Profile:
        """The settings' own turn fields as a profile (channels without one of their own)."""
        return Profile(name="default")

    @property
    def chain_ttl_seconds(self) -> int:
        return int(self.chain_ttl_days * 86400)

    # Secrets are SecretStr so no repr or log line can print them; these read them where needed.
    @property
    def bot_token(self) -> str:
        return self.slack_bot_token.get_secret_value()

    @property
    def signing_secret(self) -> str:
        return self.slack_signing_secret.get_secret_value()

    @property
    def app_token(self) -> str:
        return self.slack_app_token.get_secret_value()

    @property
    def api_key(self) -> str:
        return self.gemini_api_key.get_secret_value()

    @property
    def client_secret(self) -> str:
        return self.slack_client_secret.get_secret_value()

    @property
    def db_url(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def oauth(self) -> bool:
        """OAuth installs (many workspaces, tokens in PostgreSQL) rather than the one SLACK_BOT_TOKEN."""
        return bool(self.slack_client_id)

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    @property
    def slack_configured(self) -> bool:
        """Any Slack setting at all means "serve Slack": only a blank slate may start the sandbox."""
        return bool(self.bot_token or self.signing_secret or self.app_token or self.oauth)

    def lacks(self, command: str | None) -> list[str]:
        """What `command` still needs to run, every item at once: serving real Slack needs every
        credential of its mode (`worker` receives no events, so no signing secret)."""
        if command not in ("serve", "worker"):
            return []
        if command == "serve" and not self.slack_configured:
            return [NO_SLACK]
        problems = []
        if not self.bot_token and not self.oauth:
            problems.append("SLACK_BOT_TOKEN: required (xoxb-...) to talk to Slack")
        if command == "serve" and not self.socket_mode and not self.signing_secret:
            problems.append("SLACK_SIGNING_SECRET: required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
        if not self.use_enterprise and not self.api_key:
            problems.append("GEMINI_API_KEY: required (or GOOGLE_GENAI_USE_ENTERPRISE=true with ADC)")
        return problems

    def require_slack(self, *, receives_events: bool = True) -> None:
        if problems := self.lacks("serve" if receives_events else "worker"):
            raise ConfigError("; ".join(problems))


NO_SLACK = ("SLACK_BOT_TOKEN: `slackbot serve` serves Slack and no Slack setting is set; to try the bot "
            "without Slack run `slackbot sandbox` (scripts/run starts it when no Slack setting is set)")


class ConfigError(Exception):
    """A configuration problem, already phrased as one line naming the variable."""


_FIELD_OF = {str(info.validation_alias.choices[0]): name for name, info in Settings.model_fields.items()}


def _field(loc: tuple) -> str | None:
    """The Settings field an error is about (pydantic names it by variable or by field)."""
    name = str(loc[0]) if loc else ""
    return name if name in Settings.model_fields else _FIELD_OF.get(name)


def _describe(err: dict) -> str:
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    field = _field(err.get("loc") or ())
    if field is None:
        return message  # a check across settings already names its variables
    return f"{Settings.model_fields[field].validation_alias.choices[0]}: {message}"


def _build(overrides: dict) -> tuple[Settings | None, list[str]]:
    """Settings and every problem with them: bad values are replaced by defaults to find the problems
    behind them (checks across settings, missing credentials). None when even that does not build."""
    problems: list[str] = []
    fallback: dict = {}
    while True:
        try:
            return Settings(**{**overrides, **fallback}), problems
        except ValidationError as exc:
            problems += [_describe(err) for err in exc.errors()]
            bad = {_field(err.get("loc") or ()) for err in exc.errors()} - {None} - fallback.keys()
            if not bad:
                return None, problems
            fallback.update({name: Settings.model_fields[name].default for name in bad})


def load_settings(needs: str | None = None, **overrides) -> Settings:
    """Build Settings, or stop with one line naming every bad variable and, for `needs` (serve | worker),
    every missing one: a person fixes them all in one go, not one per try."""
    settings, problems = _build(overrides)
    problems += settings.lacks(needs) if settings else []
    if problems or settings is None:
        raise ConfigError("; ".join(problems))
    return settings


def run_command() -> str:
    """What scripts/run starts: the sandbox for a blank slate (no Slack setting in the environment or
    .env), else `serve` (which names whatever else is wrong). `serve` itself never opens the sandbox."""
    settings, _ = _build({})
    return "serve" if settings is None or settings.slack_configured else "sandbox"


if __name__ == "__main__":  # scripts/run: `python -m slackbot.config` prints the command to run
    logging.disable(logging.WARNING)  # the chosen command says what it finds wrong, once
    print(run_command())
