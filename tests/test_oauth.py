"""OAuth installs (issue 23) end to end: "Add to Slack" through the bot's own /slack/install and
/slack/oauth_redirect, installations in a real PostgreSQL, each workspace answered with its own token,
rotation, isolation between workspaces, org-wide installs, and uninstalls that leave nothing.

PostgreSQL: the one on 127.0.0.1:5432 when it answers (each test gets a database of its own), else a
throwaway server this session starts (initdb as the `postgres` user when run as root)."""

from __future__ import annotations

import asyncio
import glob
import html
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import asyncpg
import pytest

from conftest import eventually, free_port, idle, metric, open_store, start_bot, stop_bot
from slackbot.config import ConfigError, load_settings
from slackbot.installs import Installs

from test_chat import answered


# ------------------------------------------------------------------ PostgreSQL
def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _throwaway_postgres() -> tuple[str, subprocess.Popen, str]:
    """initdb + postgres on a free loopback port (as `postgres` when we are root: initdb refuses root)."""
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if not initdb:
        pytest.fail("PostgreSQL is missing: run scripts/test, which installs it (apt-get postgresql)")
    bindir = os.path.dirname(initdb)
    data = tempfile.mkdtemp(prefix="slackbot-pg-")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run([*run_as, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([*run_as, os.path.join(bindir, "postgres"), "-D", data, "-p", str(port),
                             "-c", "listen_addresses=127.0.0.1", "-k", data], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not _answers("127.0.0.1", port):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("a throwaway PostgreSQL did not start")
        time.sleep(0.1)
    return f"postgresql://postgres@127.0.0.1:{port}", proc, data


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server URL without a database: SLACKBOT_TEST_POSTGRES, else the one on 127.0.0.1:5432,
    else a throwaway one (SLACKBOT_TEST_POSTGRES=start: a throwaway one in any case)."""
    given = os.environ.get("SLACKBOT_TEST_POSTGRES", "")
    if given != "start" and (given or _answers("127.0.0.1", 5432)):
        yield given or "postgresql://postgres@127.0.0.1:5432"
        return
    url, proc, data = _throwaway_postgres()
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def database_url(postgres_server):
    """A database of this test's own, dropped afterwards."""
    name = f"slackbot_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{postgres_server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
def oauth_settings(settings_for, slack_emu, database_url):
    def make(**overrides):
        port = free_port()
        return settings_for(slack_bot_token="", slack_client_id=slack_emu.oauth.client_id,
                            slack_client_secret=slack_emu.oauth.client_secret, database_url=database_url,
                            slack_redirect_uri=f"http://127.0.0.1:{port}/slack/oauth_redirect", port=port, **overrides)
    return make


async def add_to_slack(emu, bot_url: str, target: str, user: str) -> str:
    """A person walks "Add to Slack" as a browser does: the bot's install page, Slack's consent page,
    Allow, back to the bot's redirect (with the state cookie). Returns the page the bot shows at the end."""
    # Bolt's state cookie is Secure: browsers send it to a loopback http origin, as this jar is told to
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[bot_url])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{bot_url}/slack/install") as page:
            assert page.status == 200
            authorize = html.unescape(re.search(r'href="([^"]+oauth/v2/authorize[^"]+)"', await page.text())[1])
        async with browser.get(authorize) as consent:
            assert consent.status == 200
        query = dict(parse_qsl(urlsplit(authorize).query))
        form = {**query, "target": target, "user": user, "decision": "allow"}
        async with browser.post(f"{emu.base_url}/oauth/v2/authorize", data=form) as back:  # follows the redirect
            assert str(back.url).startswith(f"{bot_url}/slack/oauth_redirect"), back.url
            return f"{back.status} {await back.text()}"


def second_workspace(emu, team="T0002", user="U_DAN", channel="C2_GENERAL"):
    emu.add_workspace(team, f"Team {team}")
    emu.add_user(user, user.lower(), f"{user} Person", team=team)
    emu.add_channel(channel, "general", {user}, team=team)


async def install_second_workspace(emu, bot_url: str):
    """Dan adds the app to T0002 through "Add to Slack", and the bot joins #general there: its install."""
    assert (await add_to_slack(emu, bot_url, "T0002", "U_DAN")).startswith("200")
    install = emu.install_for("T0002")
    emu.channels["C2_GENERAL"].members.add(install.bot_user_id)
    return install


# ------------------------------------------------------------------ 1: configuration
@pytest.mark.parametrize("given,missing", [
    ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_SECRET"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://db/x"}, "SLACK_CLIENT_ID"),
])
def test_partial_oauth_configuration_stops_start_up_naming_what_is_missing(given, missing, monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    with pytest.raises(ConfigError) as exc:
        load_settings("serve", _env_file=None)
    line = str(exc.value)
    assert "\n" not in line and line.startswith(f"{missing}: ") and line.endswith(" missing")
    assert missing in line.split(" but ")[1]


def test_a_full_oauth_configuration_serves_without_a_bot_token(monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    for name, value in {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "DATABASE_URL": "postgresql://db/x",
                        "GEMINI_API_KEY": "k", "SLACK_SIGNING_SECRET": "s"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings("serve", _env_file=None).oauth


# ------------------------------------------------------------------ 1 + 2 + 3: two workspaces, one deployment
async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
        oauth_settings, slack_emu, gemini_emu, redis_url, prefix, database_url):
    second_workspace(slack_emu)
    second_workspace(slack_emu, "T0003", "U_EVE", "C3_GENERAL")
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        for team, user in (("T0002", "U_DAN"), ("T0003", "U_EVE")):
            page = await add_to_slack(slack_emu, bot.url, team, user)
            assert page.startswith("200"), page
        installs = {t: slack_emu.install_for(t) for t in ("T0002", "T0003")}
        for team, channel in (("T0002", "C2_GENERAL"), ("T0003", "C3_GENERAL")):
            slack_emu.channels[channel].members.add(installs[team].bot_user_id)
        before = {t: await metric(bot.url, "slackbot_events_total", outcome="accepted", team=t) for t in ("T0002", "T0003")}
        # both at once; the emulated model answers "Reply n to: <question>", so each reply shows what it saw
        sent = await asyncio.gather(
            slack_emu.user_message("C2_GENERAL", f"<@{installs['T0002'].bot_user_id}> hi from two", user="U_DAN"),
            slack_emu.user_message("C3_GENERAL", f"<@{installs['T0003'].bot_user_id}> hi from three", user="U_EVE"))
        for d, channel, mine, theirs in zip(sent, ("C2_GENERAL", "C3_GENERAL"), ("two", "three"), ("three", "two")):
            assert d.status == 200
            texts = " ".join(await answered(slack_emu, gemini_emu, channel, d.payload["event"]["ts"]))
            assert f"hi from {mine}" in texts and f"hi from {theirs}" not in texts
        posts = [c for c in slack_emu.calls_to("chat.postMessage") if c.params.get("channel") in ("C2_GENERAL", "C3_GENERAL")]
        assert {(c.params["channel"], c.team) for c in posts} == {("C2_GENERAL", "T0002"), ("C3_GENERAL", "T0003")}
        # each workspace's state is under its own id: no key of one names the other's channel
        store = await open_store(redis_url, prefix)
        try:
            two = set(await store.prefix_keys(f"{prefix}:*{{T0002:*"))
            three = set(await store.prefix_keys(f"{prefix}:*{{T0003:*"))
            assert two and three and not two & three
            assert all("C3_GENERAL" not in k for k in two) and all("C2_GENERAL" not in k for k in three)
        finally:
            await store.close()
        for team in ("T0002", "T0003"):  # metrics name the installation by id
            assert await metric(bot.url, "slackbot_events_total", outcome="accepted", team=team) == before[team] + 1
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{bot.url}/readyz") as r:
                assert (await r.json())["database"] is True
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 1: rotation
async def test_a_rotating_token_is_refreshed_before_it_expires(oauth_settings, slack_emu, gemini_emu):
    slack_emu.oauth.token_rotation, slack_emu.oauth.token_expiry_seconds = True, 90.0  # < 2 minutes left
    second_workspace(slack_emu)
    bot = await start_bot(oauth_settings(token_refresh_minutes=2, install_cache_seconds=0), slack_emu)
    try:
        install = await install_second_workspace(slack_emu, bot.url)
        refreshes = lambda: [e for e in slack_emu.oauth.exchanges if e.get("grant_type") == "refresh_token"]  # noqa: E731
        assert not refreshes()
        gemini_emu.script(text="fresh token answer")
        d = await slack_emu.user_message("C2_GENERAL", f"<@{install.bot_user_id}> hi", user="U_DAN")
        await answered(slack_emu, gemini_emu, "C2_GENERAL", d.payload["event"]["ts"])
        assert refreshes(), "the token expiring within SLACKBOT_TOKEN_REFRESH_MINUTES was refreshed"
        assert not [c for c in slack_emu.calls if getattr(c, "error", None) == "token_expired"]
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 2: create_tables
async def test_create_tables_is_idempotent_with_replicas_starting_at_once(oauth_settings):
    settings = oauth_settings()
    replicas = [Installs(settings) for _ in range(4)]
    try:
        await asyncio.gather(*(r.create_tables() for r in replicas))
        await replicas[0].create_tables()
        assert await replicas[0].unreachable() == ""
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


# ------------------------------------------------------------------ 5: uninstall
@pytest.mark.cluster
async def test_uninstall_leaves_nothing_of_that_workspace(oauth_settings, slack_emu, gemini_emu, redis_url, prefix):
    second_workspace(slack_emu)
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        install = await install_second_workspace(slack_emu, bot.url)
        gemini_emu.script(text="before the uninstall")
        d = await slack_emu.user_message("C2_GENERAL", f"<@{install.bot_user_id}> hi", user="U_DAN")
        await answered(slack_emu, gemini_emu, "C2_GENERAL", d.payload["event"]["ts"])
        gemini_emu.script_agent(queued_for=0.1, run_for=60)  # a research job still running at the uninstall
        await slack_emu.slash_command("/research", "a long question", user="U_DAN", channel="C2_GENERAL")
        store = await open_store(redis_url, prefix)
        installs = Installs(bot.settings)

        async def running_job():
            for key in await store.prefix_keys(store.keys.jobs.any_job):
                if (job := await store.jobs.get(key.split("{")[1].rstrip("}"))) and job.interaction_id:
                    return job
        try:
            job = await eventually(running_job, 10, message="the research job holds its agent's interaction")
            assert job.team == "T0002"
            assert await store.prefix_keys(f"{prefix}:*{{T0002:*") and await installs.rows_of("T0002")
            deliveries = await slack_emu.oauth.uninstall("T0002")
            assert all(x.status == 200 for x in deliveries)

            async def gone():
                return not await installs.rows_of("T0002") and not any(
                    [k for p in store.keys.team_patterns("T0002") for k in await store.prefix_keys(p)])
            await eventually(gone, 10, message="T0002's rows and keys deleted")
            assert not [k for k in await store.prefix_keys() if "T0002" in k]
            assert await store.jobs.get(job.id) is None
            await eventually(lambda: [r for r in gemini_emu.requests if r["path"].endswith(f"{job.interaction_id}/cancel")],
                             10, message="the running research job cancelled at Gemini")
        finally:
            await installs.close()
            await store.close()
        await eventually(lambda: idle(bot.url), 10)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 4: Enterprise Grid
async def test_an_org_wide_install_answers_in_every_workspace_of_the_org(
        oauth_settings, slack_emu, gemini_emu, redis_url, prefix):
    slack_emu.oauth.org_deploy_enabled = True
    for team, user in (("T0101", "U_ORG1"), ("T0102", "U_ORG2")):
        slack_emu.add_workspace(team, f"Acme {team}", enterprise_id="E0100", enterprise_name="Acme Corp")
        slack_emu.add_user(user, user.lower(), f"{user} Person", team=team)
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        assert (await add_to_slack(slack_emu, bot.url, "E0100", "U_ORG1")).startswith("200")
        org = slack_emu.install_for("T0101")
        assert org.is_enterprise_install and slack_emu.install_for("T0102") is org
        for team, user in (("T0101", "U_ORG1"), ("T0102", "U_ORG2")):
            slack_emu.add_channel(f"C_{team}", "general", {user, org.bot_user_id}, team=team)
            d = await slack_emu.user_message(f"C_{team}", f"<@{org.bot_user_id}> hello {team}", user=user)
            assert d.payload["enterprise_id"] == "E0100"
            texts = " ".join(await answered(slack_emu, gemini_emu, f"C_{team}", d.payload["event"]["ts"]))
            assert f"hello {team}" in texts
        store = await open_store(redis_url, prefix)
        try:  # keys follow the installing org, as Slack Connect's follow the installing workspace
            assert await store.prefix_keys(f"{prefix}:chain:{{E0100:C_T0101:*")
            assert await store.prefix_keys(f"{prefix}:chain:{{E0100:C_T0102:*")
            assert not [k for k in await store.prefix_keys() if "{T0101:" in k or "{T0102:" in k]
        finally:
            await store.close()
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 3: files with the workspace's own token
async def test_a_file_shared_in_a_second_workspace_is_read_with_its_token(oauth_settings, slack_emu, gemini_emu):
    second_workspace(slack_emu)
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        install = await install_second_workspace(slack_emu, bot.url)
        log_file = slack_emu.host_file("server.log", b"request_id=r-77 failed", mimetype="text/plain", user="U_DAN")
        d = await slack_emu.user_shares("C2_GENERAL", f"<@{install.bot_user_id}> which request failed?", [log_file],
                                        user="U_DAN")
        texts = " ".join(await answered(slack_emu, gemini_emu, "C2_GENERAL", d.message.ts))
        assert "request_id=r-77" in texts
        assert slack_emu.file_requests and all(r["authorized"] for r in slack_emu.file_requests)
    finally:
        await stop_bot(bot)


# ------------------------------------------------------------------ 7: operators
def test_deploy_has_postgresql_examples_for_oauth_mode():
    import pathlib
    import yaml
    root = pathlib.Path(__file__).parent.parent
    compose = yaml.safe_load((root / "deploy/postgres/docker-compose.oauth.yml").read_text())
    assert {"bot", "worker", "postgres"} <= set(compose["services"])
    assert "@postgres:5432/" in compose["x-oauth"]["environment"]["DATABASE_URL"]
    assert "pg_isready" in compose["services"]["postgres"]["healthcheck"]["test"]
    kinds = [d["kind"] for d in yaml.safe_load_all((root / "deploy/postgres/k8s-postgres.example.yaml").read_text())]
    assert kinds == ["Service", "StatefulSet"]
    readme = (root / "README.md").read_text()
    assert "## Many workspaces (OAuth installs)" in readme and "/slack/oauth_redirect" in readme and "pg_dump" in readme


# ------------------------------------------------------------------ 3: profiles by workspace or org
def test_a_profiles_file_may_name_a_workspace_or_an_enterprise(tmp_path):
    from slackbot.chat.intake import installing_team
    from slackbot.profiles import load_profiles
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  support: {model: gemini-3-pro-preview}\n  acme: {model: gemini-3-flash-preview}\n"
                    "channels:\n  C_HELP: support\nworkspaces:\n  T0002: support\n  E0100: acme\n")
    profiles = load_profiles(str(path))
    assert profiles.for_channel("C_ANY", None, "T0002").name == "support"
    assert profiles.for_channel("C_ANY", None, "E0100").name == "acme"
    assert profiles.for_channel("C_HELP", None, "E0100").name == "support", "a channel's own profile comes first"
    assert profiles.for_channel("C_ANY", None, "T0009") is None
    # an org-wide install's command and click name the org, whatever workspace they come from
    assert installing_team({"team_id": "T0101", "enterprise_id": "E0100", "is_enterprise_install": "true"}) == "E0100"
    assert installing_team({"team": {"id": "T0101"}, "enterprise": {"id": "E0100"}, "is_enterprise_install": True}) == "E0100"
    assert installing_team({"team_id": "T0101", "enterprise_id": "E0100", "is_enterprise_install": "false"}) == "T0101"
    path.write_text("profiles:\n  a: {}\nworkspaces:\n  general: a\n")
    with pytest.raises(ValueError, match="workspaces.general: not a workspace"):
        load_profiles(str(path))


# ------------------------------------------------------------------ 6: a browser walks "Add to Slack"
async def test_a_browser_walks_add_to_slack_to_a_working_mention(oauth_settings, slack_emu, gemini_emu):
    """Chromium opens the bot's install page, presses "Add to Slack", chooses the workspace on Slack's
    (emulated) consent page, presses Allow, and lands on the bot's redirect; the new workspace's mention
    is then answered."""
    from test_sandbox import CHROMIUM, CHROMIUM_ARGS, chromium_or_skip
    chromium_or_skip()
    from playwright.async_api import async_playwright, expect
    second_workspace(slack_emu)
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{bot.url}/slack/install")
                await page.locator("a[href*='oauth/v2/authorize']").click()
                await page.select_option("select[name=target]", "T0002")
                await page.select_option("select[name=user]", "U_DAN")
                await page.get_by_role("button", name="Allow").click()
                await page.wait_for_url(f"{bot.url}/slack/oauth_redirect*")
                await expect(page.locator("body")).not_to_contain_text("Something Went Wrong")
            finally:
                await browser.close()
        install = slack_emu.install_for("T0002")
        assert install is not None
        slack_emu.channels["C2_GENERAL"].members.add(install.bot_user_id)
        d = await slack_emu.user_message("C2_GENERAL", f"<@{install.bot_user_id}> hello from the browser", user="U_DAN")
        assert "hello from the browser" in " ".join(await answered(slack_emu, gemini_emu, "C2_GENERAL",
                                                                   d.payload["event"]["ts"]))
    finally:
        await stop_bot(bot)



# ------------------------------------------------------------------ 5: an answer in flight at the uninstall
async def test_an_answer_in_flight_at_the_uninstall_ends_quietly_and_leaves_nothing(
        oauth_settings, slack_emu, gemini_emu, redis_url, prefix):
    second_workspace(slack_emu)
    bot = await start_bot(oauth_settings(), slack_emu)
    try:
        install = await install_second_workspace(slack_emu, bot.url)
        gemini_emu.script(text=" ".join(f"word{i}" for i in range(400)), chunk_chars=4, chunk_delay=0.05)
        d = await slack_emu.user_message("C2_GENERAL", f"<@{install.bot_user_id}> a long one", user="U_DAN")
        await eventually(lambda: slack_emu.bot_messages("C2_GENERAL", d.payload["event"]["ts"]), 10,
                         message="the answer started")
        await slack_emu.oauth.uninstall("T0002")
        await eventually(lambda: idle(bot.url), 15, message="the answer ended")
        store = await open_store(redis_url, prefix)
        try:
            assert not [k for k in await store.prefix_keys() if "T0002" in k]
        finally:
            await store.close()
        texts = " ".join(m.visible_text for m in slack_emu.bot_messages("C2_GENERAL", d.payload["event"]["ts"]))
        assert "word399" not in texts
    finally:
        await stop_bot(bot)
