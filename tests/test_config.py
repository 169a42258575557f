"""Settings: every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import logging
import re
import signal
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


def test_serve_without_any_slack_setting_opens_the_sandbox_on_port(tmp_path):
    """The blank slate starts the sandbox, on PORT, and prints the URL to open."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": SRC, "PORT": str(port),
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "SLACKBOT_LOG_FORMAT": "text"}
    proc = subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the process ended before the sandbox was ready"
            url = next(iter(re.findall(r"sandbox ready: open (http://\S+)", line)), None)
        assert url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and "slackbot sandbox" in resp.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()


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
    services = build_services(settings)
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
