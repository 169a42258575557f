"""The benchmark's runner: Redis, the emulators and the bot's replica processes, the two phases,
and reading the outcome back from the emulators' records (the arithmetic is in `analysis`).

What runs where
* this process: the Slack emulator (Slack's limits on: chat.update Tier 3 50/min per team,
  chat.postMessage ~1/s per channel, the native streaming methods' Tiers 2 and 4,
  assistant.threads.setStatus) and the Gemini emulator (answers stream at a realistic pace), plus
  the load generator (`load`). Deliveries go round-robin to the replicas, one delivery at a time
  (`BenchSlack.send_signed`), so the two events Slack sends for one mention usually reach two
  different replicas, as they can in production.
* `--replicas` processes of `python -m slackbot serve`, configured only through environment
  variables (`SLACKBOT_DELIVERY` names the strategy), so their CPU and memory are measured on
  their own (psutil, /proc).
* Redis: `--redis-url` (default REDIS_URL) when it answers, else a throwaway `redis-server` on a
  free port. Every key is under a fresh random prefix, counted and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import slackbot

from . import analysis as an
from .load import BOT_USER, HUMANS, TEAM, Load

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
SET_STATUS = "assistant.threads.setStatus"
_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slackbot.__file__)))  # holds slackbot/: the code under test


class HarnessError(Exception):
    """The benchmark itself could not run (not a bad figure)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_info() -> dict:
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


def bot_lines() -> tuple[list[str], str]:
    """The bot's failure lines (an answer showing one failed) and its placeholder, if it has one.
    Imported here, before any timing: it pulls in google.genai (~1 s of blocking imports)."""
    from slackbot.chat.outcome import FAILURE_LINES, STORE_DOWN

    try:  # the delivery planner may retire these
        from slackbot.slack_out.streamer import EMPTY_ANSWER, PLACEHOLDER
    except ImportError:
        EMPTY_ANSWER = PLACEHOLDER = ""
    stops = [line for line in (PLACEHOLDER, EMPTY_ANSWER, STORE_DOWN, *FAILURE_LINES.values()) if line]
    return stops, PLACEHOLDER


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


def _bench_slack_class():
    from slackbot_emulators.slack import SlackEmulator

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


