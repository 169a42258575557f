"""`slackbot bench --scenario tools`: answers that look things up in the workspace (issue 20).

The same replicas, Redis and emulators as the answers scenario. Seeded: a private channel (its messages
carry a marker word) and public channels, each with messages about the questions' topics. Three rounds of
`--conversations` questions, sent at once from `--people` people into public channels, with a pause
between rounds for the stream budgets to refill (so no round inherits another's waits):
* plain: Gemini answers in text (the reference figure);
* sources: the same with one web source, so the answer ends with a sources list as tools answers do;
* tools: Gemini makes 2 function calls in one step (search_slack for the topic and read_thread of a
  message, every other one in the private channel), then answers by echoing what the functions returned,
  so whatever the bot let through is in the answer.
Figures: Slack calls per answer (the look-ups' own and all), search budget waits (searches answered "not
available right now", Slack's 429s), final-text latency after Gemini's last event (tools against plain),
and leaks: every answer checked against the seeded channels' membership (analysis.leaks).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from . import analysis as an
from .runner import Bench, HarnessError

LOOKUP_METHODS = ("assistant.search.context", "conversations.replies", "conversations.history", "conversations.info",
                  "conversations.members", "users.info", "chat.getPermalink")
PRIVATE = "C_BENCHPRIV"
SECRET = "PRIVWORD"
TOPICS = ("billing", "rollout", "incident", "pricing", "hiring")
ROUNDS = ("plain", "sources", "tools")
WEB_SOURCE = [{"url": "https://docs.example.org/guide", "title": "Guide", "cite": "plain"}]


class ToolsBench(Bench):
    def __init__(self, args, strategy: str):
        super().__init__(args, strategy)
        self.people = [f"U_P{i:03d}" for i in range(max(1, args.people))]
        self.seeded: list[tuple[str, str]] = []  # (channel, text) of every seeded message
        self.links: dict[str, str] = {}  # channel -> a permalink of one of its messages

    def _bot_env(self, port: int) -> dict:
        env = super()._bot_env(port)
        env.update({"SLACKBOT_FUNCTIONS": "search_slack,read_thread,recent_messages,who_is",
                    "SLACKBOT_FUNCTION_WAIT_SECONDS": str(self.a.function_wait)})
        return env

    async def run(self, machine: dict) -> dict:
        started = time.monotonic()
        try:
            await self._set_up()
            rounds = {}
            for n, kind in enumerate(ROUNDS):
                if n:
                    await asyncio.sleep(self._refill)
                rounds[kind] = await self._round(kind)
            await self._stop_replicas()
            return self._tools_figures(machine, rounds, time.monotonic() - started)
        except BaseException:
            self._dump_logs()
            raise
        finally:
            await self._cleanup()

    async def _start_emulators(self) -> None:
        await super()._start_emulators()
        self._seed()

    def _seed(self) -> None:
        from slackbot_emulators.slack import Message

        s = self.slack
        s.set_rate_limit("assistant.search.context", 400, 400)  # a large team: the per-person limit binds
        for person in self.people:
            s.add_user(person, person.lower(), f"Person {person[-3:]}")
        s.add_channel(PRIVATE, "benchpriv", {self.people[0], "UBOT"}, private=True)
        for channel in [*self.channel_ids, PRIVATE]:
            for topic in TOPICS:
                text = (f"{topic} update from {channel.lower()}: {SECRET} {topic} plan" if channel == PRIVATE
                        else f"{topic} update from {channel.lower()}: public {topic} notes")
                msg = s._store(Message(s._next_ts(), channel, self.people[0], None, text))
                self.seeded.append((channel, text))
                self.links.setdefault(channel, f"{s.base_url}/archives/{channel}/p{msg.ts.replace('.', '')}")

    async def _round(self, kind: str) -> dict:
        """Send the round's questions at once; wait until every answer is done; what happened."""
        n, chars = self.a.conversations, 400
        calls_before, first_iid = len(self.slack.calls), len(self.gemini.interaction_ids())
        results_before = len(self.gemini.function_results)
        questions = []
        for i in range(n):
            tag = f"[{kind[0]}{i:04d}]"
            topic, channel = TOPICS[i % len(TOPICS)], self.channel_ids[i % len(self.channel_ids)]
            if kind == "tools":
                link = self.links[PRIVATE if i % 2 else channel]
                self.gemini.script(match=tag, calls=[
                    {"name": "search_slack", "arguments": {"query": topic}},
                    {"name": "read_thread", "arguments": {"link": link}}])
            else:
                self.gemini.script(match=tag, text=f"Answer {tag}: " + "plain words " * (chars // 12),
                                   **({"annotations": WEB_SOURCE} if kind == "sources" else {}))
            questions.append((tag, channel, self.people[i % len(self.people)], f"<@UBOT> {tag} what about {topic}?"))
        sent = await asyncio.gather(*(self.slack.user_message(ch, text, user=user) for _, ch, user, text in questions))
        roots = [(q[1], d.message.ts, q[0]) for q, d in zip(questions, sent)]
        await self._until_answered(len(questions), kind)
        new_iids = self.gemini.interaction_ids()[first_iid:]
        return {"roots": roots, "calls": self.slack.calls[calls_before:], "iids": new_iids,
                "function_results": self.gemini.function_results[results_before:]}

    async def _until_answered(self, n: int, kind: str) -> None:
        import aiohttp

        deadline = time.monotonic() + 120 + 2.0 * n
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                done = in_flight = 0.0
                for r in self.replicas:
                    async with http.get(f"{r.url}/metrics") as resp:
                        page = await resp.text()
                    done += an.metric_sum(page, "slackbot_answers_total", outcome="completed")
                    in_flight += an.metric_sum(page, "slackbot_work_in_flight")
                if done >= self._answered + n and in_flight == 0:
                    self._answered += n
                    return
                await asyncio.sleep(0.5)
        raise HarnessError(f"{kind} round: not every answer finished in time")

    _answered = 0.0

    @property
    def _refill(self) -> float:
        """Seconds for the stream-start budget (18 a minute, the bot's default) to refill after a round."""
        return min(180.0, self.a.conversations * 60 / 18)

    def _round_figures(self, r: dict) -> dict:
        lags, texts = [], []
        by_previous = {self.gemini.interaction(i)["previous_interaction_id"]: i for i in r["iids"]}
        for channel, root, tag in r["roots"]:
            first = next((i for i in r["iids"] if tag in self.gemini.interaction(i)["input_text"]), None)
            last = first
            while last in by_previous:
                last = by_previous[last]
            msgs = self.slack.bot_messages(channel, root)
            texts.append((channel, "\n".join(m.visible_text + json.dumps(m.blocks or []) for m in msgs)))
            final = an.final_at(self._timelines([(m.channel, m.ts) for m in msgs]))
            gemini_done = self.gemini.interaction(last)["last_event_sent"] if last else None
            if final is not None and gemini_done:
                lags.append(final - gemini_done)
        methods = Counter(c.method for c in r["calls"])
        n = len(r["roots"])
        unavailable = Counter(x["name"] for x in r["function_results"]
                              if "not available right now" in json.dumps(x["result"]))
        return {"answers": n, "final_after_gemini_s": an.summary(lags),
                "slack_calls_per_answer": an.rnd(len(r["calls"]) / n, 2),
                "lookup_calls_per_answer": an.rnd(sum(methods[m] for m in LOOKUP_METHODS) / n, 2),
                "lookup_calls": {m: methods[m] for m in LOOKUP_METHODS if methods[m]},
                "function_calls": len(r["function_results"]),
                "search_unavailable": unavailable["search_slack"],
                "unavailable_by_function": dict(unavailable),
                "search_429": sum(1 for c in r["calls"] if c.method == "assistant.search.context" and c.status == 429),
                "leaks": an.leaks(texts, self.seeded, public=set(self.channel_ids)),
                "gemini_creates": len(r["iids"])}

    def _tools_figures(self, machine: dict, rounds: dict, wall: float) -> dict:
        plain, sources, tools = (self._round_figures(rounds[k]) for k in ROUNDS)
        p95 = [f["final_after_gemini_s"]["p95"] for f in (plain, sources, tools)]
        return {"scenario": "tools", "conversations": self.a.conversations, "replicas": self.a.replicas,
                "people": len(self.people), "plain": plain, "sources": sources, "tools": tools,
                "final_latency_ratio_p95": an.rnd(p95[2] / p95[0], 2) if p95[0] and p95[2] else None,
                "final_latency_ratio_p95_vs_sources": an.rnd(p95[2] / p95[1], 2) if p95[1] and p95[2] else None,
                "durations_s": {"total": an.rnd(wall, 1)}, "notes": self.notes, "machine": machine}


def table(f: dict) -> str:
    """The tools scenario's table: plain answers, answers with a web source, answers that looked things up."""
    p, w, t = f["plain"], f["sources"], f["tools"]

    def pcts(s: dict) -> str:
        return f"{an.fmt(s['p50'])} / {an.fmt(s['p95'])} (max {an.fmt(s['max'])}, n={s['n']})"

    def row(label: str, key) -> list[str]:
        return [label, *(str(key(x)) for x in (p, w, t))]
    rows = [["questions at once / people / replicas", f"{f['conversations']} / {f['people']} / {f['replicas']}", "", ""],
            row("function calls made", lambda x: x["function_calls"]),
            row("Slack calls per answer (all)", lambda x: x["slack_calls_per_answer"]),
            row("  of which look-ups", lambda x: x["lookup_calls_per_answer"]),
            row("look-ups 'not available right now'", lambda x: x["unavailable_by_function"] or 0),
            row("search budget: unavailable / Slack 429s", lambda x: f"{x['search_unavailable']} / {x['search_429']}"),
            row("final text after Gemini's last event p50 / p95 (s)", lambda x: pcts(x["final_after_gemini_s"])),
            ["  tools / plain, tools / sources (p95)", "", "", f"{an.fmt(f['final_latency_ratio_p95'])}, "
                                                             f"{an.fmt(f['final_latency_ratio_p95_vs_sources'])}"],
            row("leaks by the access rule", lambda x: x["leaks"]),
            row("Gemini creates", lambda x: x["gemini_creates"])]
    return an.render_table(["figure", "plain", "web source", "tools"], rows) + \
        "\nlook-up calls (tools): " + ", ".join(f"{m} {c}" for m, c in t["lookup_calls"].items())
