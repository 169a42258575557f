"""The load a benchmark generates: who says what, where and when, and what Gemini answers.

Every user message carries a unique tag `[m000123]`; every scripted Gemini answer starts with
`Answer m000123:`. That ties Gemini's creates and the bot's Slack messages to the message they
answer, so duplicates, spurious answers and wrong final texts are counted exactly.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

TEAM = "T0001"
BOT_USER = "UBOT"
HUMANS = ("U_ALICE", "U_BOB", "U_CAROL")

QUESTIONS = [
    "how do I rotate the Postgres password without downtime?",
    "can you summarise the incident review from last week?",
    "what is the difference between a token bucket and a leaky bucket?",
    "write a short release note for the new export feature",
    "why would a Redis Lua script be better than MULTI/EXEC here?",
    "which flags does our deploy script accept?",
]
WORDS = ("the replica primary standby password secret rotation window connection pool client server "
         "config rollout canary traffic budget queue token bucket latency percentile retry backoff "
         "deploy release note feature export incident review owner timeline metric alert dashboard "
         "cache shard lock lease worker thread message answer stream edit final draft check").split()

# Phase B deliveries that must be ignored, and their shares.
FILLERS = [("thread_reply", 0.30), ("chatter", 0.25), ("edited", 0.20), ("bot_message", 0.10), ("own_echo", 0.15)]


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
class Acks:
    rows: list = field(default_factory=list)  # (phase, kind, status, latency s, error, sent at)

    def add(self, phase: str, kind: str, delivery) -> None:
        self.rows.append((phase, kind, delivery.status, delivery.latency, delivery.error,
                          time.time() - delivery.latency))


def answer_text(tok: str, n_chars: int, rng: random.Random) -> str:
    """A Markdown answer of about n_chars: paragraphs, a list, a code block when long enough."""
    def sentence() -> str:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
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


def place(schedule: list, pos: int, kind: str, width: int = 1) -> None:
    """Put `kind` at the first free run of `width` slots from `pos` on (wrapping); extra slots are None."""
    n = len(schedule)
    for step in range(n):
        p = (pos + step) % n
        if all(p + j < n and schedule[p + j] == "" for j in range(width)):
            schedule[p] = kind
            for j in range(1, width):
                schedule[p + j] = None
            return


def build_schedule(ticks: int, n_mention: int, n_chain: int, rng: random.Random) -> list[str | None]:
    """Phase B, one entry per delivery slot: answered mentions (two deliveries each: `message` and
    `app_mention`, the second slot None) and thread replies spread evenly, the rest ignorable fillers."""
    schedule: list[str | None] = [""] * ticks
    if ticks:
        for k in range(n_mention):
            place(schedule, int((k + 0.5) * ticks / n_mention), "mention", width=2)
        for k in range(n_chain):
            place(schedule, int((k + 0.25) * ticks / n_chain), "chain_reply")
    for i, kind in enumerate(schedule):
        if kind == "":
            schedule[i] = rng.choices([k for k, _ in FILLERS], [w for _, w in FILLERS])[0]
    return schedule


class Load:
    """Sends the people's side of the benchmark through the Slack emulator and scripts Gemini's answers."""

    def __init__(self, args, slack, gemini, rng: random.Random, channel_ids: list[str], chunk_chars: int):
        self.a, self.slack, self.gemini, self.rng = args, slack, gemini, rng
        self.channel_ids, self.chunk_chars = channel_ids, chunk_chars
        self.acks = Acks()
        self.expected: dict[str, Expected] = {}
        self.unanswerable: set[str] = set()
        self.people_threads: list[tuple[str, str]] = []
        self.n_tok = 0

    def tok(self, *, answerable: bool) -> str:
        self.n_tok += 1
        tok = f"m{self.n_tok:06d}"
        if not answerable:
            self.unanswerable.add(tok)
        return tok

    def script_answer(self, tok: str) -> None:
        a = self.a
        jitter = self.rng.uniform(0.9, 1.1)
        n_chars = max(2 * self.chunk_chars, round(a.chars_per_second * a.stream_seconds * jitter))
        steps = {"thought": "Looking for sources\nComparing what they say\n",
                 "tool_steps": [{"tool": "google_search", "queries": [f"{tok} {n}"], "seconds": a.chunk_seconds}
                                for n in range(a.tool_steps)]} if a.tool_steps else {}
        self.gemini.script(match=f"[{tok}]", text=answer_text(tok, n_chars, self.rng),
                           chunk_chars=self.chunk_chars, chunk_delay=a.chunk_seconds,
                           first_token_delay=a.first_token * self.rng.uniform(0.5, 1.5), **steps)

    async def warm_up(self, n: int) -> None:
        """People's threads for phase B, delivered one by one: also gives every replica its first
        request (Bolt's auth.test) before the measured phases."""
        for i in range(n):
            ch = self.channel_ids[i % len(self.channel_ids)]
            tok = self.tok(answerable=False)
            d = await self.slack.user_message(ch, f"standup notes {tok}: nothing blocking today", user="U_BOB")
            self.acks.add("warmup", "chatter", d)
            self.people_threads.append((ch, d.message.ts))

    async def mention(self, phase: str, channel: str) -> list:
        tok = self.tok(answerable=True)
        self.script_answer(tok)
        exp = Expected(tok, phase, "mention", channel, "", sent_wall=time.time())
        d = await self.slack.user_message(channel, f"<@{BOT_USER}> [{tok}] {self.rng.choice(QUESTIONS)}",
                                          user=self.rng.choice(HUMANS))
        exp.root = d.message.ts
        self.expected[tok] = exp
        for x in d.all:
            self.acks.add(phase, "mention", x)
        return d.all

    async def chain_reply(self, channel: str, root: str, head: str) -> list:
        tok = self.tok(answerable=True)
        self.script_answer(tok)
        self.expected[tok] = Expected(tok, "B", "chain_reply", channel, root, sent_wall=time.time(), previous=head)
        d = await self.slack.user_message(channel, f"[{tok}] and what about the standby?", thread_ts=root,
                                          user=self.rng.choice(HUMANS))
        self.acks.add("B", "chain_reply", d)
        return d.all

    def retry_later(self, done: asyncio.Task, tasks: set) -> None:
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

    async def ignorable(self, kind: str) -> None:
        ch = self.rng.choice(self.channel_ids)
        tok = self.tok(answerable=False)
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

    async def phase_a(self) -> None:
        chans = self.channel_ids
        await asyncio.gather(*(self.mention("A", chans[i % len(chans)]) for i in range(self.a.conversations)))

    async def phase_b(self, heads: list[tuple[str, str, str]]) -> dict:
        """Deliveries at --intake-rate for --intake-seconds; `heads` are (channel, root, chain head) of
        phase A's threads, for the answered thread replies. Returns the generator's own timings."""
        a = self.a
        ticks = int(round(a.intake_rate * a.intake_seconds))
        self.rng.shuffle(heads)
        n_mention = max(1, round(ticks * a.mention_share / 2)) if ticks else 0
        n_chain = min(len(heads), max(1, round(ticks * a.chain_reply_share))) if ticks else 0
        schedule = build_schedule(ticks, n_mention, n_chain, self.rng)
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
                task = asyncio.create_task(self.chain_reply(*next(chain_iter)))
                task.add_done_callback(lambda t: self.retry_later(t, tasks))
            elif kind == "mention":
                task = asyncio.create_task(self.mention("B", self.rng.choice(self.channel_ids)))
                task.add_done_callback(lambda t: self.retry_later(t, tasks))
            else:
                task = asyncio.create_task(self.ignorable(kind))
            tasks.add(task)
        timings = {"b_intake_wall": loop.time() - start, "b_generator_max_lag": lag}
        await asyncio.sleep(1.5)  # the retries scheduled by the last answered messages
        if tasks:
            await asyncio.wait(set(tasks), timeout=30)
        return timings
