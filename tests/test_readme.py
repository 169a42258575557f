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
