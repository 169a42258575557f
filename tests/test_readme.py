"""The README is how people start: its configuration table lists every setting with its default."""

from __future__ import annotations

import pathlib
import re

from pydantic import SecretStr

from slackbot.config import Settings

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
CI = (pathlib.Path(__file__).parent.parent / ".ci" / "run").read_text()


def table_rows() -> dict[str, str]:
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\| `([A-Z_]+)` \| (.*?) \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = table_rows()
    for name, field in Settings.model_fields.items():
        env = field.validation_alias.choices[0]
        assert env in rows, env
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = rows[env]
        if default == "":
            assert shown == "(empty)", env
        else:
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert shown == f"`{expected}`", (env, shown)
    assert set(rows) == {f.validation_alias.choices[0] for f in Settings.model_fields.values()}


def test_quick_start_commands_are_the_ones_ci_runs():
    assert "scripts/run" in README and "scripts/test" in README
    assert "scripts/test" in CI


# --- issue 14.3 / 14.5 / 9.6: what the quick start promises ----------------------------------------
ROOT = pathlib.Path(__file__).parent.parent


def quick_start() -> str:
    return README[README.index("## Quick start"):README.index("## Configuration")]


def test_quick_start_points_to_the_settings_file():
    assert "[`deploy/.env.example`](deploy/.env.example)" in quick_start()
    assert (ROOT / "deploy" / ".env.example").exists()


def test_sandbox_is_a_url_to_open_on_loopback_with_its_port_and_interface():
    text = quick_start()
    # "opens the sandbox" is a line with the address to open; test_config runs the CLI and sees it
    assert "sandbox ready: open http://127.0.0.1:3000/" in text
    assert "open in your browser" in text
    assert "loopback only" in text and "`127.0.0.1`" in text
    assert "PORT=8080 scripts/run" in text and "SLACKBOT_HOST=0.0.0.0" in text
    assert "SLACKBOT_SANDBOX_PORT" not in README, "one port setting per process: PORT"
    port_row = next(line for line in README.splitlines() if line.startswith("| `PORT` |"))
    host_row = next(line for line in README.splitlines() if line.startswith("| `SLACKBOT_HOST` |"))
    assert "sandbox" in port_row and "sandbox uses `127.0.0.1`" in host_row


def test_key_prefixes_of_tests_and_sandbox_are_the_ones_the_code_uses():
    sandbox_source = (ROOT / "src" / "slackbot" / "sandbox" / "server.py").read_text()
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert '`SLACKBOT_REDIS_PREFIX` + `:sandbox:` + a random suffix' in quick_start()
    assert 'f"{s.redis_prefix}:sandbox:{secrets.token_hex(4)}"' in sandbox_source
    assert "deleted when it stops" in quick_start() and "_delete_prefix" in sandbox_source
    tests = README[README.index("## Tests"):README.index("## Benchmark")]
    assert "`slackbot-test-` + a random suffix" in tests and "deletes only those keys" in tests
    assert 'f"slackbot-test-{secrets.token_hex(4)}"' in conftest


def test_partial_configuration_line_is_the_one_the_code_prints():
    from slackbot.config import ConfigError, load_settings

    shown = re.search(r"`(slackbot: configuration error: SLACK_SIGNING_SECRET: [^`]+)`", quick_start()).group(1)
    settings = load_settings(slack_bot_token="xoxb-1", slack_signing_secret="", slack_app_token="",
                             gemini_api_key="k")
    try:
        settings.require_slack()
    except ConfigError as exc:
        assert shown == f"slackbot: configuration error: {exc}"
    else:
        raise AssertionError("a bot token without a signing secret must not start")
