"""`slackbot sandbox`: the real bot behind a local Slack-like page, no workspace needed.

What runs, all in this process:

    page (browser) --HTTP--> sandbox web app --HTTP--> SlackEmulator --signed requests--> real bot (serve)
                     <-SSE--                 <-SSE--                 <--Web API calls----
                                                                      real bot --> Gemini (real API or emulator)
                                                                      real bot --> Redis (REDIS_URL or embedded)

The page never talks to the bot directly: every message, slash command and button click goes
through the emulator, which signs it and delivers it to the bot's /slack/events exactly as Slack
would, so the sandbox exercises the same code paths as production.

Choices made at start-up (reported by /api/info and in the page's header):
* Gemini: the real API when GEMINI_API_KEY is set (or enterprise mode), else the Interactions
  emulator at a readable pace.
* Redis: REDIS_URL when it answers a PING within a second, else an embedded store (fakeredis,
  which runs the store's Lua scripts). Keys go under a per-run prefix, deleted at exit.
* Tools: with the emulator and no SLACKBOT_TOOLS, google_search and code_execution, so the emulator's
  showcase answers (emulators/showcase.py) can show sources and code runs.
* Slash commands and message shortcuts: the ones manifest.yml declares, as a workspace knows its apps'
  commands and shortcuts; the page offers them (the shortcuts in any message's "More actions" menu, in a
  channel and in a thread) and the page's server or the emulator refuses any other.

The research flow as Slack shows it: the plan's Start / Edit plan / Cancel buttons, the bot's modals (Edit plan,
Research this thread; drawn from the emulator's open views, text inputs and checkboxes, optional or not; Submit
sends what was typed and ticked back as a signed view_submission), and a long
report's canvas, whose link opens /docs/<team>/<canvas id>: the canvas's Markdown drawn by
canvas_view.py, escaped, on a page that runs no script.

Local in fact (emulators/guard.py): the page listens on PORT at 127.0.0.1 unless SLACKBOT_HOST is
set, answers only to IP literals, `localhost` and that name (DNS rebinding), takes POSTs only as
same-origin JSON, and serves only emulator file ids from /api/files/.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from pydantic import SecretStr
from redis.exceptions import RedisError
from yarl import URL

from slackbot.app import serve
from slackbot.config import ConfigError, Settings
from slackbot_emulators import guard
from slackbot_sandbox import canvas_view
from slackbot_emulators.gemini import GeminiEmulator
from slackbot_emulators.slack import Channel, Message, SlackEmulator
from slackbot.store import Store, redact

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
EMULATOR_PACE = {"chunk_chars": 8, "chunk_delay": 0.03, "first_token_delay": 0.4}
# With the emulator, research runs ~25 s and is polled every few seconds, so a visitor sees it move
# and has time to press Cancel; the real API keeps the production cadence.
EMULATED_RESEARCH = {"queued_for": 2.0, "run_for": 25.0}
EMULATED_PLANNING = {"queued_for": 1.0, "run_for": 5.0}  # a plan (and each revision) comes sooner
EMULATED_POLLING = {"research_poll_initial": 2.0, "research_poll_max": 4.0, "research_status_every": 4.0}
# the emulator's report is ~6,000 characters: over this, it becomes a canvas as a real (longer) one would
EMULATED_REPORTS = {"research_file_threshold": 4000}
EMULATED_TOOLS = "google_search,code_execution"
REDIS_PING_TIMEOUT = 1.0
_FORWARD_FIELDS = {  # what the page may send to each emulator control endpoint, nothing else
    "user_message": {"channel", "text", "user", "thread_ts"},
    "slash_command": {"command", "text", "user", "channel"},
    "click": {"channel", "ts", "action_id", "user", "value"},
    "share": {"channel", "text", "user", "thread_ts", "files"},  # a message with attached files
    # the agent surface: opening the app, looking at a channel, Slack's Stop, a rating, a message shortcut
    "app_home": {"user", "tab"},
    "app_context": {"user", "channel"},
    "stop_session": {"channel", "thread_ts", "user"},
    "feedback": {"channel", "ts", "rating", "user"},
    "shortcut": {"channel", "ts", "callback_id", "user"},
    # a modal's Submit (the typed text per input block) and its Cancel
    "view_submission": {"view_id", "values", "user"},
    "view_close": {"view_id", "user"},
}
FILE_ID = re.compile(r"F[A-Z0-9]{1,32}")  # the emulator's file ids; anything else never reaches it
TEAM_ID = re.compile(r"T[A-Z0-9]{1,32}")
# a canvas page is someone's text: no script, no plugin, no frame, nothing fetched from elsewhere
CANVAS_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                                             "form-action 'none'; frame-ancestors 'none'",
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
SHARE_MAX_BYTES = 40 * 1024 * 1024  # one page upload (base64 JSON) at most; the bot's own caps apply after


# What people said in the sandbox's workspace, for "what did Bob say about the launch?" (search_slack):
# (channel id, name, private, who wrote, text). #leadership is private, so its line is only ever shown
# in the DM of someone in it, never in a public thread (README "What Gemini can look up").
SEEDED_TALK = (
    ("C_LAUNCH", "launch", False, "U_BOB", "The launch moves to October 3: billing needs one more week of testing."),
    ("C_LAUNCH", "launch", False, "U_CAROL", "Launch checklist is in the pinned doc; QA signs off on Monday."),
    ("C_LAUNCH", "launch", False, "U_BOB", "Launch day owner is me; ping me in this channel for anything billing."),
    ("C_LEADERSHIP", "leadership", True, "U_BOB", "Between us: the launch budget is cut by 20%."),
)


class SandboxWorkspace(SlackEmulator):
    """The emulator's seeded workspace, plus a DM with the bot for every seeded person and a few
    channels where people talked about the launch (SEEDED_TALK)."""

    def reset(self) -> None:
        super().reset()
        for user in self.users.values():
            dm = f"D_{user.name.upper()}"
            if not any(c.is_im and user.id in c.members for c in self.channels.values()):
                self.channels[dm] = Channel(dm, user.name, True, {user.id, self.bot_user_id})
        members = {"C_LAUNCH": set(self.users) | {self.bot_user_id}, "C_LEADERSHIP": {"U_BOB", "U_ALICE"}}
        for channel, name, private, user, text in SEEDED_TALK:
            if channel not in self.channels:
                self.add_channel(channel, name, members[channel], private=private)
            self._store(Message(self._next_ts(), channel, user, None, text))


@dataclass
class SandboxInfo:
    gemini: str  # "real" | "emulator"
    redis: str  # "url" | "embedded"
    redis_url: str = ""  # shown without its password
    gemini_model: str = ""
    gemini_emulator_url: str = ""  # control endpoints (/_emu/script...) when the emulator is in use
    slack_emulator_url: str = ""
    commands: list[dict] | None = None  # manifest.yml's slash commands (None: not known)
    shortcuts: list[dict] | None = None  # its message shortcuts (None: not known)

    def to_json(self) -> dict:
        return {"gemini": self.gemini, "gemini_label": "real API" if self.gemini == "real" else "emulator",
                "gemini_model": self.gemini_model, "gemini_emulator_url": self.gemini_emulator_url or None,
                "redis": self.redis, "redis_label": self.redis_url if self.redis == "url" else "embedded",
                "slack_emulator_url": self.slack_emulator_url, "commands": self.commands,
                "shortcuts": self.shortcuts}


def manifest_features(start: Path = Path(__file__)) -> dict | None:
    """manifest.yml's `features`, read from the checkout this module runs from; None when there is none (an
    installed package)."""
    for folder in start.resolve().parents:
        manifest = folder / "manifest.yml"
        if manifest.is_file() and (folder / "pyproject.toml").is_file():
            return yaml.safe_load(manifest.read_text()).get("features") or {}
    return None


def manifest_commands(start: Path = Path(__file__)) -> list[dict] | None:
    """The slash commands manifest.yml declares ({command, description, usage_hint}); None when it is not
    known: then the page forwards any command and the bot's answer decides."""
    features = manifest_features(start)
    if features is None:
        return None
    return [{"command": c["command"], "description": c.get("description", ""), "usage_hint": c.get("usage_hint", "")}
            for c in features.get("slash_commands") or []]


