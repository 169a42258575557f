"""Settings: every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import slackbot
from conftest import free_port
from slackbot.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GEMINI_API_KEY", "GEMINI_MODEL",
                 "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT", "PORT", "REDIS_URL", "SLACKBOT_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name, value, expected", [
    ("PORT", "abc", "PORT: "),
    ("PORT", "70000", "PORT: "),
    ("SLACKBOT_TOOLS", "web_browse", "SLACKBOT_TOOLS: unknown tool"),
    ("SLACKBOT_STORE_INTERACTIONS", "false", "SLACKBOT_STORE_INTERACTIONS: must be true"),
    ("SLACKBOT_EDIT_BUDGET_PER_MINUTE", "0", "SLACKBOT_EDIT_BUDGET_PER_MINUTE: "),
    ("GOOGLE_GENAI_USE_ENTERPRISE", "true", "GOOGLE_CLOUD_PROJECT: required"),
])
def test_bad_setting_names_the_variable(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_deprecated_model_is_replaced_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("GEMINI_MODEL", "gemini-1.5-pro")
    assert load_settings().gemini_model == "gemini-3-flash-preview"
    assert "gemini-1.5-pro" in caplog.text and "gemini-3-flash-preview" in caplog.text
    monkeypatch.setenv("GEMINI_MODEL", "gemini-2.5-pro")
    assert load_settings().gemini_model == "gemini-2.5-pro"


def test_defaults_follow_the_issues(monkeypatch):
    s = load_settings()
    assert s.gemini_model == "gemini-3-flash-preview"
    assert s.redis_url == "redis://localhost:6379/0" and s.port == 3000
    assert s.research_agent == "deep-research-pro-preview-12-2025"
    assert s.chain_ttl_days == 55 and s.research_max_minutes == 90 and s.research_max_per_user == 2
    assert s.edit_budget_per_minute + s.edit_budget_burst <= 50, "safely under Slack's Tier 3"


SRC = str(Path(slackbot.__file__).resolve().parents[1])  # this checkout's code, not an installed copy


def run_cli(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "slackbot", *args], env={**base, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def assert_one_line(proc: subprocess.CompletedProcess, variable: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"slackbot: configuration error: {variable}:"), lines[0]


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    assert_one_line(run_cli(tmp_path, "worker", PORT="not-a-port"), "PORT")


def test_missing_slack_token_in_worker_names_it(tmp_path):
    assert_one_line(run_cli(tmp_path, "worker", SLACK_SIGNING_SECRET="x", GEMINI_API_KEY="k"), "SLACK_BOT_TOKEN")


# --- issue 9.6: configuration never guesses -------------------------------------------------------
@pytest.mark.parametrize("env, missing", [
    ({"SLACK_BOT_TOKEN": "xoxb-1", "GEMINI_API_KEY": "k"}, "SLACK_SIGNING_SECRET"),  # HTTP mode
    ({"SLACK_SIGNING_SECRET": "s", "GEMINI_API_KEY": "k"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_APP_TOKEN": "xapp-1", "GEMINI_API_KEY": "k"}, "SLACK_BOT_TOKEN"),  # Socket Mode
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "GEMINI_API_KEY"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, "GEMINI_API_KEY"),
], ids=["token-no-secret", "secret-no-token", "app-token-no-bot-token", "http-no-gemini", "socket-no-gemini"])
def test_partial_slack_configuration_stops_serve_with_one_line(tmp_path, env, missing):
    """Any Slack setting means "serve Slack": a partial one is an error, never the sandbox."""
    assert_one_line(run_cli(tmp_path, "serve", **env), missing)


def test_partial_configuration_in_dotenv_is_read_too(tmp_path):
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-1\nGEMINI_API_KEY=k\n")
    assert_one_line(run_cli(tmp_path, "serve"), "SLACK_SIGNING_SECRET")


def test_only_a_blank_slate_is_the_sandbox(monkeypatch):
    assert not load_settings().slack_configured
    monkeypatch.setenv("GEMINI_API_KEY", "k")  # a Gemini key alone: the sandbox, on the real API
    assert not load_settings().slack_configured
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.setenv(name, "x")
        assert load_settings().slack_configured, name
        monkeypatch.delenv(name)


@pytest.mark.parametrize("env, receives_events", [
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GEMINI_API_KEY": "k"}, True),  # HTTP
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "GEMINI_API_KEY": "k"}, True),  # Socket Mode
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_GENAI_USE_ENTERPRISE": "true",
      "GOOGLE_CLOUD_PROJECT": "p"}, True),  # Enterprise: ADC, no API key
    ({"SLACK_BOT_TOKEN": "xoxb-1", "GEMINI_API_KEY": "k"}, False),  # the worker receives no events
])
def test_complete_configurations_pass(monkeypatch, env, receives_events):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings().require_slack(receives_events=receives_events)


def test_secrets_never_print(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, f"secret-{name}")
    s = load_settings()
    assert "secret-" not in repr(s) and "secret-" not in str(s.model_dump())
    assert s.bot_token == "secret-SLACK_BOT_TOKEN"


def test_serve_without_any_slack_setting_stops_and_points_to_the_sandbox(tmp_path):
    """issue 25.12: `serve` never becomes the sandbox (a pod missing its Slack Secret would serve a page
    spending the real Gemini key): one line pointing to `slackbot sandbox` and scripts/run."""
    for env in ({}, {"GEMINI_API_KEY": "k", "SLACKBOT_HOST": "0.0.0.0"}):
        proc = run_cli(tmp_path, "serve", **env)
        assert_one_line(proc, "SLACK_BOT_TOKEN")
        assert "`slackbot sandbox`" in proc.stderr and "scripts/run" in proc.stderr


ROOT = Path(SRC).parent


def fresh_clone(tmp_path: Path) -> Path:
    """The repository as a clone has it (scripts, pyproject.toml; no .env), with this interpreter's .venv."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    for name in ("run", "setup-env", "system-packages"):
        shutil.copy2(ROOT / "scripts" / name, clone / "scripts" / name)
    shutil.copy2(ROOT / "pyproject.toml", clone / "pyproject.toml")
    (clone / "devkit").mkdir()
    shutil.copy2(ROOT / "devkit" / "pyproject.toml", clone / "devkit" / "pyproject.toml")
    (clone / ".venv").symlink_to(Path(sys.prefix))
    if not list((clone / ".venv").glob(".installed-*")):
        pytest.skip("not run from the .venv scripts/setup-env builds (scripts/test)")
    return clone