class Bench:
    """One run of one delivery strategy: start everything, phases A and B, figures, clean up."""

    def __init__(self, args: argparse.Namespace, strategy: str):
        self.a = args
        self.strategy = strategy
        self.rng = random.Random(args.seed)
        self.prefix = f"slackbot-bench-{secrets.token_hex(4)}"
        self.tmp = tempfile.mkdtemp(prefix="slackbot-bench-")
        self.replicas: list[Replica] = []
        self.redis_servers = None  # what the bench started: a RedisServer or RedisClusterServers
        self.redis_url = ""
        self.store = None  # the bot's own Store, under the bench's prefix: it alone knows the keys
        self.redis_commands: dict[str, int] = {}
        self.slack = None
        self.gemini = None
        self.load: Load | None = None
        self.times: dict[str, float] = {}
        self.notes: list[str] = []
        self._out_text: dict[str, str] = {}
        self.phase = "setup"
        self.loop_stall: dict[str, float] = {}  # phase -> longest the bench's own event loop was late (s)
        self._input_tok: dict[str, str | None] = {}

    # --- orchestration -------------------------------------------------------------------
    async def run(self, machine: dict) -> dict:
        """The figures of one run; HarnessError (or any bug) when it could not run."""
        started = time.monotonic()
        try:
            settings = await self._set_up()
            await self.load.warm_up(max(self.a.replicas, 2 * len(self.channel_ids)))
            gc.collect()
            gc.freeze()  # the imports and emulators stay put: later full collections skip them (shorter stalls)
            sampler = asyncio.create_task(self._sample_rss())
            watcher = asyncio.create_task(self._watch_loop())
            self._cpu_mark("cpu0")
            self.redis_commands["start"] = await self.store.commands_processed()
            self.phase = "A"
            self.times["a_start"] = time.monotonic()
            await self.load.phase_a()
            await self._wait_answers("A")
            self.times["a_end"] = time.monotonic()
            self._cpu_mark("cpu_a")
            self.phase = "B"
            self.times["b_start"] = time.monotonic()
            self.times.update(await self.load.phase_b(await self._chain_heads()))
            await self._wait_answers("B")
            self.times["b_end"] = time.monotonic()
            await asyncio.sleep(2.0)  # anything late (a duplicate) still lands
            self._cpu_mark("cpu_end")
            self.redis_commands["end"] = await self.store.commands_processed()
            self._read_peak_rss()
            sampler.cancel()
            watcher.cancel()
            await self._stop_replicas()
            redis_keys = await self._redis_keys()
            return self._figures(machine, settings, redis_keys, time.monotonic() - started)
        except BaseException:
            self._dump_logs()
            raise
        finally:
            await self._cleanup()

    async def _set_up(self):
        """Redis, the emulators and the replicas, started; the settings the replicas run with."""
        self.stops, self.placeholder = bot_lines()
        await self._start_redis()
        await self._start_emulators()
        settings = self._bot_settings()
        self._print_header(settings)
        await self._start_replicas()
        return settings

    def _cpu_mark(self, name: str) -> None:
        for r in self.replicas:
            try:
                t = r.ps.cpu_times()
                setattr(r, name, t.user + t.system)
            except Exception:  # the process died: keep the last figure
                pass

    # --- Redis ---------------------------------------------------------------------------------
    async def _start_redis(self) -> None:
        from slackbot.store import Store

        from . import redis_servers

        try:
            if self.a.redis == "cluster":
                self.redis_servers = await asyncio.to_thread(redis_servers.RedisClusterServers(3).start)
                url = self.redis_servers.url
                self.notes.append(f"started a throwaway 3-master Redis Cluster; REDIS_URL names one node ({url})")
            else:
                url = self.a.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
                if not await asyncio.to_thread(redis_servers.answers, url):
                    self.redis_servers = await asyncio.to_thread(redis_servers.RedisServer().start)
                    url = self.redis_servers.url
                    self.notes.append(f"started a throwaway redis-server on port {self.redis_servers.port}")
        except (redis_servers.RedisMissing, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise HarnessError(f"could not start Redis: {exc}") from None
        self.redis_url = url
        self.store = await Store.connect(url, self.prefix)

    async def _redis_keys(self) -> dict:
        keys = await self.store.prefix_keys()
        no_ttl: list[str] = []
        kinds: Counter = Counter()
        size = 0
        for k in keys:
            kinds[k[len(self.prefix) + 1:].split(":", 1)[0]] += 1
            if await self.store.redis.ttl(k) == -1:
                no_ttl.append(k)
            size += await self.store.redis.memory_usage(k) or 0
        per_node = await self.store.keys_per_node()
        return {"total": len(keys), "no_ttl": len(no_ttl), "no_ttl_examples": no_ttl[:5], "by_kind": dict(kinds),
                "per_node": per_node, "cluster": self.store.cluster, "bytes": size}

    # --- emulators -------------------------------------------------------------------------------
    async def _start_emulators(self) -> None:
        from slackbot_emulators.gemini import GeminiEmulator
        from slackbot_emulators.slack import Channel

        a = self.a
        chunk_chars = max(1, round(a.chars_per_second * a.chunk_seconds))
        self.gemini = GeminiEmulator(chunk_chars=chunk_chars, chunk_delay=a.chunk_seconds,
                                     first_token_delay=a.first_token)
        await self.gemini.start("127.0.0.1", 0)
        self.slack = _bench_slack_class()(signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN, team_id=TEAM,
                                          bot_user_id=BOT_USER, rate_limits=True)
        await self.slack.start("127.0.0.1", 0)
        self.channel_ids = [f"C_BENCH{i:03d}" for i in range(a.channels)]
        for cid in self.channel_ids:  # the bot is a member, as after /invite
            self.slack.channels[cid] = Channel(cid, cid.lower(), False, set(HUMANS) | {BOT_USER})
        self.load = Load(a, self.slack, self.gemini, self.rng, self.channel_ids, chunk_chars)

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
            "SLACKBOT_DELIVERY": self.strategy,
            "SLACKBOT_TOOLS": "google_search" if self.a.tool_steps else "",  # task cards (--tool-steps)
            # a handful of emulated people ask everything: the per-person cost guard (tested on its own)
            # would turn most of the load away
            "SLACKBOT_USER_MAX_ACTIVE_ANSWERS": "100000", "SLACKBOT_USER_TURNS_PER_MINUTE": "100000",
            # the replicas run from a temporary directory: they must import the same slackbot as this
            # process, not whatever a relative PYTHONPATH or the editable install points at from there
            "PYTHONPATH": os.pathsep.join([_SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        return env

    def _bot_settings(self):
        """The settings the replicas will run with (same environment, read the same way)."""
        from slackbot.config import Settings

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

    # --- waiting for answers ------------------------------------------------------------------------
    def _deadline_for(self, n_answers: int) -> float:
        # generous: the stream itself, then the final edits at Slack's Tier 3 pace (with slack)
        return 1.5 * self.a.first_token + 1.1 * self.a.stream_seconds + 60 + 3.0 * n_answers

    async def _wait_answers(self, phase: str, quiet: float = 20.0) -> None:
        toks = [t for t, e in self.load.expected.items() if e.phase == phase]
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

    async def _chain_heads(self) -> list[tuple[str, str, str]]:
        """(channel, root, chain head) of phase A's threads: phase B replies continue them."""
        heads = []
        for e in self.load.expected.values():
            if e.phase == "A":
                head = await self.store.turns.chain_head(TEAM, e.channel, e.root)
                if head:
                    heads.append((e.channel, e.root, head))
        return heads

    # --- reading the outcome -------------------------------------------------------------------------
    def _interactions(self) -> dict[str, list[str]]:
        """tag -> ids of the interactions created for it (the input's last tag is the new message)."""
        by_tok: dict[str, list[str]] = {}
        for iid in self.gemini.interaction_ids():
            if iid not in self._input_tok:
                info = self.gemini.interaction(iid)
                tags = an.INPUT_TAG.findall(info["input_text"])
                self._input_tok[iid] = tags[-1] if tags else None
                self._out_text[iid] = info["output_text"]
            by_tok.setdefault(self._input_tok[iid] or "-", []).append(iid)
        return by_tok

    def _segments(self, channel: str, root: str) -> tuple[dict[str, list[list]], int]:
        """The thread's bot messages grouped per answer: tag -> [[messages] per answer], untagged count."""
        msgs = self.slack.bot_messages(channel, root)
        groups, untagged = an.group_segments([m.visible_text for m in msgs], self.stops)
        return {tok: [[msgs[i] for i in g] for g in gs] for tok, gs in groups.items()}, untagged

    def _answer_results(self) -> dict[str, dict]:
        creates = self._interactions()
        cache: dict[tuple[str, str], tuple[dict, int]] = {}
        out: dict[str, dict] = {}
        for tok, e in self.load.expected.items():
            key = (e.channel, e.root)
            if key not in cache:
                cache[key] = self._segments(*key)
            tagged, _ = cache[key]
            ids = creates.get(tok, [])
            segs = tagged.get(tok, [])
            r = {"creates": len(ids), "segments": len(segs), "interaction": ids[0] if ids else None}
            if not segs:
                r["status"], r["terminal"] = "failed", False
                out[tok] = r
                continue
            msgs = segs[0]
            final = "\n".join(m.visible_text for m in msgs)
            want = self._out_text.get(ids[0], "") if ids else ""
            r["status"], r["terminal"] = an.classify(final, want, self.stops)
            if r["status"] == "ok":
                r["exact"] = final == want
            r["messages"] = [(m.channel, m.ts) for m in msgs]
            r["edits"] = sum(len(m.edits) for m in msgs)
            out[tok] = r
        return out

    def _msgs(self, refs: list[tuple[str, str]]) -> list:
        return [m for ch, ts in refs for m in self.slack.channels[ch].messages if m.ts == ts]

    def _timelines(self, refs: list[tuple[str, str]]) -> list[list[tuple[float, str]]]:
        """Each message's visible text over time: post, chat.update edits, native stream calls."""
        out = []
        for msg in self._msgs(refs):
            stream = self.slack.streams.get((msg.channel, msg.ts))
            out.append(an.message_timeline(
                self.slack.posted.get((msg.channel, msg.ts)),
                [(t, an.visible(text, blocks)) for t, text, blocks in msg.edits],
                [(h[0], h[3]) for h in stream.history] if stream else []))
        return out

    def _thread_signs(self) -> tuple[dict, dict]:
        """(channel, thread) -> times a status was set there, and times the bot posted there."""
        status, posts = defaultdict(list), defaultdict(list)
        for c in self.slack.calls_to(SET_STATUS):
            if c.ok and c.params.get("status"):
                status[(c.params.get("channel_id"), c.params.get("thread_ts"))].append(c.time)
        for (ch, ts), (t, _) in self.slack.posted.items():
            msg = next((m for m in self.slack.channels[ch].messages if m.ts == ts), None)
            if msg is not None:
                posts[(ch, msg.thread_ts or ts)].append(t)
        return status, posts

    # --- figures -------------------------------------------------------------------------------------
    def _answer_figures(self, e, r: dict, signs: tuple[dict, dict]) -> dict:
        """One answer's timings (wall clock) and how it was delivered, for the figures and --details."""
        row = {"tok": e.tok, "phase": e.phase, "kind": e.kind, "channel": e.channel, "root": e.root,
               "status": r["status"], "creates": r["creates"], "segments": r["segments"], "sent": e.sent_wall}
        status_times, post_times = (s.get((e.channel, e.root), []) for s in signs)
        row["sign_of_life"] = an.sign_of_life(e.sent_wall, status_times, post_times)
        if not r.get("messages"):
            return row
        info = self.gemini.interaction(r["interaction"]) if r["interaction"] else {}
        timelines = self._timelines(r["messages"])
        blank = [self.placeholder]
        texts = [[(t, x) for t, x in tl if x.strip() not in {"", "…", self.placeholder}] for tl in timelines]
        g0, g1 = info.get("first_text_sent"), info.get("last_event_sent")
        msgs = self._msgs(r["messages"])
        row.update(
            edits=r["edits"], first_visible=an.first_visible(timelines, blank), final=an.final_at(timelines),
            first_text_sent=g0, last_event_sent=g1,
            stall=an.longest_stall(an.change_times(texts), g0, g1) if g0 and g1 else None,
            updates=sum(len(tl) for tl in texts),
            delivery=sorted(an.delivery_kinds([(m.channel, m.ts) in self.slack.streams for m in msgs],
                                              [len(m.edits) for m in msgs])),
            answer_chars=len(self._out_text.get(r["interaction"], "")),
            message_chars=[len(m.visible_text) for m in msgs],
            timelines=[[(round(t, 3), len(x)) for t, x in tl] for tl in timelines])
        return row

    def _figures(self, machine: dict, settings, redis_keys: dict, wall: float) -> dict:
        expected = self.load.expected
        results = self._answer_results()
        creates = self._interactions()
        statuses = Counter(r["status"] for r in results.values())
        signs = self._thread_signs()
        rows = [self._answer_figures(expected[tok], r, signs) for tok, r in results.items()]
        delivered = [row for row in rows if "edits" in row]
        first_text = [row["first_visible"] - row["first_text_sent"] for row in delivered
                      if row["first_visible"] is not None and row["first_text_sent"]]
        final_lag = [row["final"] - row["last_event_sent"] for row in delivered
                     if row["status"] == "ok" and row["final"] is not None and row["last_event_sent"]]
        e2e_first = [row["first_visible"] - row["sent"] for row in delivered if row["first_visible"] is not None]
        life = [row["sign_of_life"] for row in rows if row["sign_of_life"] is not None]
        stalls = [row["stall"] for row in delivered if row["stall"] is not None]
        edits = [row["edits"] for row in delivered]
        updates = [row["updates"] for row in delivered]
        chain_errors = sum(
            self.gemini.interaction(r["interaction"])["previous_interaction_id"] != expected[tok].previous
            for tok, r in results.items() if expected[tok].kind == "chain_reply" and r["interaction"])
        if self.a.details:
            self._write_details(rows)
        placeholder_first = sum(1 for r in results.values() if r.get("messages") and self.placeholder
                                and (self.slack.posted.get(tuple(r["messages"][0])) or (0, ""))[1] == self.placeholder)
        duplicates = sum(1 for r in results.values() if r["creates"] > 1 or r["segments"] > 1)
        spurious_creates = sum(len(ids) for tok, ids in creates.items() if tok not in expected)
        answer_roots = {(e.channel, e.root) for e in expected.values()}
        spurious_posts = sum(1 for m in self.slack.bot_messages()
                             if (m.channel, m.thread_ts or m.ts) not in answer_roots)
        untagged = sum(self._segments(*k)[1] for k in answer_roots)
        calls = self.slack.calls
        r429 = Counter(c.method for c in calls if c.status == 429)
        n_answers = len(expected)
        cpu_total = sum(r.cpu_end - r.cpu0 for r in self.replicas)
        cpu_a = sum(r.cpu_a - r.cpu0 for r in self.replicas)
        cpu_b = sum(r.cpu_end - r.cpu_a for r in self.replicas)
        n_a = sum(1 for e in expected.values() if e.phase == "A")
        ack_rows = self.load.acks.rows
        b_deliveries = sum(1 for row in ack_rows if row[0] == "B")
        return {
            "strategy": self.strategy,
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
            "ack_ms": {"A": an.ack_stats(ack_rows, "A"), "B": an.ack_stats(ack_rows, "B")},
            "intake": {"deliveries": b_deliveries, "wall_s": an.rnd(self.times.get("b_intake_wall"), 2),
                       "achieved_rate": an.rnd(b_deliveries / self.times["b_intake_wall"], 1)
                       if self.times.get("b_intake_wall") else None,
                       "generator_max_lag_ms": an.rnd(1000 * self.times.get("b_generator_max_lag", 0.0), 1)},
            "bench_loop_max_stall_ms": {k: an.rnd(1000 * v, 1) for k, v in self.loop_stall.items()},
            "sign_of_life_s": an.summary(life),
            "first_text_s": an.summary(first_text),
            "message_to_first_text_s": an.summary(e2e_first),
            "gemini_done_to_final_s": an.summary(final_lag),
            "longest_stall_s": an.summary(stalls),
            "delivery_mix": an.delivery_mix(set(row["delivery"]) for row in delivered),
            "messages_per_answer": an.message_counts([row["message_chars"] for row in delivered]),
            "edits_per_answer": {"mean": an.rnd(statistics.mean(edits), 2) if edits else None,
                                 "max": max(edits) if edits else None},
            "visible_updates_per_answer": {"mean": an.rnd(statistics.mean(updates), 2) if updates else None,
                                           "max": max(updates) if updates else None},
            "slack_calls": dict(Counter(c.method for c in calls)),
            "slack_429": {"total": sum(r429.values()), "by_method": dict(r429)},
            "slack_methods": an.calls_by_method((c.method, c.status) for c in calls),
            "bot_cpu_s": {"total": an.rnd(cpu_total, 2), "phase_a": an.rnd(cpu_a, 2), "phase_b": an.rnd(cpu_b, 2),
                          "per_answer": an.rnd(cpu_total / n_answers, 3) if n_answers else None,
                          "per_answer_phase_a": an.rnd(cpu_a / n_a, 3) if n_a else None,
                          "per_1000_deliveries_phase_b": an.rnd(1000 * cpu_b / b_deliveries, 2)
                          if b_deliveries else None},
            "peak_rss_mb": [an.rnd(r.rss_peak_mb, 1) for r in self.replicas],
            "redis_keys": redis_keys,
            "redis_commands": {"total": self.redis_commands["end"] - self.redis_commands["start"],
                               "per_answer": an.rnd((self.redis_commands["end"] - self.redis_commands["start"])
                                                    / n_answers, 1) if n_answers else None},
            "durations_s": {"phase_a": an.rnd(self.times["a_end"] - self.times["a_start"], 1),
                            "phase_b": an.rnd(self.times["b_end"] - self.times["b_start"], 1),
                            "total": an.rnd(wall, 1)},
            "bot_log": self._log_summary(),
            "notes": self.notes,
            "machine": machine,
            "bot_settings": self._settings_summary(settings),
        }

    def _write_details(self, rows: list[dict]) -> None:
        with open(self.a.details, "a") as fh:
            for row in rows:
                fh.write(json.dumps({"strategy": self.strategy, **row}) + "\n")
            for phase, kind, status, latency, error, at in self.load.acks.rows:
                if latency > 0.2 or status != 200:
                    fh.write(json.dumps({"strategy": self.strategy, "slow_ack": kind, "phase": phase,
                                         "status": status, "at": at, "latency": latency, "error": error}) + "\n")

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
        names = ["delivery", "edit_budget_per_minute", "edit_budget_burst", "edit_final_reserve", "edit_min_interval",
                 "post_per_channel_per_second", "post_burst", "placeholder_after_seconds", "message_chars",
                 "thread_lock_seconds", "research_worker"]
        return {n: getattr(s, n) for n in names if hasattr(s, n)}

    def _print_header(self, settings) -> None:
        print(f"strategy {self.strategy}: bot " + " ".join(f"{k}={v}" for k, v in self._settings_summary(settings).items())
              + f"; redis={'cluster' if self.store.cluster else 'single node'} {self.redis_url} prefix={self.prefix}",
              flush=True)

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
        if self.store is not None:
            try:
                await self.store.delete_prefix()
            except Exception as exc:
                print(f"slackbot bench: could not delete the {self.prefix}:* keys: {exc}", file=sys.stderr)
            await self.store.close()
        if self.redis_servers is not None:
            await asyncio.to_thread(self.redis_servers.stop)
        shutil.rmtree(self.tmp, ignore_errors=True)