def manifest_shortcuts(start: Path = Path(__file__)) -> list[dict] | None:
    """The message shortcuts manifest.yml declares ({callback_id, name, description}), which Slack offers in
    every message's menu; None when not known (the page then offers the bot's own, as it knows them)."""
    features = manifest_features(start)
    if features is None:
        return None
    return [{"callback_id": s["callback_id"], "name": s["name"], "description": s.get("description", "")}
            for s in features.get("shortcuts") or [] if s.get("type") == "message"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def redis_answers(url: str, timeout: float = REDIS_PING_TIMEOUT) -> bool:
    """Whether REDIS_URL answers (one node, a cluster or Sentinel: the bot's own store finds out which)."""
    try:
        store = await asyncio.wait_for(Store.connect(url, "sandbox"), timeout + 0.5)
    except (RedisError, OSError, asyncio.TimeoutError, ValueError):
        return False
    try:
        return await asyncio.wait_for(store.ping(), timeout + 0.5)
    except asyncio.TimeoutError:
        return False
    finally:
        await store.close()


def embedded_redis():
    """An in-process Redis (fakeredis with Lua, so the store's scripts run unchanged)."""
    try:
        import fakeredis
    except ImportError:  # the `sandbox` extra is not in the production image
        raise ConfigError("REDIS_URL: does not answer, and the embedded store is not installed "
                          "(pip install 'slackbot[sandbox]', or start Redis)") from None

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


@dataclass
class Sandbox:
    """Everything `slackbot sandbox` runs; `start()` then `close()`. Tests may reach the parts."""

    settings: Settings
    slack: SandboxWorkspace | None = None
    gemini_emu: GeminiEmulator | None = None
    bot_settings: Settings | None = None
    info: SandboxInfo | None = None
    url: str = ""
    _bot_task: asyncio.Task | None = None
    _bot_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    _feeds: set = field(default_factory=set)  # upstream SSE responses, closed at shutdown
    _real_redis: bool = False

    async def start(self) -> None:
        s = self.settings
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self.slack = SandboxWorkspace(signing_secret=secrets.token_hex(16),
                                      bot_token=f"xoxb-sandbox-{secrets.token_hex(12)}")
        await self.slack.start()
        # model_copy does not validate: secrets go in as SecretStr, as the fields hold them
        update: dict = {
            "slack_bot_token": SecretStr(self.slack.bot_token),
            "slack_signing_secret": SecretStr(self.slack.signing_secret), "slack_app_token": SecretStr(""),
            "slack_api_url": self.slack.api_url, "host": "127.0.0.1", "port": free_port(),
            "redis_prefix": f"{s.redis_prefix}:sandbox:{secrets.token_hex(4)}",
        }
        real_gemini = bool(s.api_key) or s.use_enterprise
        if not real_gemini:
            self.gemini_emu = GeminiEmulator(**EMULATOR_PACE)
            self.gemini_emu.agent_defaults.update(EMULATED_RESEARCH)
            self.gemini_emu.planning_defaults.update(EMULATED_PLANNING)
            await self.gemini_emu.start()
            update.update(gemini_base_url=self.gemini_emu.base_url, gemini_api_key=SecretStr("sandbox-emulator"),
                          use_enterprise=False, tools=s.tools or EMULATED_TOOLS,
                          **{k: v for k, v in (EMULATED_POLLING | EMULATED_REPORTS).items()
                             if k not in s.model_fields_set})
        self._real_redis = await redis_answers(s.redis_url)
        redis_client = None if self._real_redis else embedded_redis()
        if not self._real_redis:
            log.info("REDIS_URL does not answer; using the embedded store", extra={"redis": redact(s.redis_url)})
        self.bot_settings = type(s).model_validate(s.model_dump() | update)
        self.info = SandboxInfo(
            gemini="real" if real_gemini else "emulator", redis="url" if self._real_redis else "embedded",
            redis_url=redact(s.redis_url) if self._real_redis else "", gemini_model=s.gemini_model,
            gemini_emulator_url=self.gemini_emu.base_url if self.gemini_emu else "",
            slack_emulator_url=self.slack.base_url, commands=manifest_commands(), shortcuts=manifest_shortcuts())
        if self.info.shortcuts is not None:  # the workspace knows its app's shortcuts: others are refused
            self.slack.agents.declare_shortcuts([s["callback_id"] for s in self.info.shortcuts])
        await self._start_bot(redis_client)
        await self._start_page()

    async def _start_bot(self, redis_client) -> None:
        bs = self.bot_settings
        self._bot_task = asyncio.create_task(serve(bs, stop=self._bot_stop, redis_client=redis_client),
                                             name="sandbox-bot")
        bot_url = f"http://127.0.0.1:{bs.port}"
        for _ in range(500):
            if self._bot_task.done():
                self._bot_task.result()  # raises what stopped it
                raise RuntimeError("the bot stopped while starting")
            try:
                async with self._http.get(f"{bot_url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError("the bot did not start within 10 s")
        self.slack.app_url = f"{bot_url}/slack/events"

    async def _start_page(self) -> None:
        s = self.settings
        app = web.Application(middlewares=[_loopback_host(self.allowed_hosts()), _same_origin_json],
                              client_max_size=SHARE_MAX_BYTES)
        app.add_routes([
            web.get("/", self._index),
            web.get("/api/info", self._api_info),
            web.get("/api/state", self._api_state),
            web.get("/api/feed", self._api_feed),
            web.get("/api/files/{file_id}", self._api_file),
            web.get("/docs/{team}/{canvas_id}", self._canvas),
            web.post("/api/user_message", self._forward("user_message")),
            web.post("/api/slash_command", self._forward("slash_command")),
            web.post("/api/click", self._forward("click")),
            web.post("/api/share", self._forward("share")),
            *[web.post(f"/api/{name}", self._forward(name))
              for name in ("app_home", "app_context", "stop_session", "feedback", "shortcut", "view_submission",
                           "view_close")],
            web.static("/static", STATIC),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.page_host, s.port).start()
        except OSError as exc:
            raise ConfigError(f"PORT: cannot serve the sandbox on {self.page_host}:{s.port} "
                              f"({exc.strerror or exc}); choose another port") from None
        port = self._runner.addresses[0][1]
        shown = "127.0.0.1" if self.page_host in ("0.0.0.0", "::", "") else self.page_host
        self.url = f"http://{shown}:{port}/"

    @property
    def page_host(self) -> str:
        """Loopback unless SLACKBOT_HOST was set on purpose: the page can spend a real Gemini key."""
        return self.settings.host if "host" in self.settings.model_fields_set else "127.0.0.1"

    def allowed_hosts(self) -> set[str]:
        """Host names the page answers to besides IP literals: a DNS-rebinding page's Host is its own
        name, so only `localhost` and a name given on purpose in SLACKBOT_HOST are accepted."""
        names = set(guard.LOCAL_NAMES)
        if self.page_host and not guard.is_ip(self.page_host):
            names.add(self.page_host.lower())
        return names

    async def close(self) -> None:
        for resp in list(self._feeds):  # end the page's event streams so the server stops at once
            resp.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._bot_task is not None and not self._bot_task.done():
            self._bot_stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._bot_task), self.settings.shutdown_grace_seconds + 10)
            except asyncio.TimeoutError:
                self._bot_task.cancel()
            except Exception:
                log.exception("the bot stopped with an error")
        if self.slack is not None:
            await self.slack.stop()
        if self.gemini_emu is not None:
            await self.gemini_emu.stop()
        if self._real_redis and self.bot_settings is not None:
            await _delete_prefix(self.settings.redis_url, self.bot_settings.redis_prefix)
        if self._http is not None:
            await self._http.close()

    @property
    def bot_failed(self) -> BaseException | None:
        task = self._bot_task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception() or RuntimeError("the bot stopped")

    # --- the page's endpoints ---------------------------------------------------------------
    async def _index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _api_info(self, _: web.Request) -> web.Response:
        return web.json_response({**self.info.to_json(), "bot_user_id": self.slack.bot_user_id})

    async def _api_state(self, _: web.Request) -> web.Response:
        async with self._http.get(f"{self.slack.base_url}/_emu/state") as resp:
            return web.json_response(await resp.json(), status=resp.status)

    async def _api_file(self, request: web.Request) -> web.StreamResponse:
        """A file for the page (reports, attachments), fetched as the bot would: with its token."""
        file_id = request.match_info["file_id"]
        if not FILE_ID.fullmatch(file_id):  # e.g. "../state" (sent as %2e%2e%2fstate) is not a file
            log.info("sandbox: file id refused", extra={"chars": len(file_id)})
            return web.Response(status=404, text="file not found")
        headers = {"Authorization": f"Bearer {self.slack.bot_token}"}
        async with self._http.get(URL(self.slack.base_url) / "_emu" / "files" / file_id, headers=headers) as resp:
            body = await resp.read()
            upstream = resp.content_type
        if resp.status != 200:
            return web.Response(status=resp.status, text="file not found")
        safe = {"Content-Disposition": "inline", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"}
        # images and PDFs as themselves; anything else as plain text, so no upload can script the page
        if (upstream.startswith("image/") and upstream != "image/svg+xml") or upstream == "application/pdf":
            return web.Response(body=body, content_type=upstream, headers=safe)
        return web.Response(body=body, content_type="text/plain", charset="utf-8", headers=safe)

    async def _canvas(self, request: web.Request) -> web.Response:
        """Where a canvas link leads (the page points the workspace's /docs/<team>/<id> links here, as Slack's
        client opens its canvas viewer): the canvas's Markdown as a readable page."""
        team, canvas_id = request.match_info["team"], request.match_info["canvas_id"]
        if not (TEAM_ID.fullmatch(team) and FILE_ID.fullmatch(canvas_id)):
            return web.Response(status=404, text="canvas not found")
        async with self._http.get(URL(self.slack.base_url) / "docs" / team / canvas_id) as resp:
            markdown = await resp.text()
        if resp.status != 200:
            return web.Response(status=404, text="canvas not found")
        return web.Response(text=canvas_view.page(markdown), content_type="text/html", charset="utf-8",
                            headers=CANVAS_HEADERS)

    def _forward(self, name: str):
        allowed = _FORWARD_FIELDS[name]

        async def handler(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": "invalid JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"ok": False, "error": "expected a JSON object"}, status=400)
            payload = {k: v for k, v in body.items() if k in allowed and v is not None}
            if name == "slash_command" and not self._declared(payload.get("command")):
                return web.json_response({"ok": False, "error": "not a command of this app"}, status=400)
            async with self._http.post(f"{self.slack.base_url}/_emu/{name}", json=payload) as resp:
                return web.json_response(await resp.json(), status=resp.status)
        return handler

    def _declared(self, command) -> bool:
        known = self.info.commands
        return known is None or any(c["command"] == command for c in known)

    async def _api_feed(self, request: web.Request) -> web.StreamResponse:
        """The emulator's SSE feed, passed through byte for byte."""
        upstream = await self._http.get(f"{self.slack.base_url}/_emu/feed")
        self._feeds.add(upstream)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        except (ConnectionError, aiohttp.ClientError, asyncio.CancelledError):
            pass  # the page went away, or we are stopping
        finally:
            self._feeds.discard(upstream)
            upstream.close()
        return resp


def _loopback_host(names: set[str]):
    """Refuse any Host that is not an IP literal or an allowed name (DNS rebinding, see guard.py)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if not guard.host_allowed(request.headers.get("Host", ""), names):
            return guard.refuse_host(request)
        return await handler(request)
    return middleware


@web.middleware
async def _same_origin_json(request: web.Request, handler):
    """POSTs must be JSON from this page: another site's form or script cannot drive the bot."""
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if request.content_type != "application/json":
            return guard.refuse_content_type(request)
        if origin and origin.split("://", 1)[-1].rstrip("/") != request.host:
            return web.json_response({"ok": False, "error": "cross-origin request refused"}, status=403)
    return await handler(request)


async def _delete_prefix(url: str, prefix: str) -> None:
    try:
        store = await Store.connect(url, prefix)
    except (RedisError, OSError, ValueError):
        log.warning("could not delete the sandbox's Redis keys", extra={"prefix": prefix})
        return
    try:
        await store.delete_prefix()
    except (RedisError, OSError):
        log.warning("could not delete the sandbox's Redis keys", extra={"prefix": prefix})
    finally:
        await store.close()


def _stop_on_signals() -> tuple[asyncio.Event, list[int]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support
            pass
    return stop, installed


async def run_sandbox(settings: Settings, *, stop: asyncio.Event | None = None,
                      ready: asyncio.Event | None = None) -> None:
    """Serve the sandbox page until SIGINT/SIGTERM (or `stop`); `ready` is set once the page is served."""
    installed: list[int] = []
    if stop is None:
        stop, installed = _stop_on_signals()
    sandbox = Sandbox(settings)
    try:
        await sandbox.start()
        info = sandbox.info
        log.info(f"sandbox ready: open {sandbox.url}  (Gemini: {info.to_json()['gemini_label']}, "
                 f"Redis: {info.to_json()['redis_label']})")
        if ready is not None:
            ready.set()
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopping, sandbox._bot_task}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if (failure := sandbox.bot_failed) is not None:
            raise failure
    finally:
        await sandbox.close()
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)