def read_until(proc: subprocess.Popen, pattern: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the process ended first"
        if found := re.findall(pattern, line):
            return found[0]
    raise AssertionError(f"no line matching {pattern}")


def test_scripts_run_on_a_fresh_clone_opens_the_sandbox_on_port(tmp_path):
    """issue 25.12: the quick start stays true: with no Slack setting, scripts/run starts the sandbox."""
    clone, port = fresh_clone(tmp_path), free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PORT": str(port), "SLACKBOT_LOG_FORMAT": "text",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = subprocess.Popen(["bash", str(clone / "scripts" / "run")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = read_until(proc, r"sandbox ready: open (http://\S+)")
        assert url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and "slackbot sandbox" in resp.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()


def test_scripts_run_with_slack_settings_in_dotenv_serves_slack(tmp_path):
    clone = fresh_clone(tmp_path)
    (clone / ".env").write_text("SLACK_BOT_TOKEN=xoxb-1\nGEMINI_API_KEY=k\n")
    proc = subprocess.run(["bash", str(clone / "scripts" / "run")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, cwd=tmp_path)
    assert_one_line(proc, "SLACK_SIGNING_SECRET")  # `serve`'s own line: it is serving Slack, not the sandbox


# --- issue 25.13: start-up errors are one line -------------------------------------------------------
def test_every_bad_and_missing_setting_is_named_at_once(tmp_path):
    proc = run_cli(tmp_path, "serve", SLACK_BOT_TOKEN="xoxb-1", PORT="abc", SLACKBOT_TOOLS="web_browse",
                   SLACKBOT_EDIT_BUDGET_PER_MINUTE="0")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("slackbot: configuration error: ")
    for name in ("PORT", "SLACKBOT_TOOLS", "SLACKBOT_EDIT_BUDGET_PER_MINUTE", "SLACK_SIGNING_SECRET",
                 "GEMINI_API_KEY"):
        assert f"{name}: " in proc.stderr, name


def serve_env(redis_url: str, **extra: str) -> dict[str, str]:
    """A complete HTTP-mode configuration; Slack's API is nowhere unless SLACK_API_URL says otherwise."""
    return {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": "s", "GEMINI_API_KEY": "k",
            "REDIS_URL": redis_url, "SLACKBOT_HOST": "127.0.0.1", "PORT": str(free_port()),
            "SLACKBOT_REDIS_PREFIX": "slackbot-test-startup", "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
            **extra}


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_port_in_use_is_one_line(tmp_path, redis_url, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli(tmp_path, command, **serve_env(redis_url, PORT=str(port)))
    assert_one_line(proc, "PORT")
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_redis_that_does_not_answer_is_named_without_its_password(tmp_path, command):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    proc = run_cli(tmp_path, command, **serve_env(url))
    assert_one_line(proc, "REDIS_URL")
    assert "redis://:***@127.0.0.1:" in proc.stderr and "does not answer" in proc.stderr
    assert "hunter2" not in proc.stderr


# --- issue 25.11: a token Slack refuses stops start-up -------------------------------------------------
@pytest.mark.parametrize("env, variable", [
    ({"SLACK_BOT_TOKEN": "xoxb-revoked"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_APP_TOKEN": "xapp-wrong", "SLACK_SIGNING_SECRET": ""}, "SLACK_APP_TOKEN"),
], ids=["bot-token", "app-token"])
async def test_a_token_slack_refuses_stops_start_up_naming_it(tmp_path, redis_url, slack_emu, env, variable):
    proc = await asyncio.to_thread(run_cli, tmp_path, "serve",
                                   **serve_env(redis_url, SLACK_API_URL=slack_emu.api_url, **env))
    assert_one_line(proc, variable)
    assert "Slack refused it (invalid_auth)" in proc.stderr


# --- issue 25.5: MCP secrets only over TLS --------------------------------------------------------------
INSECURE_MCP = '[{"name": "crm", "url": "http://169.254.169.254/mcp", "headers": {"Authorization": "env:CRM_TOKEN"}}]'


def test_an_mcp_server_with_headers_over_http_stops_start_up(tmp_path, redis_url):
    proc = run_cli(tmp_path, "serve", **serve_env(redis_url, SLACKBOT_MCP_SERVERS=INSECURE_MCP,
                                                  CRM_TOKEN="crm-secret"))
    assert_one_line(proc, "SLACKBOT_MCP_SERVERS")
    assert "crm: " in proc.stderr and "https://" in proc.stderr and "crm-secret" not in proc.stderr
    # the development switch allows loopback hosts only, never another one
    proc = run_cli(tmp_path, "serve", **serve_env(redis_url, SLACKBOT_MCP_SERVERS=INSECURE_MCP,
                                                  CRM_TOKEN="crm-secret", SLACKBOT_MCP_ALLOW_INSECURE_LOOPBACK="true"))
    assert_one_line(proc, "SLACKBOT_MCP_SERVERS")


def test_mcp_over_http_is_allowed_without_headers_or_on_loopback_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_TOKEN", "crm-secret")
    plain = '[{"name": "docs", "url": "http://docs.example.com/mcp"}]'
    assert load_settings(mcp_servers=plain).mcp_server_list[0].name == "docs"  # no headers: no secret to leak
    for host in ("127.0.0.1", "localhost", "[::1]"):
        local = INSECURE_MCP.replace("169.254.169.254", host)
        with pytest.raises(ConfigError):
            load_settings(mcp_servers=local)
        assert load_settings(mcp_servers=local, mcp_allow_insecure_loopback=True).mcp_server_list
    # profiles pick servers by name from SLACKBOT_MCP_SERVERS: the check covers what they send too
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  sales:\n    mcp_servers: [crm]\nchannels:\n  C0123: sales\n")
    with pytest.raises(ConfigError) as err:
        load_settings(mcp_servers=INSECURE_MCP, profiles_file=str(path))
    assert str(err.value).startswith("SLACKBOT_MCP_SERVERS: crm: ")


# --- Socket Mode and the Bolt app ----------------------------------------------------------------
async def test_socket_mode_starts_without_a_signing_secret_and_bolt_does_not_warn(monkeypatch, caplog):
    """Socket Mode: the web server comes up with health routes and no /slack/events to forge; Bolt's
    "`token` will be unused" warning (it reads SLACK_BOT_TOKEN from the environment) is gone."""
    from slackbot.app import build_bolt, build_services, build_web

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    settings = load_settings(host="127.0.0.1", port=free_port())
    settings.require_slack()
    assert settings.socket_mode and not settings.signing_secret
    services = await build_services(settings)
    caplog.set_level(logging.DEBUG)
    web_app = build_web(services, build_bolt(services))
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.port}") as http:
            async with http.get("/healthz") as resp:
                assert resp.status == 200
            async with http.post("/slack/events", data="{}") as resp:
                assert resp.status in (404, 405)
    finally:
        await runner.cleanup()
        await services.close()
    assert "will be unused" not in caplog.text


# --- issue 14.4: help that answers -----------------------------------------------------------------
@pytest.mark.parametrize("command, says", [
    ("serve", ["Run the Slack bot", "Socket Mode", "sandbox", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET",
               "SLACK_APP_TOKEN", "GEMINI_API_KEY", "REDIS_URL", "PORT"]),
    ("worker", ["research worker", "SLACKBOT_RESEARCH_WORKER=false", "SLACK_BOT_TOKEN", "GEMINI_API_KEY",
                "REDIS_URL", "PORT"]),
    ("sandbox", ["without a Slack workspace", "URL", "loopback", "PORT", "SLACKBOT_HOST", "GEMINI_API_KEY",
                 "REDIS_URL", "slackbot[sandbox]"]),
])
def test_help_says_what_each_command_does_and_where_the_table_is(tmp_path, command, says):
    proc = run_cli(tmp_path, command, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for needle in says:
        assert needle in proc.stdout, (command, needle)
    assert "README.md, section Configuration" in proc.stdout
    readme = (Path(SRC).parent / "README.md").read_text()
    assert "## Configuration" in readme and "| Variable | Default | What it does |" in readme
