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


def test_tests_write_under_a_prefix_of_their_own(prefix):
    tests = README[README.index("## Tests"):]
    assert "`slackbot-test-` + a random suffix" in tests and "deletes only those keys" in tests
    assert re.fullmatch(r"slackbot-test-[0-9a-f]{8}", prefix), prefix


async def test_sandbox_keys_are_under_its_own_prefix_and_go_when_it_stops(redis_url, prefix, store):
    import aiohttp

    from conftest import eventually
    from test_sandbox import post_json, sandbox, sandbox_settings

    assert "`SLACKBOT_REDIS_PREFIX` + `:sandbox:` + a random suffix" in quick_start()
    assert "deleted when it stops" in quick_start()
    async with sandbox(sandbox_settings(redis_url=redis_url, prefix=prefix)) as base, \
            aiohttp.ClientSession() as http:
        await post_json(http, f"{base}/api/user_message", {"channel": "C_GENERAL", "text": "<@UBOT> hello"})
        keys = await eventually(store.prefix_keys, message="the bot's keys")
        assert {k.split(":")[1] for k in keys} == {"sandbox"}, keys
        (suffix,) = {k.split(":")[2] for k in keys}  # one random suffix per sandbox run
        assert re.fullmatch(r"[0-9a-f]{8}", suffix), suffix
    assert await store.prefix_keys() == []


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


# --- issue 17.7: the README is the product page; the design notes and the benchmark have documents of their own
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _cells(row: str) -> int:
    """Cells in a Markdown table row; a `|` inside backticks or escaped is text, not a separator."""
    count, code, previous = 0, False, ""
    for char in row.strip().strip("|"):
        if char == "`":
            code = not code
        elif char == "|" and not code and previous != "\\":
            count += 1
        previous = char
    return count + 1


def test_every_table_row_has_as_many_cells_as_its_header():
    for path in DOCS:
        header = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.startswith("|"):
                header = None
                continue
            header = header or _cells(line)
            assert _cells(line) == header, f"{path.name}:{number}: {_cells(line)} cells, the header has {header}"


def test_relative_links_lead_somewhere():
    for path in DOCS:
        prose = re.sub(r"`[^`\n]*`", "", path.read_text())  # code spans show link syntax, they hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if target.startswith(("http://", "https://", "#")):
                continue
            assert (path.parent / target.split("#")[0]).exists(), f"{path.name} links to {target}"


def test_readme_links_the_design_notes_and_the_benchmark():
    assert "(docs/design.md)" in README and "(docs/benchmark.md)" in README
    assert "## Benchmark" not in README and "### What is guaranteed" not in README, "moved to docs/"
    design, bench = (ROOT / "docs" / "design.md").read_text(), (ROOT / "docs" / "benchmark.md").read_text()
    assert "## What is guaranteed, and where" in design and "| Module | Holds |" in design
    assert "| figure | planner | edits | planner / edits |" in bench
