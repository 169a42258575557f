"""manifest.yml against the code: events, commands, interactivity and the exact bot scopes.

Nothing here is a copy of the manifest: the event types, commands and actions come from the real
Bolt app (built the way the server builds it), the Web API methods from the Slack gateway's table
(the one list of methods the bot may call: the gateway refuses any other; test_gateway.py runs the
whole product against an emulator holding exactly the manifest's scopes), the conversation types from `chat.intake.classify`, and the request path from the
routes `app.build_web` serves. The only hand-written knowledge is Slack's own: which scope each
method / event / command needs (the tables below). A change in the code that needs a new scope,
event or command, or that leaves a scope unused, fails a test here.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import yaml
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from conftest import bot_settings
from slackbot.app import build_bolt, build_services, build_web
from slackbot.listeners.events import INSTALL_EVENTS
from slackbot.chat.intake import classify

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "slackbot"
MANIFEST = ROOT / "manifest.yml"
# Test/dev-only code talks to the emulators, never to a real workspace.
EXCLUDED = (PKG / "emulators", PKG / "sandbox", PKG / "bench.py")

# --- Slack's requirements (https://docs.slack.dev/reference/methods, .../events, .../scopes) ----------
# Web API method -> bot scopes it needs. Every method in the gateway's table must be here.
SCOPES_BY_METHOD: dict[str, set[str]] = {
    "usergroups.users.list": {"usergroups:read"},
    # chat:write.public: /research posts its status message (then the report thread) in the channel
    # the command was run in, which may be a public channel the bot was never invited to.
    "chat.postMessage": {"chat:write", "chat:write.public"},
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    # conversations.replies needs the history scope of the conversation type it reads; the bot
    # reads threads in every conversation type it answers in.
    "conversations.replies": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "users.info": {"users:read"},
    # conversations.info: channel names for profiles mapped by name; the bot answers in public and
    # private channels (DMs have no name and are never looked up)
    "conversations.info": {"channels:read", "groups:read", "mpim:read"},
    # chat.delete: a final answer that needs fewer messages than were streamed removes the surplus
    "chat.delete": {"chat:write"},
    # native streaming (startStream, appendStream, stopStream) and the thread status need chat:write
    # (setStatus also accepts assistant:write; works in channel threads with chat:write)
    "chat.startStream": {"chat:write"},
    "chat.appendStream": {"chat:write"},
    "chat.stopStream": {"chat:write"},
    "assistant.threads.setStatus": {"chat:write"},
    # files_upload_v2: files.getUploadURLExternal + files.completeUploadExternal
    "files.completeUploadExternal": {"files:write"},
    "files.delete": {"files:write"},  # forgetting a thread deletes the bot's uploads in it (issue 24)
    # what Gemini looks up (issue 20): Real-time Search of messages, files and people (bot scopes; the
    # private types are user-token scopes, asked for only where an install has them), history reads,
    # membership for the access rule in DMs, and one permalink per workspace (no scope)
    "assistant.search.context": {"search:read.public", "search:read.files", "search:read.users"},
    "conversations.history": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "conversations.members": {"channels:read", "groups:read", "mpim:read"},
    "chat.getPermalink": set(),
    # the agent surface (slack-agents.md 1-3, 10): the Messages tab's prompts, sessions, the Home tab
    "assistant.threads.setSuggestedPrompts": {"assistant:write"},
    "agents.sessions.setStatus": {"chat:write"},
    "views.publish": set(),
    "canvases.create": {"canvases:write"},  # long research reports become a canvas tab in the channel
    "views.open": set(),  # the research plan's Edit plan modal (needs interactivity, no scope)
    "auth.test": set(),  # start-up and Bolt's authorization (bot user id); needs no scope
    "apps.connections.open": set(),  # Socket Mode, with the app-level token (its connections:write), not a bot scope
}
# Events API subscription -> the bot scope Slack requires before it delivers that event.
SCOPES_BY_EVENT: dict[str, set[str]] = {
    "subteam_members_changed": {"usergroups:read"},
    "app_mention": {"app_mentions:read"},
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "message.im": {"im:history"},
    "message.mpim": {"mpim:history"},
    "app_home_opened": set(),
    "app_context_changed": {"assistant:write"},
    "agent_session_stopped": {"chat:write"},
    "app_uninstalled": set(),  # Slack sends these to every app, no scope needed
    "tokens_revoked": set(),
}
# Events that reach a listener without being chat turns (the agent surface: listeners/agent.py; the
# access policy's group cache: listeners/governance.py)
NOT_TURNS = {"app_home_opened", "app_context_changed", "agent_session_stopped", "subteam_members_changed"}
SCOPES_FOR_SLASH_COMMANDS = {"commands"}  # also what message shortcuts need
# Fields of Slack's file object the code downloads from (with the bot token) -> the scope that needs.
# Without files:read Slack answers these URLs with its sign-in page instead of the file.
SCOPES_BY_FILE_URL: dict[str, set[str]] = {"url_private": {"files:read"}, "url_private_download": {"files:read"}}
# `message` event channel_type -> the subscription that delivers it.
MESSAGE_EVENT_BY_CHANNEL_TYPE = {"channel": "message.channels", "group": "message.groups",
                                 "im": "message.im", "mpim": "message.mpim"}
BOT_USER = "UBOTUSER1"


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def built():
    """The real services, Bolt app and web app, configured like tests/conftest.py (nothing connects)."""
    settings = bot_settings(redis_url="redis://127.0.0.1:9/0", prefix="manifest-test",
                            slack_emu=SimpleNamespace(api_url="http://127.0.0.1:9/api/"),
                            gemini_emu=SimpleNamespace(base_url="http://127.0.0.1:9"), port=9)
    services = asyncio.run(build_services(settings))
    bolt = build_bolt(services)
    web_app = build_web(services, bolt)
    yield SimpleNamespace(services=services, bolt=bolt, web=web_app)
    asyncio.run(services.close())


def _closure_values(func, depth: int = 0) -> dict:
    """Free variables of a Bolt matcher function, following nested closures (name -> value)."""
    found: dict = {}
    code = getattr(func, "__code__", None)
    if code is None or depth > 5:
        return found
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if callable(value) and hasattr(value, "__code__"):
            found.setdefault("__matchers__", []).append(value.__qualname__)  # which builtin matcher it is
            for key, inner in _closure_values(value, depth + 1).items():
                if key == "__matchers__":
                    found["__matchers__"] += inner
                else:
                    found.setdefault(key, inner)
        else:
            found.setdefault(name, value)
    return found


def _registrations_from_bolt(bolt) -> dict[str, set[str]] | None:
    """{"event": {...}, "command": {...}, "action": {...}, "message_shortcut": {...}} read off the app's
    listener matchers."""
    out: dict[str, set[str]] = {"event": set(), "command": set(), "action": set(), "message_shortcut": set(),
                                "view": set()}
    for listener in bolt._async_listeners:
        kinds = []
        for matcher in listener.matchers:
            values = _closure_values(getattr(matcher, "func", None))
            if "callback_id" in values and any("view_submission" in q for q in values.get("__matchers__", [])):
                kinds.append(("view", values["callback_id"]))  # a modal's submission (no manifest entry)
                continue
            if "event_type" in values:
                kinds.append(("event", values["event_type"]))
            elif "constraints" in values and isinstance(values["constraints"], dict) and "type" in values["constraints"]:
                kinds.append(("event", values["constraints"]["type"]))
            elif "command" in values:
                kinds.append(("command", values["command"]))
            elif "callback_id" in values:
                kinds.append(("message_shortcut", values["callback_id"]))
            elif "constraints" in values:
                kinds.append(("action", values["constraints"]))
        if not kinds:
            return None  # Bolt's internals changed shape: the caller falls back to the source
        for kind, value in kinds:
            assert isinstance(value, str), f"{kind} listener on a pattern ({value!r}): list its names explicitly"
            out[kind].add(value)
    return out


@pytest.fixture(scope="module")
def registered(built) -> dict[str, set[str]]:
    found = _registrations_from_bolt(built.bolt)
    assert found, "Bolt's listener registry could not be read: the manifest checks need it"
    return found


def _web_api_methods(built) -> set[str]:
    """Every Web API method the bot calls: the gateway's table (it refuses a method not in it)."""
    return set(built.services.slack.table)


