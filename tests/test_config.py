"""Settings: every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slackbot.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GEMINI_API_KEY", "GEMINI_MODEL",
                 "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT", "PORT", "REDIS_URL"):
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


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PORT": "not-a-port", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "slackbot", "worker"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "PORT:" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_slack_token_in_serve_names_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SLACK_SIGNING_SECRET": "x", "GEMINI_API_KEY": "k"}
    proc = subprocess.run([sys.executable, "-m", "slackbot", "worker"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "SLACK_BOT_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
