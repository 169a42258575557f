"""scripts/system-packages (sourced by scripts/setup-env) on Debian and beyond (issue 14.6).

The system is played by a PATH of our own: stand-ins for apt-get, apt-cache, id, redis-server and
chromium that record what they were asked. The script itself is the real one, run by bash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import slackbot

ROOT = Path(__file__).resolve().parents[1]
SRC = str(Path(slackbot.__file__).resolve().parents[1])
BASICS = ("bash", "grep", "cat", "env")


def fake_system(tmp_path: Path, tools: dict[str, str]) -> Path:
    """A bin directory with the basics (real) and `tools` (name -> shell body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        (bin_dir / name).symlink_to(shutil.which(name))
    tools = {"id": 'echo 0', **tools}  # root: no sudo involved
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def source(tmp_path: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    script = f'set -euo pipefail; cd {ROOT}; . scripts/system-packages; echo "SKIP=${{SLACKBOT_SKIP_BROWSER:-}}"'
    return subprocess.run([str(bin_dir / "bash"), "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env})


def test_without_apt_get_it_says_what_to_install_in_one_line_each(tmp_path):
    proc = source(tmp_path, fake_system(tmp_path, {}))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("setup: redis-server is missing (there is no apt-get here): install Redis")
    assert "REDIS_URL" in lines[0]
    assert lines[1].startswith("setup: postgresql is missing (there is no apt-get here): install PostgreSQL")
    assert "SLACKBOT_TEST_POSTGRES" in lines[1]
    assert lines[2].startswith("setup: chromium is missing (there is no apt-get here): install Chromium")
    skip = proc.stdout.strip().removeprefix("SKIP=")
    assert skip.startswith("chromium is missing") and "SLACKBOT_CHROMIUM" in skip


def test_on_debian_it_installs_quietly_one_line_per_group_without_recommends(tmp_path):
    log = tmp_path / "apt.log"
    bin_dir = fake_system(tmp_path, {
        "apt-get": f'echo "$*" >> {log}; echo "lots of apt output"',
        "initdb": "true",  # PostgreSQL is there
        # Ubuntu without snap: redis-server is there, chromium has no installable candidate
        "apt-cache": 'if [ "$2" = redis-server ]; then echo "  Candidate: 5:7.0.15-1"; '
                     'else echo "  Candidate: (none)"; fi',
    })
    proc = source(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "setup: apt-get update",
        "setup: installing redis-server and what it depends on (apt-get, --no-install-recommends)",
        "setup: chromium is missing (apt-get has no installable package for it here): install Chromium or Chrome "
        "(macOS: brew install --cask chromium) and set SLACKBOT_CHROMIUM to its path; the browser test is skipped",
    ]
    assert "lots of apt output" not in proc.stdout + proc.stderr
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq --no-install-recommends redis-server"]


def test_silent_when_everything_is_there(tmp_path):
    proc = source(tmp_path, fake_system(tmp_path, {"redis-server": "true", "initdb": "true", "chromium": "true"}))
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.strip() == "SKIP="


def test_browser_test_skips_with_that_reason(tmp_path):
    reason = "chromium is missing (there is no apt-get here): install Chromium"
    env = {**os.environ, "PYTHONPATH": SRC, "SLACKBOT_CHROMIUM": str(tmp_path / "no-chromium"),
           "SLACKBOT_SKIP_BROWSER": reason}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_sandbox.py::test_sandbox_page_chat_thread_and_research_cancel"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 skipped" in proc.stdout and reason in proc.stdout


def test_without_a_reason_a_missing_browser_fails(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLACKBOT_SKIP_BROWSER"}
    env.update(PYTHONPATH=SRC, SLACKBOT_CHROMIUM=str(tmp_path / "no-chromium"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_sandbox.py::test_sandbox_page_chat_thread_and_research_cancel"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "1 failed" in proc.stdout and "SLACKBOT_CHROMIUM" in proc.stdout


@pytest.mark.parametrize("script", ["setup-env", "system-packages"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)]).returncode == 0


def test_on_debian_it_installs_postgresql_where_initdb_is_missing(tmp_path):
    """issue 23: the OAuth tests need a PostgreSQL (tests/test_oauth.py starts one with initdb)."""
    log = tmp_path / "apt.log"
    bin_dir = fake_system(tmp_path, {
        "apt-get": f'echo "$*" >> {log}',
        "apt-cache": 'echo "  Candidate: 1.0"',
        "redis-server": "true", "chromium": "true",
    })
    proc = source(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "install -y -qq --no-install-recommends postgresql" in log.read_text().splitlines()