def _file_url_reads() -> dict[str, list[str]]:
    """File URL fields (url_private, ...) the code reads, as string constants (field -> ["file:line"])."""
    reads: dict[str, list[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        if any(path == ex or ex in path.parents for ex in EXCLUDED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in SCOPES_BY_FILE_URL:
                reads.setdefault(node.value, []).append(f"{path.relative_to(PKG)}:{node.lineno}")
    return reads


def _path(url: str) -> str:
    return urlparse(url).path


def _manifest_events(manifest: dict) -> list[str]:
    return manifest["settings"]["event_subscriptions"]["bot_events"]


def _manifest_commands(manifest: dict) -> dict[str, dict]:
    return {c["command"]: c for c in manifest["features"].get("slash_commands") or []}


def _probe_event(subscription: str) -> dict:
    """The smallest event of this subscription the bot should act on."""
    if subscription == "subteam_members_changed":
        return {"type": "subteam_members_changed", "subteam_id": "S1", "added_users": ["U1"], "removed_users": []}
    if subscription in NOT_TURNS:
        return {"type": subscription, "user": "U1", "channel": "D1", "tab": "messages", "thread_ts": "1.000001",
                "context": {}, "event_ts": "1.000002"}
    if subscription == "app_mention":
        return {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.000001",
                "text": f"<@{BOT_USER}> hello"}
    if subscription in INSTALL_EVENTS:
        return {"type": subscription, "tokens": {"oauth": [], "bot": [BOT_USER]}}
    channel_type = {v: k for k, v in MESSAGE_EVENT_BY_CHANNEL_TYPE.items()}[subscription]
    return {"type": "message", "channel_type": channel_type, "user": "U1", "channel": "C1",
            "ts": "2.000002", "thread_ts": "1.000001", "text": "and then?"}


def _handled_channel_types() -> set[str]:
    """Conversation types whose messages intake turns into chat turns (thread replies or DMs)."""
    handled = set()
    for channel_type in MESSAGE_EVENT_BY_CHANNEL_TYPE:
        base = {"type": "message", "channel_type": channel_type, "user": "U1", "channel": "C1", "text": "hi"}
        top_level = {**base, "ts": "1.000001"}
        reply = {**base, "ts": "2.000002", "thread_ts": "1.000001"}
        if classify(top_level, BOT_USER, "T1") or classify(reply, BOT_USER, "T1"):
            handled.add(channel_type)
    return handled


# --- (a) events ----------------------------------------------------------------------------------------
def test_every_registered_event_is_subscribed(manifest, registered):
    subscribed = set(_manifest_events(manifest))
    for event_type in registered["event"]:
        if event_type == "message":
            wanted = {MESSAGE_EVENT_BY_CHANNEL_TYPE[t] for t in _handled_channel_types()}
            assert wanted, "a message listener but intake handles no conversation type"
            assert wanted <= subscribed, f"missing message subscriptions: {sorted(wanted - subscribed)}"
        else:
            assert event_type in subscribed, f"the app listens to {event_type!r} but the manifest does not subscribe"


def test_every_subscribed_event_is_handled(manifest, registered):
    """No subscription the code ignores: each one maps to a listener and, for messages, a handled type."""
    handled_types = _handled_channel_types()
    for subscription in _manifest_events(manifest):
        assert subscription in SCOPES_BY_EVENT, f"{subscription}: add its scope to SCOPES_BY_EVENT"
        base = subscription.split(".")[0]
        assert base in registered["event"], f"subscribed to {subscription} but no listener for {base!r}"
        if base == "message":
            channel_type = {v: k for k, v in MESSAGE_EVENT_BY_CHANNEL_TYPE.items()}[subscription]
            assert channel_type in handled_types, f"{subscription}: intake ignores {channel_type} messages"
    assert len(_manifest_events(manifest)) == len(set(_manifest_events(manifest))), "duplicate bot_events"


async def test_subscribed_events_reach_a_listener_and_become_turns(manifest, built):
    """A minimal event of each subscription passes intake and matches one of the app's listeners."""
    for subscription in _manifest_events(manifest):
        event = _probe_event(subscription)
        if subscription not in INSTALL_EVENTS:  # uninstalls are not turns: they pass intake to their listener
            is_turn = classify(event, BOT_USER, "T1") is not None
            assert is_turn is (subscription not in NOT_TURNS), f"intake misreads a plain {subscription} event"
        body = {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "Ev1",
                "event_time": 1, "event": event}
        request = AsyncBoltRequest(body=body, mode="socket_mode")
        response = BoltResponse(status=404)
        matches = [listener for listener in built.bolt._async_listeners
                   if await listener.async_matches(req=request, resp=response)]
        assert matches, f"no listener matches a {subscription} event"


def test_direct_messages_are_possible(manifest):
    """message.im is only useful if people can write to the bot: App Home's Messages tab, writable."""
    if "message.im" in _manifest_events(manifest):
        home = manifest["features"].get("app_home") or {}
        assert home.get("messages_tab_enabled") is True
        assert home.get("messages_tab_read_only_enabled") is False


# --- (b) commands --------------------------------------------------------------------------------------
def test_every_registered_command_is_declared_and_vice_versa(manifest, registered):
    declared = _manifest_commands(manifest)
    assert registered["command"] == set(declared), "slash_commands must equal the app's @app.command names"
    for name, spec in declared.items():
        assert spec.get("description"), f"{name}: description required"
        assert spec.get("should_escape") is False, f"{name}: the handler reads raw text"
    assert declared["/research"]["usage_hint"] == "[question] | status"


def test_message_shortcuts_are_declared_and_handled(manifest, registered):
    declared = {s["callback_id"]: s for s in manifest["features"].get("shortcuts") or []}
    assert registered["message_shortcut"] == set(declared), "shortcuts must equal the app's message shortcuts"
    assert 0 < len(declared) <= 5, "manifest-schema allows 5 (node-slack-sdk 10): the lower"
    assert set(declared) == {"ask_gemini", "summarize_thread", "research_thread", "forget_thread"}
    assert "research_thread_view" in registered["view"], "the Research this thread modal is handled"
    for spec in declared.values():
        assert spec["type"] == "message" and 0 < len(spec["name"]) <= 255 and 0 < len(spec["description"]) <= 150


def test_agent_view_holds_the_settings_prompts(manifest, built):
    """Agent messaging: a description and at most 4 prompts, the same as SLACKBOT_SUGGESTED_PROMPTS'
    default (the bot sets them again when the tab opens); the Home tab is on, for views.publish."""
    from slackbot.config import Settings

    view = manifest["features"]["agent_view"]
    assert 0 < len(view["agent_description"]) <= 300
    default = Settings.model_fields["suggested_prompts"].default
    defaults = [p.model_dump() for p in Settings(suggested_prompts=default).prompt_list]
    assert view["suggested_prompts"] == defaults and len(defaults) <= 4
    assert "assistant_view" not in manifest["features"], "agent_view replaces it"
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert {"app_home_opened", "app_context_changed", "agent_session_stopped"} <= set(_manifest_events(manifest))


# --- (c) scopes ----------------------------------------------------------------------------------------
def test_every_called_method_has_its_scopes(manifest, built):
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    methods = _web_api_methods(built)
    assert {"chat.postMessage", "chat.update"} <= methods, methods  # the answer path posts and edits
    for method in sorted(methods):
        assert method in SCOPES_BY_METHOD, f"{method} (in the gateway's table) is not in SCOPES_BY_METHOD"
        missing = SCOPES_BY_METHOD[method] - scopes
        assert not missing, f"{method} needs {sorted(missing)}"


def test_events_and_commands_have_their_scopes(manifest):
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    for subscription in _manifest_events(manifest):
        assert SCOPES_BY_EVENT[subscription] <= scopes, f"{subscription} needs {sorted(SCOPES_BY_EVENT[subscription])}"
    if _manifest_commands(manifest):
        assert SCOPES_FOR_SLASH_COMMANDS <= scopes


def test_file_downloads_have_their_scope(manifest):
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    reads = _file_url_reads()
    assert reads, "the discovery finds the file download (files/fetch or files/kinds reads url_private)"
    for name, where in sorted(reads.items()):
        assert SCOPES_BY_FILE_URL[name] <= scopes, f"{name} (at {', '.join(where)}) needs {sorted(SCOPES_BY_FILE_URL[name])}"


def test_no_scope_without_a_reason(manifest, built):
    """Least privilege: every requested scope is needed by a called method, an event or a command."""
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes)), "duplicate scopes"
    needed: set[str] = set()
    for method in _web_api_methods(built):
        needed |= SCOPES_BY_METHOD.get(method, set())
    for subscription in _manifest_events(manifest):
        needed |= SCOPES_BY_EVENT.get(subscription, set())
    if _manifest_commands(manifest) or manifest["features"].get("shortcuts"):
        needed |= SCOPES_FOR_SLASH_COMMANDS
    for name in _file_url_reads():
        needed |= SCOPES_BY_FILE_URL[name]
    assert set(scopes) == needed, f"extra: {sorted(set(scopes) - needed)}, missing: {sorted(needed - set(scopes))}"
    assert "user" not in manifest["oauth_config"]["scopes"], "the app acts only as its bot user"


# --- (d) request URLs and settings ---------------------------------------------------------------------
def test_request_urls_are_the_served_slack_route(manifest, built, registered):
    posts = {route.resource.canonical for route in built.web.router.routes() if route.method == "POST"}
    assert len(posts) == 1, f"expected one Slack endpoint, app.py serves POST {sorted(posts)}"
    (slack_path,) = posts
    assert slack_path == "/slack/events"
    settings = manifest["settings"]
    events_url = settings["event_subscriptions"]["request_url"]
    assert _path(events_url) == slack_path
    assert urlparse(events_url).scheme == "https"
    if registered["action"]:
        assert settings["interactivity"]["is_enabled"] is True, "the app has action listeners"
    assert _path(settings["interactivity"]["request_url"]) == _path(events_url)
    for name, spec in _manifest_commands(manifest).items():
        assert spec["url"] == events_url, f"{name}: the command must post to the same endpoint"


def test_app_basics(manifest):
    assert manifest["_metadata"] == {"major_version": 2, "minor_version": 1}
    info = manifest["display_information"]
    assert info["name"] == "Gemini"
    assert 0 < len(info["description"]) <= 140
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    bot_user = manifest["features"]["bot_user"]
    assert bot_user["display_name"] and bot_user["always_online"] is True
    settings = manifest["settings"]
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_socket_mode_switch_is_documented():
    text = MANIFEST.read_text()
    for needle in ("socket_mode_enabled: true", "connections:write", "SLACK_APP_TOKEN"):
        assert needle in text, f"the Socket Mode comment should mention {needle}"
