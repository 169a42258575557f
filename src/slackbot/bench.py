"""`slackbot bench`: the real bot, as N replica processes sharing one Redis, against both emulators.

What runs where
* this process: the Slack emulator (Slack's limits on: chat.update Tier 3 50/min per team,
  chat.postMessage ~1/s per channel) and the Gemini emulator (answers stream at a realistic pace),
  plus the load generator. Deliveries go round-robin to the replicas, one delivery at a time
  (`_BenchSlack.send_signed`), so the two events Slack sends for one mention usually reach two
  different replicas, as they can in production.
* `--replicas` processes of `python -m slackbot serve`, configured only through environment
  variables, so their CPU and memory are measured on their own (psutil, /proc).
* Redis: `--redis-url` (default REDIS_URL) when it answers, else a throwaway `redis-server` on a
  free port. Every key is under a fresh random prefix, counted and deleted at the end.

Phases
A "answers": `--conversations` mentions at once, spread over `--channels` channels; waits until
  every answer is final (or failed, or nothing moves for a while, or the deadline).
B "intake": `--intake-rate` deliveries/s for `--intake-seconds`: a few new mentions and replies in
  the bot's threads (answered), replies in people's threads, channel chatter, message_changed, other
  bots' and the bot's own messages (all ignored), and Slack retries of answered events (must not be
  answered twice). Then waits for phase B's answers as for phase A.

Every user message carries a unique tag `[m000123]`; every scripted Gemini answer starts with
`Answer m000123:`. That ties Gemini's creates and the bot's Slack messages to the message they answer,
so duplicates, spurious answers and wrong final texts are counted exactly.

Prints the machine, the settings, ONE table and one JSON line. Exit 0 when the run completed
(whatever the figures), 2 on a harness failure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
TEAM = "T0001"
BOT_USER = "UBOT"
HUMANS = ("U_ALICE", "U_BOB", "U_CAROL")
_TAG = re.compile(r"\[(m\d{6})\]")
_ANSWER_TAG = re.compile(r"^Answer (m\d{6}):")

_QUESTIONS = [
    "how do I rotate the Postgres password without downtime?",
    "can you summarise the incident review from last week?",
    "what is the difference between a token bucket and a leaky bucket?",
    "write a short release note for the new export feature",
    "why would a Redis Lua script be better than MULTI/EXEC here?",
    "which flags does our deploy script accept?",
]
_WORDS = ("the replica primary standby password secret rotation window connection pool client server "
          "config rollout canary traffic budget queue token bucket latency percentile retry backoff "
          "deploy release note feature export incident review owner timeline metric alert dashboard "
          "cache shard lock lease worker thread message answer stream edit final draft check").split()


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=100, help="phase A: concurrent mentions (default 100)")
    parser.add_argument("--replicas", type=int, default=2, help="bot processes sharing Redis (default 2)")
    parser.add_argument("--stream-seconds", type=float, default=20.0, help="length of each Gemini answer (default 20)")
    parser.add_argument("--intake-rate", type=float, default=200.0, help="phase B deliveries per second (default 200)")
    parser.add_argument("--intake-seconds", type=float, default=30.0, help="phase B duration (default 30)")
    parser.add_argument("--channels", type=int, default=20, help="channels the mentions are spread over (default 20)")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to share (default REDIS_URL, else redis://127.0.0.1:6379/0); "
                             "if it does not answer, a throwaway redis-server is started")
    parser.add_argument("--chars-per-second", type=float, default=60.0, help="Gemini pace (default 60)")
    parser.add_argument("--chunk-seconds", type=float, default=0.25, help="seconds between Gemini chunks (default 0.25)")
    parser.add_argument("--first-token", type=float, default=0.8,
                        help="mean first-token delay in s; each answer gets +-50%% (default 0.8)")
    parser.add_argument("--mention-share", type=float, default=0.0025,
                        help="phase B: share of deliveries that are new mentions (each mention is 2 deliveries)")
    parser.add_argument("--chain-reply-share", type=float, default=0.0025,
                        help="phase B: share of deliveries that are replies in the bot's threads (answered)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--details", default=None, metavar="PATH",
                        help="also write one JSON line per expected answer (timings, edits, status) to PATH")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_Bench(args).main())
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slackbot.bench", description="slackbot load benchmark")
    add_arguments(parser)
    return run(parser.parse_args(argv))


class HarnessError(Exception):
    """The benchmark itself could not run (not a bad figure)."""


# ------------------------------------------------------------------------------------------ helpers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _round(value, digits=3):
    return None if value is None else round(value, digits)


def _fmt(value, digits=2, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _squash(text: str) -> str:
    return "".join(text.split())


def _visible(text: str, blocks) -> str:
    parts = [b.get("text", "") for b in blocks or [] if isinstance(b, dict) and b.get("type") == "markdown"]
    return "\n".join(parts) if parts else text


def _machine() -> dict:
    import psutil

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "cpu_model": model or platform.processor() or "unknown",
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def _answer_text(tok: str, n_chars: int, rng: random.Random) -> str:
    """A Markdown answer of about n_chars: paragraphs, a list, a code block when long enough."""
    def sentence() -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
        return " ".join(words).capitalize() + "."

    out = f"Answer {tok}:"
    added_list = added_code = False
    while len(out) < n_chars:
        room = n_chars - len(out)
        if not added_list and len(out) > n_chars * 0.3 and room > 300:
            out += "\n\n" + "\n".join(f"- {sentence()}" for _ in range(3)) + "\n\n" + sentence()
            added_list = True
        elif not added_code and len(out) > n_chars * 0.6 and room > 120:
            out += "\n\n```bash\n" + f"psql -c \"ALTER ROLE app PASSWORD '{tok}'\"\n" + "```\n\n" + sentence()
            added_code = True
        elif room < 100:  # the last sentence, cut to fit
            words = sentence().split()
            while len(words) > 2 and len(" ".join(words)) + 1 > room:
                words.pop()
            out += " " + " ".join(words).rstrip(".") + "."
            break
        elif rng.random() < 0.25:
            out += "\n\n" + sentence()
        else:
            out += " " + sentence()
    return out.strip()


@dataclass
class Expected:
    """A user message the bot must answer exactly once."""

    tok: str
    phase: str  # A | B
    kind: str  # mention | chain_reply
    channel: str
    root: str  # thread the answer goes to
    sent_wall: float = 0.0
    previous: str | None = None  # chain head the answer must continue (chain replies)


@dataclass
class Replica:
    index: int
    port: int
    proc: subprocess.Popen
    log_path: str
    ps: object = None
    cpu0: float = 0.0
    cpu_a: float = 0.0
    cpu_end: float = 0.0
    rss_peak_mb: float = 0.0
    rss_sampled_mb: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Acks:
    rows: list = field(default_factory=list)  # (phase, kind, status, latency s, error)

    def add(self, phase: str, kind: str, delivery) -> None:
        self.rows.append((phase, kind, delivery.status, delivery.latency, delivery.error,
                          time.time() - delivery.latency))

    def stats(self, phase: str) -> dict:
        lat = [r[3] * 1000 for r in self.rows if r[0] == phase and r[2] != 0]
        rows = [r for r in self.rows if r[0] == phase]
        return {"n": len(rows), "p50_ms": _round(_pct(lat, 0.5), 1), "p99_ms": _round(_pct(lat, 0.99), 1),
                "max_ms": _round(max(lat), 1) if lat else None,
                "non_200": sum(1 for r in rows if r[2] != 200),
                "over_3s": sum(1 for r in rows if r[3] > 3.0),
                "statuses": dict(Counter(str(r[2]) for r in rows)),
                "by_kind": dict(Counter(r[1] for r in rows))}


def _bench_slack_class():
    from .emulators.slack import SlackEmulator

    class BenchSlack(SlackEmulator):
        """The emulator, delivering round-robin to several replicas, remembering when each bot post landed."""

        def __init__(self, **kw):
            super().__init__(**kw)
            self.app_urls: list[str] = []
            self._next_replica = 0
            self.posted: dict[tuple[str, str], tuple[float, str]] = {}  # (channel, ts) -> (wall, visible text)

        async def send_signed(self, body, content_type, headers=None, **kw):
            if self.app_urls:  # read synchronously by the base method before its first await
                self.app_url = self.app_urls[self._next_replica % len(self.app_urls)]
                self._next_replica += 1
            return await super().send_signed(body, content_type, headers, **kw)

        def _store(self, msg):
            if msg.bot_id == self.bot_id:
                self.posted[(msg.channel, msg.ts)] = (time.time(), msg.visible_text)
            return super()._store(msg)

    return BenchSlack


# ------------------------------------------------------------------------------------------ the run

class _Bench:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.rng = random.Random(args.seed)
        self.prefix = f"slackbot-bench-{secrets.token_hex(4)}"
        self.tmp = tempfile.mkdtemp(prefix="slackbot-bench-")
        self.replicas: list[Replica] = []
        self.redis_proc: subprocess.Popen | None = None
        self.redis_url = ""
        self.redis = None
        self.slack = None
        self.gemini = None
        self.acks = Acks()
        self.expected: dict[str, Expected] = {}
        self.unanswerable: set[str] = set()
        self.n_tok = 0
        self.times: dict[str, float] = {}
        self.notes: list[str] = []
        self._out_text: dict[str, str] = {}
        self.phase = "setup"
        self.loop_stall: dict[str, float] = {}  # phase -> longest the bench's own event loop was late (s)
        self._input_tok: dict[str, str | None] = {}

    # --- orchestration -------------------------------------------------------------------
    async def main(self) -> int:
        started = time.monotonic()
        try:
            self._validate()
            # The answer checks need the bot's message constants; importing them pulls in google.genai
            # (~1 s of blocking imports). Done here, before any timing, not in the middle of phase A.
            from .chat.turns import FAILURE_LINES, STORE_DOWN
            from .slack_out.streamer import EMPTY_ANSWER, PLACEHOLDER

            self.stops = [PLACEHOLDER, EMPTY_ANSWER, STORE_DOWN, *FAILURE_LINES.values()]
            self.placeholder = PLACEHOLDER
            machine = _machine()
            await self._start_redis()
            await self._start_emulators()
            settings = self._bot_settings()
            self._print_header(machine, settings)
            await self._start_replicas()
            await self._warm_up()
            gc.collect()
            gc.freeze()  # the imports and emulators stay put: later full collections skip them (shorter stalls)
            sampler = asyncio.create_task(self._sample_rss())
            watcher = asyncio.create_task(self._watch_loop())
            self._cpu_mark("cpu0")
            self.phase = "A"
            self.times["a_start"] = time.monotonic()
            await self._phase_a()
            self.times["a_end"] = time.monotonic()
            self._cpu_mark("cpu_a")
            self.phase = "B"
            self.times["b_start"] = time.monotonic()
            await self._phase_b()
            self.times["b_end"] = time.monotonic()
            await asyncio.sleep(2.0)  # anything late (a duplicate) still lands
            self._cpu_mark("cpu_end")
            self._read_peak_rss()
            sampler.cancel()
            watcher.cancel()
            await self._stop_replicas()
            redis_keys = await self._redis_keys()
            figures = self._figures(machine, settings, redis_keys, time.monotonic() - started)
            self._print_table(figures)
            print(json.dumps(figures, separators=(",", ":")), flush=True)
            return 0
        except HarnessError as exc:
            print(f"slackbot bench: harness failure: {exc}", file=sys.stderr, flush=True)
            self._dump_logs()
            return 2
        except Exception as exc:  # a bug in the harness is a harness failure, with its traceback
            import traceback

            traceback.print_exc()
            print(f"slackbot bench: harness failure: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            self._dump_logs()
            return 2
        finally:
            await self._cleanup()

    def _validate(self) -> None:
        a = self.a
        if a.conversations < 1 or a.replicas < 1 or a.channels < 1:
            raise HarnessError("--conversations, --replicas and --channels must be >= 1")
        if a.stream_seconds <= 0 or a.intake_rate <= 0 or a.intake_seconds < 0 or a.chars_per_second <= 0:
            raise HarnessError("--stream-seconds, --intake-rate, --chars-per-second must be > 0")

    def _cpu_mark(self, name: str) -> None:
        for r in self.replicas:
            try:
                t = r.ps.cpu_times()
                setattr(r, name, t.user + t.system)
            except Exception:  # the process died: keep the last figure
                pass

    # --- Redis ---------------------------------------------------------------------------------
    async def _start_redis(self) -> None:
        import redis.asyncio as aioredis

        url = self.a.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        if not await self._redis_answers(url):
            binary = shutil.which("redis-server")
            if not binary:
                raise HarnessError(f"Redis at {url} does not answer and redis-server is not installed")
            port = _free_port()
            self.redis_proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while not await self._redis_answers(url):
                if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                    raise HarnessError("throwaway redis-server did not start")
                await asyncio.sleep(0.05)
            self.notes.append(f"started a throwaway redis-server on port {port}")
        self.redis_url = url
        self.redis = aioredis.from_url(url, decode_responses=True)

    @staticmethod
    async def _redis_answers(url: str) -> bool:
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()

    async def _redis_keys(self) -> dict:
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
        no_ttl: list[str] = []
        kinds: Counter = Counter()
        for k in keys:
            kinds[k[len(self.prefix) + 1:].split(":", 1)[0]] += 1
            if await self.redis.ttl(k) == -1:
                no_ttl.append(k)
        return {"total": len(keys), "no_ttl": len(no_ttl), "no_ttl_examples": no_ttl[:5], "by_kind": dict(kinds)}

    # --- emulators -------------------------------------------------------------------------------
    async def _start_emulators(self) -> None:
        from .emulators.gemini import GeminiEmulator
        from .emulators.slack import Channel

        a = self.a
        self.chunk_chars = max(1, round(a.chars_per_second * a.chunk_seconds))
        self.gemini = GeminiEmulator(chunk_chars=self.chunk_chars, chunk_delay=a.chunk_seconds,
                                     first_token_delay=a.first_token)
        await self.gemini.start("127.0.0.1", 0)
        self.slack = _bench_slack_class()(signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN, team_id=TEAM,
                                          bot_user_id=BOT_USER, rate_limits=True)
        await self.slack.start("127.0.0.1", 0)
        self.channel_ids = [f"C_BENCH{i:03d}" for i in range(a.channels)]
        for cid in self.channel_ids:  # the bot is a member, as after /invite
            self.slack.channels[cid] = Channel(cid, cid.lower(), False, set(HUMANS) | {BOT_USER})

    def _bot_env(self, port: int) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("SLACK_APP_TOKEN", "GOOGLE_GENAI_USE_ENTERPRISE", "HTTP_PROXY", "HTTPS_PROXY",
                            "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")}
        env.update({
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": "",
            "SLACK_API_URL": self.slack.api_url, "GEMINI_API_KEY": "bench-key",
            "GEMINI_BASE_URL": self.gemini.base_url, "GOOGLE_GENAI_USE_ENTERPRISE": "false",
            "REDIS_URL": self.redis_url, "PORT": str(port), "SLACKBOT_HOST": "127.0.0.1",
            "SLACKBOT_REDIS_PREFIX": self.prefix, "SLACKBOT_LOG_LEVEL": "WARNING", "SLACKBOT_LOG_FORMAT": "json",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        return env

    def _bot_settings(self):
        """The settings the replicas will run with (same environment, read the same way)."""
        from .config import Settings

        env = self._bot_env(0)
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update({**env, "PORT": "3000"})
            return Settings(_env_file=None)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # --- replicas -----------------------------------------------------------------------------------
    async def _start_replicas(self) -> None:
        import aiohttp
        import psutil

        for i in range(self.a.replicas):
            port = _free_port()
            log_path = os.path.join(self.tmp, f"replica-{i}.log")
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env=self._bot_env(port),
                                        cwd=self.tmp, stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            self.replicas.append(Replica(i, port, proc, log_path, ps=psutil.Process(proc.pid)))
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for r in self.replicas:
                while True:
                    if r.proc.poll() is not None:
                        raise HarnessError(f"replica {r.index} exited with {r.proc.returncode} while starting")
                    try:
                        async with http.get(f"{r.url}/readyz") as resp:
                            if resp.status == 200:
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        pass
                    if time.monotonic() > deadline:
                        raise HarnessError(f"replica {r.index} not ready after 60 s")
                    await asyncio.sleep(0.1)
        self.slack.app_urls = [f"{r.url}/slack/events" for r in self.replicas]

    async def _warm_up(self) -> None:
        """People's threads for phase B, delivered one by one: also gives every replica its first
        request (Bolt's auth.test) before the measured phases."""
        self.people_threads: list[tuple[str, str]] = []
        n = max(self.a.replicas, 2 * len(self.channel_ids))
        for i in range(n):
            ch = self.channel_ids[i % len(self.channel_ids)]
            tok = self._tok(answerable=False)
            d = await self.slack.user_message(ch, f"standup notes {tok}: nothing blocking today", user="U_BOB")
            self.acks.add("warmup", "chatter", d)
            self.people_threads.append((ch, d.message.ts))

    async def _sample_rss(self) -> None:
        while True:
            for r in self.replicas:
                try:
                    r.rss_sampled_mb = max(r.rss_sampled_mb, r.ps.memory_info().rss / 2**20)
                except Exception:
                    pass
            await asyncio.sleep(0.5)

    async def _watch_loop(self) -> None:
        """How late this process' own loop runs: ack latencies include it, so it is reported with them."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            late = loop.time() - before - 0.01
            if late > self.loop_stall.get(self.phase, 0.0):
                self.loop_stall[self.phase] = late

    def _read_peak_rss(self) -> None:
        for r in self.replicas:
            r.rss_peak_mb = r.rss_sampled_mb
            try:
                with open(f"/proc/{r.proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            r.rss_peak_mb = max(r.rss_peak_mb, int(line.split()[1]) / 1024)
            except OSError:
                pass

    async def _stop_replicas(self) -> None:
        for r in self.replicas:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in self.replicas:
            try:
                await asyncio.to_thread(r.proc.wait, 40)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                await asyncio.to_thread(r.proc.wait, 5)
                self.notes.append(f"replica {r.index} did not stop on SIGTERM within 40 s: killed")

    # --- messages ---------------------------------------------------------------------------------
    def _tok(self, *, answerable: bool) -> str:
        self.n_tok += 1
        tok = f"m{self.n_tok:06d}"
        if not answerable:
            self.unanswerable.add(tok)
        return tok

    def _script_answer(self, tok: str) -> None:
        a = self.a
        jitter = self.rng.uniform(0.9, 1.1)
        n_chars = max(2 * self.chunk_chars, round(a.chars_per_second * a.stream_seconds * jitter))
        self.gemini.script(match=f"[{tok}]", text=_answer_text(tok, n_chars, self.rng),
                           chunk_chars=self.chunk_chars, chunk_delay=a.chunk_seconds,
                           first_token_delay=a.first_token * self.rng.uniform(0.5, 1.5))

    async def _mention(self, phase: str, channel: str) -> list:
        tok = self._tok(answerable=True)
        self._script_answer(tok)
        exp = Expected(tok, phase, "mention", channel, "", sent_wall=time.time())
        d = await self.slack.user_message(channel, f"<@{BOT_USER}> [{tok}] {self.rng.choice(_QUESTIONS)}",
                                          user=self.rng.choice(HUMANS))
        exp.root = d.message.ts
        self.expected[tok] = exp
        for x in d.all:
            self.acks.add(phase, "mention", x)
        return d.all

    async def _chain_reply(self, channel: str, root: str, head: str) -> list:
        tok = self._tok(answerable=True)
        self._script_answer(tok)
        self.expected[tok] = Expected(tok, "B", "chain_reply", channel, root, sent_wall=time.time(), previous=head)
        d = await self.slack.user_message(channel, f"[{tok}] and what about the standby?", thread_ts=root,
                                          user=self.rng.choice(HUMANS))
        self.acks.add("B", "chain_reply", d)
        return d.all

    # --- phase A ------------------------------------------------------------------------------------
    async def _phase_a(self) -> None:
        chans = self.channel_ids
        await asyncio.gather(*(self._mention("A", chans[i % len(chans)]) for i in range(self.a.conversations)))
        await self._wait_answers("A")

    def _deadline_for(self, n_answers: int) -> float:
        # generous: the stream itself, then the final edits at Slack's Tier 3 pace (with slack)
        return 1.5 * self.a.first_token + 1.1 * self.a.stream_seconds + 60 + 3.0 * n_answers

    async def _wait_answers(self, phase: str, quiet: float = 20.0) -> None:
        toks = [t for t, e in self.expected.items() if e.phase == phase]
        deadline = time.monotonic() + self._deadline_for(len(toks))
        last_sig, last_change = None, time.monotonic()
        while True:
            results = self._answer_results()
            if all(results[t]["terminal"] for t in toks):
                return
            sig = (len(self.slack.calls), len(self.gemini.interaction_ids()))
            if sig != last_sig:
                last_sig, last_change = sig, time.monotonic()
            if time.monotonic() - last_change > quiet:
                self.notes.append(f"phase {phase}: nothing moved for {quiet:.0f} s; stopped waiting")
                return
            if time.monotonic() > deadline:
                self.notes.append(f"phase {phase}: deadline reached with answers still open")
                return
            await asyncio.sleep(0.5)

    # --- phase B ------------------------------------------------------------------------------------
    async def _phase_b(self) -> None:
        a = self.a
        ticks = int(round(a.intake_rate * a.intake_seconds))
        heads = []
        for tok, e in self.expected.items():
            if e.phase == "A":
                head = await self.redis.get(f"{self.prefix}:chain:{TEAM}:{e.channel}:{e.root}")
                if head:
                    heads.append((e.channel, e.root, head))
        self.rng.shuffle(heads)
        schedule: list[str | None] = [""] * ticks
        if ticks:
            n_mention = max(1, round(ticks * a.mention_share / 2))
            n_chain = min(len(heads), max(1, round(ticks * a.chain_reply_share)))
            for k in range(n_mention):
                self._place(schedule, int((k + 0.5) * ticks / n_mention), "mention", width=2)
            for k in range(n_chain):
                self._place(schedule, int((k + 0.25) * ticks / n_chain), "chain_reply")
        fillers = [("thread_reply", 0.30), ("chatter", 0.25), ("edited", 0.20), ("bot_message", 0.10),
                   ("own_echo", 0.15)]
        for i, kind in enumerate(schedule):
            if kind == "":
                schedule[i] = self.rng.choices([k for k, _ in fillers], [w for _, w in fillers])[0]
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        chain_iter = iter(heads)
        start = loop.time()
        lag = 0.0
        for i, kind in enumerate(schedule):
            if kind is None:
                continue  # the second delivery of a mention
            due = start + i / a.intake_rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            lag = max(lag, loop.time() - due)
            if kind == "chain_reply":
                task = asyncio.create_task(self._chain_reply(*next(chain_iter)))
                task.add_done_callback(lambda t: self._retry_later(t, tasks))
            elif kind == "mention":
                task = asyncio.create_task(self._mention("B", self.rng.choice(self.channel_ids)))
                task.add_done_callback(lambda t: self._retry_later(t, tasks))
            else:
                task = asyncio.create_task(self._ignorable(kind))
            tasks.add(task)
        self.times["b_intake_wall"] = loop.time() - start
        self.times["b_generator_max_lag"] = lag
        await asyncio.sleep(1.5)  # the retries scheduled by the last answered messages
        if tasks:
            await asyncio.wait(set(tasks), timeout=30)
        await self._wait_answers("B")

    @staticmethod
    def _place(schedule: list, pos: int, kind: str, width: int = 1) -> None:
        n = len(schedule)
        for step in range(n):
            p = (pos + step) % n
            if all(p + j < n and schedule[p + j] == "" for j in range(width)):
                schedule[p] = kind
                for j in range(1, width):
                    schedule[p + j] = None
                return

    def _retry_later(self, done: asyncio.Task, tasks: set) -> None:
        """Slack redelivers an event it thinks was not acked in time: the bot must not answer twice."""
        if done.cancelled() or done.exception() or not done.result():
            return
        delivery = done.result()[0]
        if not delivery.event_id:
            return

        async def retry():
            await asyncio.sleep(1.0)
            d = await self.slack.redeliver(delivery, retry_num=1, retry_reason="http_timeout")
            self.acks.add("B", "retry", d)
        tasks.add(asyncio.create_task(retry()))

    async def _ignorable(self, kind: str) -> None:
        ch = self.rng.choice(self.channel_ids)
        tok = self._tok(answerable=False)
        ts = f"{time.time():.6f}"
        if kind == "thread_reply":
            ch, root = self.rng.choice(self.people_threads)
            d = await self.slack.user_message(ch, f"[{tok}] +1, I can take the review", thread_ts=root,
                                              user=self.rng.choice(HUMANS))
        elif kind == "chatter":
            d = await self.slack.user_message(ch, f"[{tok}] lunch at noon?", user=self.rng.choice(HUMANS))
        elif kind == "edited":
            orig = {"type": "message", "user": "U_CAROL", "text": f"[{tok}] typo", "ts": ts}
            d = await self.slack.deliver_event({
                "type": "message", "subtype": "message_changed", "hidden": True, "channel": ch,
                "channel_type": "channel", "ts": ts, "event_ts": ts, "team": TEAM,
                "message": {**orig, "text": f"[{tok}] typo fixed", "edited": {"user": "U_CAROL", "ts": ts}},
                "previous_message": orig})
        elif kind == "bot_message":
            d = await self.slack.deliver_event({
                "type": "message", "subtype": "bot_message", "bot_id": "B_OTHER", "username": "deploybot",
                "text": f"[{tok}] deploy finished <@{BOT_USER}>", "ts": ts, "event_ts": ts, "channel": ch,
                "channel_type": "channel", "team": TEAM})
        else:  # own_echo: Slack sends the bot its own messages
            d = await self.slack.deliver_event({
                "type": "message", "user": BOT_USER, "bot_id": self.slack.bot_id, "app_id": self.slack.app_id,
                "bot_profile": {"id": self.slack.bot_id, "app_id": self.slack.app_id, "name": "bot",
                                "team_id": TEAM},
                "text": f"[{tok}] Answer text", "ts": ts, "event_ts": ts, "channel": ch, "channel_type": "channel",
                "thread_ts": f"{time.time() - 5:.6f}", "team": TEAM})
        self.acks.add("B", kind, d)

    # --- reading the outcome -------------------------------------------------------------------------
    def _interactions(self) -> dict[str, list[str]]:
        """tag -> ids of the interactions created for it (the input's last tag is the new message)."""
        by_tok: dict[str, list[str]] = {}
        for iid in self.gemini.interaction_ids():
            if iid not in self._input_tok:
                info = self.gemini.interaction(iid)
                tags = _TAG.findall(info["input_text"])
                self._input_tok[iid] = tags[-1] if tags else None
                self._out_text[iid] = info["output_text"]
            by_tok.setdefault(self._input_tok[iid] or "-", []).append(iid)
        return by_tok

    def _segments(self, channel: str, root: str) -> tuple[dict[str, list], int]:
        """The thread's bot messages grouped per answer: tag -> [segments], plus untagged segments."""
        stops = self.stops
        tagged: dict[str, list] = {}
        untagged = 0
        current = None
        for msg in self.slack.bot_messages(channel, root):
            text = msg.visible_text
            m = _ANSWER_TAG.match(text)
            if m:
                current = [msg]
                tagged.setdefault(m.group(1), []).append(current)
            elif current is not None and not any(s in text for s in stops):
                current.append(msg)  # the continuation of a long answer
            else:
                current = None
                untagged += 1
        return tagged, untagged

    def _answer_results(self) -> dict[str, dict]:
        stops = self.stops
        creates = self._interactions()
        cache: dict[tuple[str, str], tuple[dict, int]] = {}
        out: dict[str, dict] = {}
        for tok, e in self.expected.items():
            key = (e.channel, e.root)
            if key not in cache:
                cache[key] = self._segments(*key)
            tagged, _ = cache[key]
            ids = creates.get(tok, [])
            segs = tagged.get(tok, [])
            r = {"creates": len(ids), "segments": len(segs), "interaction": ids[0] if ids else None}
            if not segs:
                r["status"] = "failed"
                r["terminal"] = False
                out[tok] = r
                continue
            msgs = segs[0]
            final = "\n".join(m.visible_text for m in msgs)
            want = self._out_text.get(ids[0], "") if ids else ""
            if any(s in final for s in stops):
                r["status"], r["terminal"] = "failed", True
            elif final == want or _squash(final) == _squash(want):
                r["status"], r["terminal"] = "ok", True
                r["exact"] = final == want
            elif _squash(want).startswith(_squash(final)):
                r["status"], r["terminal"] = "incomplete", False
            else:
                r["status"], r["terminal"] = "wrong", False
            r["messages"] = [(m.channel, m.ts) for m in msgs]
            r["edits"] = sum(len(m.edits) for m in msgs)
            out[tok] = r
        return out

    def _msgs(self, refs: list[tuple[str, str]]) -> list:
        return [m for ch, ts in refs for m in self.slack.channels[ch].messages if m.ts == ts]

    def _first_visible(self, msgs: list[tuple[str, str]]) -> tuple[float | None, float | None]:
        """(first time non-placeholder text was visible, time the last change landed) for an answer."""
        first, last = None, None
        for ch, ts in msgs:
            msg = next((m for m in self.slack.channels[ch].messages if m.ts == ts), None)
            posted = self.slack.posted.get((ch, ts))
            if msg is None or posted is None:
                continue
            changes = [posted] + [(t, _visible(text, blocks)) for t, text, blocks in msg.edits]
            for t, text in changes:
                if text.strip() not in ("", "…", self.placeholder):
                    first = t if first is None else min(first, t)
                    break
            last = max(last or 0.0, changes[-1][0])
        return first, last

    # --- figures -------------------------------------------------------------------------------------
    def _figures(self, machine: dict, settings, redis_keys: dict, wall: float) -> dict:
        results = self._answer_results()
        creates = self._interactions()
        statuses = Counter(r["status"] for r in results.values())
        first_text, final_lag, e2e_first, edits = [], [], [], []
        chain_errors = 0
        details = []
        for tok, r in results.items():
            e = self.expected[tok]
            row = {"tok": tok, "phase": e.phase, "kind": e.kind, "channel": e.channel, "root": e.root,
                   "status": r["status"], "creates": r["creates"], "segments": r["segments"], "sent": e.sent_wall}
            if r.get("messages"):
                edits.append(r["edits"])
                info = self.gemini.interaction(r["interaction"]) if r["interaction"] else {}
                first, last = self._first_visible(r["messages"])
                row.update(edits=r["edits"], first_visible=first, last_change=last,
                           first_text_sent=info.get("first_text_sent"), last_event_sent=info.get("last_event_sent"),
                           gemini_created=self.gemini._records[r["interaction"]].wall0 if r["interaction"] else None,
                           posted=[self.slack.posted.get(m) for m in r["messages"]],
                           edit_times=[[t for t, _, _ in msg.edits] for msg in self._msgs(r["messages"])],
                           edit_chars=[[len(_visible(x, b)) for _, x, b in msg.edits] for msg in self._msgs(r["messages"])],
                           answer_chars=len(self._out_text.get(r["interaction"], "")))
                if first is not None and info.get("first_text_sent"):
                    first_text.append(first - info["first_text_sent"])
                if first is not None:
                    e2e_first.append(first - e.sent_wall)
                if r["status"] == "ok" and last is not None and info.get("last_event_sent"):
                    final_lag.append(last - info["last_event_sent"])
            details.append(row)
            if e.kind == "chain_reply" and r["interaction"]:
                prev = self.gemini.interaction(r["interaction"])["previous_interaction_id"]
                chain_errors += prev != e.previous
        if self.a.details:
            with open(self.a.details, "w") as fh:
                for row in details:
                    fh.write(json.dumps(row) + "\n")
                for phase, kind, status, latency, error, at in self.acks.rows:
                    if latency > 0.2 or status != 200:
                        fh.write(json.dumps({"slow_ack": kind, "phase": phase, "status": status, "at": at,
                                             "latency": latency, "error": error}) + "\n")
        placeholder_first = sum(1 for r in results.values() if r.get("messages")
                                and (self.slack.posted.get(tuple(r["messages"][0])) or (0, ""))[1] == self.placeholder)
        duplicates = sum(1 for r in results.values() if r["creates"] > 1 or r["segments"] > 1)
        spurious_creates = sum(len(ids) for tok, ids in creates.items() if tok not in self.expected)
        answer_roots = {(e.channel, e.root) for e in self.expected.values()}
        spurious_posts = sum(1 for m in self.slack.bot_messages()
                             if (m.channel, m.thread_ts or m.ts) not in answer_roots)
        untagged = sum(self._segments(*k)[1] for k in answer_roots)
        calls = self.slack.calls
        r429 = Counter(c.method for c in calls if c.status == 429)
        n_answers = len(self.expected)
        cpu_total = sum(r.cpu_end - r.cpu0 for r in self.replicas)
        cpu_a = sum(r.cpu_a - r.cpu0 for r in self.replicas)
        cpu_b = sum(r.cpu_end - r.cpu_a for r in self.replicas)
        n_a = sum(1 for e in self.expected.values() if e.phase == "A")
        b_deliveries = sum(1 for row in self.acks.rows if row[0] == "B")
        logs = self._log_summary()
        return {
            "conversations": self.a.conversations, "replicas": self.a.replicas, "channels": self.a.channels,
            "stream_seconds": self.a.stream_seconds, "intake_rate": self.a.intake_rate,
            "intake_seconds": self.a.intake_seconds,
            "answers": {"expected": n_answers, "phase_a": n_a, "phase_b": n_answers - n_a,
                        "ok": statuses.get("ok", 0), "exact": sum(1 for r in results.values() if r.get("exact")),
                        "failed": statuses.get("failed", 0), "incomplete": statuses.get("incomplete", 0),
                        "wrong_text": statuses.get("wrong", 0), "duplicates": duplicates,
                        "spurious_creates": spurious_creates, "spurious_posts": spurious_posts,
                        "untagged_bot_messages": untagged, "chain_errors": chain_errors,
                        "placeholder_first": placeholder_first,
                        "gemini_creates": sum(len(v) for v in creates.values())},
            "ack_ms": {"A": self.acks.stats("A"), "B": self.acks.stats("B")},
            "intake": {"deliveries": b_deliveries, "wall_s": _round(self.times.get("b_intake_wall"), 2),
                       "achieved_rate": _round(b_deliveries / self.times["b_intake_wall"], 1)
                       if self.times.get("b_intake_wall") else None,
                       "generator_max_lag_ms": _round(1000 * self.times.get("b_generator_max_lag", 0.0), 1)},
            "bench_loop_max_stall_ms": {k: _round(1000 * v, 1) for k, v in self.loop_stall.items()},
            "first_text_s": {"n": len(first_text), "p50": _round(_pct(first_text, 0.5)),
                             "p95": _round(_pct(first_text, 0.95)),
                             "max": _round(max(first_text)) if first_text else None},
            "message_to_first_text_s": {"p50": _round(_pct(e2e_first, 0.5)), "p95": _round(_pct(e2e_first, 0.95))},
            "gemini_done_to_final_s": {"n": len(final_lag), "p50": _round(_pct(final_lag, 0.5)),
                                       "p95": _round(_pct(final_lag, 0.95)),
                                       "max": _round(max(final_lag)) if final_lag else None},
            "edits_per_answer": {"mean": _round(statistics.mean(edits), 2) if edits else None,
                                 "max": max(edits) if edits else None},
            "slack_calls": dict(Counter(c.method for c in calls)),
            "slack_429": {"total": sum(r429.values()), "by_method": dict(r429)},
            "bot_cpu_s": {"total": _round(cpu_total, 2), "phase_a": _round(cpu_a, 2), "phase_b": _round(cpu_b, 2),
                          "per_answer": _round(cpu_total / n_answers, 3) if n_answers else None,
                          "per_answer_phase_a": _round(cpu_a / n_a, 3) if n_a else None,
                          "per_1000_deliveries_phase_b": _round(1000 * cpu_b / b_deliveries, 2)
                          if b_deliveries else None},
            "peak_rss_mb": [_round(r.rss_peak_mb, 1) for r in self.replicas],
            "redis_keys": redis_keys,
            "durations_s": {"phase_a": _round(self.times["a_end"] - self.times["a_start"], 1),
                            "phase_b": _round(self.times["b_end"] - self.times["b_start"], 1),
                            "total": _round(wall, 1)},
            "bot_log": logs,
            "notes": self.notes,
            "machine": machine,
            "bot_settings": self._settings_summary(settings),
        }

    def _log_summary(self) -> dict:
        counts: Counter = Counter()
        for r in self.replicas:
            try:
                with open(r.log_path, errors="replace") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                            counts[f"{rec.get('level')}: {rec.get('msg')}"] += 1
                        except ValueError:
                            if line.strip():
                                counts["(non-JSON line)"] += 1
            except OSError:
                pass
        return dict(counts.most_common(12))

    @staticmethod
    def _settings_summary(s) -> dict:
        names = ["edit_budget_per_minute", "edit_budget_burst", "edit_final_reserve", "edit_min_interval",
                 "post_per_channel_per_second", "post_burst", "placeholder_after_seconds", "message_chars",
                 "thread_lock_seconds", "research_worker"]
        return {n: getattr(s, n) for n in names}

    # --- output --------------------------------------------------------------------------------------
    def _print_header(self, machine: dict, settings) -> None:
        a = self.a
        print(f"machine: {machine['cores']} cores ({machine['physical_cores']} physical), {machine['cpu_model']}, "
              f"{machine['ram_gb']} GB RAM, {machine['os']}, Python {machine['python']}")
        print(f"bench: conversations={a.conversations} replicas={a.replicas} channels={a.channels} "
              f"stream_seconds={a.stream_seconds:g} intake_rate={a.intake_rate:g}/s intake_seconds={a.intake_seconds:g} "
              f"gemini={a.chars_per_second:g} chars/s in {self.chunk_chars}-char chunks every {a.chunk_seconds:g} s, "
              f"first token {a.first_token * 0.5:g}-{a.first_token * 1.5:g} s; "
              f"phase B answered shares: mentions {a.mention_share:g}, thread replies {a.chain_reply_share:g}; "
              f"seed={a.seed}")
        print("bot: " + " ".join(f"{k}={v}" for k, v in self._settings_summary(settings).items())
              + f"; redis={self.redis_url} prefix={self.prefix}")
        print("slack emulator limits: chat.update 50/min per team (burst 50), chat.postMessage 60/min per "
              "channel (burst 5), conversations.replies 1/min", flush=True)

    def _print_table(self, f: dict) -> None:
        A, B = f["ack_ms"]["A"], f["ack_ms"]["B"]
        ans = f["answers"]
        r429 = f["slack_429"]
        by = r429["by_method"]
        rows = [
            ("conversations (phase A)", f"{f['conversations']}"),
            ("replicas", f"{f['replicas']}"),
            ("answers expected (A + B)", f"{ans['phase_a']} + {ans['phase_b']}"),
            ("phase A / B duration (s)", f"{_fmt(f['durations_s']['phase_a'], 1)} / {_fmt(f['durations_s']['phase_b'], 1)}"),
            ("ack p50 / p99 (ms), A burst", f"{_fmt(A['p50_ms'], 1)} / {_fmt(A['p99_ms'], 1)}  "
                                            f"(n={A['n']}, non-200={A['non_200']}, >3s={A['over_3s']})"),
            ("ack p50 / p99 (ms), B sustained", f"{_fmt(B['p50_ms'], 1)} / {_fmt(B['p99_ms'], 1)}  "
                                                f"(n={B['n']} at {_fmt(f['intake']['achieved_rate'], 1)}/s, "
                                                f"non-200={B['non_200']}, >3s={B['over_3s']})"),
            ("bench loop max stall A / B (ms)", f"{_fmt(f['bench_loop_max_stall_ms'].get('A'), 1)} / "
                                                f"{_fmt(f['bench_loop_max_stall_ms'].get('B'), 1)}"),
            ("first token -> first visible p50 / p95 (s)",
             f"{_fmt(f['first_text_s']['p50'])} / {_fmt(f['first_text_s']['p95'])}  (max {_fmt(f['first_text_s']['max'])})"),
            ("Gemini done -> final text p50 / p95 (s)",
             f"{_fmt(f['gemini_done_to_final_s']['p50'])} / {_fmt(f['gemini_done_to_final_s']['p95'])}  "
             f"(max {_fmt(f['gemini_done_to_final_s']['max'])})"),
            ("answers that showed the placeholder first", f"{ans['placeholder_first']} of {ans['expected']}"),
            ("edits per answer mean / max", f"{_fmt(f['edits_per_answer']['mean'])} / {_fmt(f['edits_per_answer']['max'])}"),
            ("Slack 429s (update / post / other)",
             f"{r429['total']}  ({by.get('chat.update', 0)} / {by.get('chat.postMessage', 0)} / "
             f"{r429['total'] - by.get('chat.update', 0) - by.get('chat.postMessage', 0)})"),
            ("failed / incomplete answers", f"{ans['failed']} / {ans['incomplete']}"),
            ("final text != Gemini's", f"{ans['wrong_text']}"),
            ("duplicate / spurious answers", f"{ans['duplicates']} / {ans['spurious_creates'] + ans['spurious_posts']}"),
            ("bot CPU s per answer (A+B)", f"{_fmt(f['bot_cpu_s']['per_answer'], 3)}  (phase A alone "
                                           f"{_fmt(f['bot_cpu_s']['per_answer_phase_a'], 3)} s/answer; phase B "
                                           f"{_fmt(f['bot_cpu_s']['per_1000_deliveries_phase_b'])} s/1000 deliveries; "
                                           f"total {_fmt(f['bot_cpu_s']['total'])} s)"),
            ("peak RSS per replica (MB)", ", ".join(_fmt(x, 1) for x in f["peak_rss_mb"])),
            ("Redis keys without TTL", f"{f['redis_keys']['no_ttl']}  (of {f['redis_keys']['total']} under the prefix)"),
        ]
        width = max(len(k) for k, _ in rows)
        line = "-" * (width + 2 + max(len(v) for _, v in rows))
        print(line)
        print(f"{'figure':<{width}}  value")
        print(line)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        print(line)
        for note in f["notes"]:
            print(f"note: {note}")
        print(flush=True)

    def _dump_logs(self) -> None:
        for r in self.replicas:
            try:
                with open(r.log_path, errors="replace") as f:
                    tail = f.readlines()[-20:]
            except OSError:
                continue
            print(f"--- replica {r.index} log (last {len(tail)} lines)", file=sys.stderr)
            sys.stderr.writelines(tail)

    async def _cleanup(self) -> None:
        for r in self.replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                try:
                    await asyncio.to_thread(r.proc.wait, 5)
                except subprocess.TimeoutExpired:
                    pass
        for emu in (self.slack, self.gemini):
            if emu is not None:
                try:
                    await emu.stop()
                except Exception:
                    pass
        if self.redis is not None:
            try:
                keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
                for i in range(0, len(keys), 500):
                    await self.redis.delete(*keys[i:i + 500])
            except Exception as exc:
                print(f"slackbot bench: could not delete the {self.prefix}:* keys: {exc}", file=sys.stderr)
            await self.redis.aclose()
        if self.redis_proc is not None:
            self.redis_proc.kill()
            self.redis_proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
