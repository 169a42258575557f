"""Real parts for every end-to-end test: Redis, the two emulators, and the bot served over HTTP.

Redis: REDIS_URL when it answers, else a throwaway redis-server this session starts (and stops).
Tests marked `cluster` run twice: on that node and on a real 3-master Redis Cluster this session
starts on loopback (SLACKBOT_TEST_REDIS=single skips the cluster runs). Each test writes only under
its own random key prefix and deletes exactly those keys afterwards (the store's own operation).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass

import aiohttp
import pytest

from slackbot.app import serve
from slackbot.config import Settings
from slackbot.store import Store
from slackbot_bench import redis_servers
from slackbot_emulators.gemini import GeminiEmulator
from slackbot_emulators.slack import SlackEmulator

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary_present() -> None:
    try:
        redis_servers.binary()
        redis_servers.binary("redis-cli")
    except redis_servers.RedisMissing as exc:
        pytest.fail(f"{exc}: run scripts/test, which installs it")


class RedisServer(redis_servers.RedisServer):
    """A redis-server process of our own (for tests that stop and restart it)."""

    def start(self, wait: bool = True) -> "RedisServer":
        _binary_present()
        return super().start(wait)


@pytest.fixture(scope="session")
def redis_single():
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_servers.answers(url):
        yield url
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    _binary_present()
    cluster = redis_servers.RedisClusterServers().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(request):
    """One node; or, for the `cluster` runs of tests marked `cluster`, any node of a 3-master cluster."""
    if getattr(request, "param", "single") == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return request.getfixturevalue("redis_single")


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: also run against a real 3-master Redis Cluster")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("cluster") and "redis_url" in metafunc.fixturenames:
        variants = ["single"] if os.environ.get("SLACKBOT_TEST_REDIS") == "single" else ["single", "cluster"]
        metafunc.parametrize("redis_url", variants, indirect=True, scope="session")


async def open_store(redis_url: str, prefix: str) -> Store:
    """The bot's store on this Redis (a cluster client on a cluster): tests ask it for keys."""
    return await Store.connect(redis_url, prefix)


@pytest.fixture
async def prefix(redis_url):
    """A key prefix of this test's own; its keys are deleted afterwards (and nothing else)."""
    name = f"slackbot-test-{secrets.token_hex(4)}"
    yield name
    store = await open_store(redis_url, name)
    await store.delete_prefix()
    await store.close()


@pytest.fixture
async def store(redis_url, prefix):
    """The store a bot with this test's prefix uses, on the same Redis."""
    opened = await open_store(redis_url, prefix)
    yield opened
    await opened.close()


@pytest.fixture
async def gemini_emu():
    emu = GeminiEmulator(chunk_chars=12, chunk_delay=0.01)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def slack_emu():
    emu = SlackEmulator(signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN)
    await emu.start()
    yield emu
    await emu.stop()


def bot_settings(*, redis_url: str, prefix: str, slack_emu, gemini_emu, port: int | None = None, **overrides) -> Settings:
    """Production settings with test-sized timings; everything points at local emulators."""
    values = dict(
        slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET, slack_app_token="",
        slack_api_url=slack_emu.api_url, gemini_api_key="test-key", gemini_base_url=gemini_emu.base_url,
        use_enterprise=False, gemini_model="gemini-3-flash-preview", redis_url=redis_url, redis_prefix=prefix,
        host="127.0.0.1", port=port or free_port(), edit_min_interval=0.2, turn_lease_seconds=3.0,
        gemini_retry_attempts=3, replies_wait_seconds=1.0, research_poll_initial=0.2, research_poll_max=0.5,
        research_status_every=0.3, research_lease_seconds=3.0, shutdown_grace_seconds=5.0, log_format="text",
        tools="", functions="", system_instruction="Be brief.", user_max_active_answers=100, user_turns_per_minute=1000,
        research_planning=False,  # research tests run straight to the report; test_research_plan turns it on
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Bot:
    settings: Settings
    url: str
    task: asyncio.Task
    stop: asyncio.Event


async def start_bot(settings: Settings, slack_emu=None, *, ready: bool = True) -> Bot:
    """Serve the bot in this loop; returns once /readyz is 200 (Slack took its token), or, with
    `ready=False`, as soon as it listens (/healthz)."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    url = f"http://127.0.0.1:{settings.port}"
    async with aiohttp.ClientSession() as http:
        async def answers(path: str) -> bool:
            if task.done():
                task.result()  # raises what stopped it
            try:
                async with http.get(f"{url}{path}") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False
        for path in ("/healthz", "/readyz") if ready else ("/healthz",):
            await eventually(lambda: answers(path), 10, interval=0.02, message=f"{url}{path}")
    if slack_emu is not None:
        slack_emu.app_url = f"{url}/slack/events"
    return Bot(settings, url, task, stop)


async def stop_bot(bot: Bot) -> None:
    bot.stop.set()
    await asyncio.wait_for(bot.task, 30)


@pytest.fixture
def settings_for(redis_url, prefix, slack_emu, gemini_emu):
    def make(**overrides) -> Settings:
        overrides.setdefault("redis_url", redis_url)
        return bot_settings(prefix=prefix, slack_emu=slack_emu, gemini_emu=gemini_emu, **overrides)
    return make


@pytest.fixture
async def run_bot(settings_for, slack_emu):
    """Start bots with these setting overrides (a test may start several); each is stopped after the test."""
    bots = []

    async def start(**overrides):
        bot = await start_bot(settings_for(**overrides), slack_emu)
        bots.append(bot)
        return bot
    yield start
    for bot in bots:
        await stop_bot(bot)


@pytest.fixture
async def bot(settings_for, slack_emu):
    running = await start_bot(settings_for(), slack_emu)
    yield running
    await stop_bot(running)


async def eventually(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Wait until predicate() (sync or async) is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(interval)


# --- what the bot reports about itself: positive signals to wait for ----------------------------------
def progress_shown(slack_emu, channel: str, thread_ts: str, title: str) -> bool:
    """A step of the answer's work was shown as a reader sees it: a task card on the answer's native
    stream, else the thread status ("Searching Slack…")."""
    cards = [t["title"] for st in slack_emu.streams.values() if st.thread_ts == thread_ts for t in st.task_history]
    statuses = [s["status"] for s in slack_emu.status_history(channel, thread_ts)]
    return title.rstrip("…") in cards or f"{title.rstrip('…')}…" in statuses


def bot_url(slack_emu) -> str:
    """The base URL of the bot the Slack emulator delivers to."""
    return slack_emu.app_url.removesuffix("/slack/events")


async def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples on the bot's /metrics page that carry these labels (0 when none),
    read as a Prometheus scraper reads it."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as r:
            page = await r.text()
    return sum(s.value for family in text_string_to_metric_families(page) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def events(url: str, outcome: str) -> float:
    """Slack events the bot has counted with this outcome (accepted, ignored, duplicate, redis_down)."""
    return await metric(url, "slackbot_events_total", outcome=outcome)


async def idle(url: str) -> bool:
    """True once the bot has no answer (or its tidying) in flight."""
    return await metric(url, "slackbot_work_in_flight") == 0


# --- real bot processes (crash tests) ---------------------------------------------------------------
def process_env(settings: Settings, **extra: str) -> dict:
    """The environment of a `slackbot serve` process with these (test-sized) settings."""
    env = {**os.environ, "SLACK_BOT_TOKEN": settings.bot_token, "SLACK_SIGNING_SECRET": settings.signing_secret,
           "SLACK_API_URL": settings.slack_api_url, "GEMINI_API_KEY": "test-key",
           "GEMINI_BASE_URL": settings.gemini_base_url, "REDIS_URL": settings.redis_url,
           "SLACKBOT_REDIS_PREFIX": settings.redis_prefix, "PORT": str(settings.port), "SLACKBOT_HOST": "127.0.0.1",
           "SLACKBOT_TURN_LEASE_SECONDS": str(settings.turn_lease_seconds), "SLACKBOT_LOG_LEVEL": "WARNING",
           "SLACKBOT_USER_MAX_ACTIVE_ANSWERS": "100", "SLACKBOT_USER_TURNS_PER_MINUTE": "1000",
           "SLACKBOT_EDIT_MIN_INTERVAL": str(settings.edit_min_interval), "SLACKBOT_RESEARCH_WORKER": "false",
           "SLACKBOT_RESEARCH_PLANNING": str(settings.research_planning).lower()}
    env.pop("SLACK_APP_TOKEN", None)
    env.update(extra)
    return env


def spawn_serve(settings: Settings, **extra: str) -> subprocess.Popen:
    import sys

    return subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env=process_env(settings, **extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        async def up():
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False
        await eventually(up, 30, interval=0.1, message=f"bot on {port}")


def end_processes(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
