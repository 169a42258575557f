"""`slackbot bench --scenario research`: how soon a finished Deep Research report reaches Slack (issue 22.5).

The same replicas, Redis and emulators as the answers scenario, run twice:
* webhooks: each replica's `SLACKBOT_PUBLIC_URL` is its own address, so every job's create carries a
  `webhook_config` for `<it>/gemini/webhook`; the Gemini emulator POSTs there when the run completes;
* polling: no public URL, so the worker finds the end only by polling at the production settings
  (research_poll_initial / research_poll_max / research_poll_backoff, untouched here).
Each run: `--jobs` signed `/research --now <question>` commands at once from the emulated people, each
agent queued 1 s then working a fixed time spread evenly over `--agent-seconds` (e.g. 20-40). Figures per
mode: completion (the emulator's due time of the run's last event) -> the first report message in the
status message's thread (the Slack emulator's record of the post), and the Gemini GETs of each job's
interaction (the polls).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from . import analysis as an
from .load import HUMANS
from .runner import Bench, HarnessError

MODES = ("webhooks", "polling")
QUEUED_FOR = 1.0  # seconds each agent run stays "queued" before it works


def agent_seconds(spec: str) -> tuple[float, float]:
    """"20-40" -> (20.0, 40.0); "30" -> (30.0, 30.0)."""
    lo, _, hi = spec.partition("-")
    try:
        pair = (float(lo), float(hi or lo))
    except ValueError:
        raise HarnessError("--agent-seconds: a number or a range such as 20-40") from None
    if not 0 < pair[0] <= pair[1]:
        raise HarnessError("--agent-seconds: positive, the smaller first")
    return pair


def run_times(n: int, lo: float, hi: float) -> list[float]:
    """n working times spread evenly from lo to hi (pure)."""
    return [lo if n == 1 else lo + (hi - lo) * i / (n - 1) for i in range(n)]


class ResearchBench(Bench):
    def __init__(self, args: argparse.Namespace, mode: str):
        super().__init__(args, "planner")
        self.mode = mode
        self.jobs: list[dict] = []  # tag, channel, working seconds

    def _bot_env(self, port: int) -> dict:
        env = super()._bot_env(port)
        env.update({"SLACKBOT_PUBLIC_URL": f"http://127.0.0.1:{port}" if self.mode == "webhooks" else "",
                    # a few emulated people start every job: the per-person cap (tested on its own) would refuse most
                    "SLACKBOT_RESEARCH_MAX_PER_USER": str(max(2, self.a.jobs))})
        return env

    async def run(self, machine: dict) -> dict:
        started = time.monotonic()
        try:
            settings = await self._set_up()
            await self._start_jobs()
            await self._until_reported(settings)
            return self._research_figures(machine, settings, time.monotonic() - started)
        except BaseException:
            self._dump_logs()
            raise
        finally:
            await self._cleanup()

    async def _start_jobs(self) -> None:
        lo, hi = agent_seconds(self.a.agent_seconds)
        for i, run_for in enumerate(run_times(self.a.jobs, lo, hi)):
            tag = f"[r{i:03d}]"
            self.gemini.script_agent(match=tag, queued_for=QUEUED_FOR, run_for=run_for)
            self.jobs.append({"tag": tag, "channel": self.channel_ids[i % len(self.channel_ids)], "run_for": run_for})
        acks = await asyncio.gather(*(
            self.slack.slash_command("/research", f"--now {j['tag']} what changed in topic {n} this year?",
                                     user=HUMANS[n % len(HUMANS)], channel=j["channel"])
            for n, j in enumerate(self.jobs)))
        refused = [a.status for a in acks if a.status != 200]
        if refused:
            raise HarnessError(f"{len(refused)} /research commands not acked with 200: {refused[:5]}")

    def _report_post(self, job: dict) -> float | None:
        """Wall time of the first bot message in the thread of the job's status message."""
        status = next((m for m in self.slack.bot_messages(job["channel"])
                       if job["tag"] in m.visible_text and m.thread_ts in (None, m.ts)), None)
        if status is None:
            return None
        replies = [m for m in self.slack.bot_messages(job["channel"], status.ts) if m.ts != status.ts]
        posted = [self.slack.posted[(m.channel, m.ts)][0] for m in replies if (m.channel, m.ts) in self.slack.posted]
        return min(posted) if posted else None

    async def _until_reported(self, settings) -> None:
        # the longest run, then the longest poll interval twice over (a polled job is seen within one)
        deadline = time.monotonic() + QUEUED_FOR + agent_seconds(self.a.agent_seconds)[1] \
            + 2 * settings.research_poll_max + 30
        while time.monotonic() < deadline:
            if all(self._report_post(j) is not None for j in self.jobs):
                return
            await asyncio.sleep(0.25)
        self.notes.append(f"{self.mode}: deadline reached with reports still missing")

    def _interaction_of(self, tag: str) -> dict | None:
        for iid in self.gemini.interaction_ids():
            info = self.gemini.interaction(iid)
            if info["kind"] == "agent" and tag in info["input_text"]:
                return info
        return None

    def _research_figures(self, machine: dict, settings, wall: float) -> dict:
        gets = [r["path"].rsplit("/", 1)[-1] for r in self.gemini.requests if r["method"] == "GET"]
        lags, polls = [], []
        for job in self.jobs:
            info = self._interaction_of(job["tag"])
            posted = self._report_post(job)
            if info is None:
                continue
            polls.append(gets.count(info["id"]))
            if posted is not None and info["ends_at"]:
                lags.append(posted - info["ends_at"])
        hooks = self.gemini.webhook_deliveries
        return {"scenario": "research", "mode": self.mode, "jobs": len(self.jobs), "replicas": self.a.replicas,
                "agent_seconds": self.a.agent_seconds, "reported": len(lags),
                "completion_to_report_s": an.summary(lags),
                "polls_per_job": {"mean": an.rnd(sum(polls) / len(polls), 2) if polls else None,
                                  "max": max(polls) if polls else None},
                "webhooks": {"sent": len(hooks), "accepted": sum(1 for h in hooks if h.get("status") == 204)},
                "poll_settings": {"initial": settings.research_poll_initial, "max": settings.research_poll_max,
                                  "backoff": settings.research_poll_backoff},
                "durations_s": {"total": an.rnd(wall, 1)}, "notes": self.notes, "machine": machine}


async def run_both(args: argparse.Namespace, machine: dict) -> dict:
    return {mode: await ResearchBench(args, mode).run(machine) for mode in MODES}


def table(runs: dict) -> str:
    """One column per mode: report latency after completion, polls and webhooks per job."""
    w, p = runs["webhooks"], runs["polling"]

    def row(label: str, key) -> list[str]:
        return [label, str(key(w)), str(key(p))]

    def pcts(s: dict) -> str:
        return f"{an.fmt(s['p50'])} / {an.fmt(s['p95'])} / {an.fmt(s['max'])}"
    s = p["poll_settings"]
    return an.render_table(["figure", "webhooks", "polling"], [
        ["jobs / replicas / agent working time (s)", f"{w['jobs']} / {w['replicas']} / {w['agent_seconds']}", ""],
        ["poll initial / max (s), backoff", f"{an.fmt(s['initial'])} / {an.fmt(s['max'])}, x{an.fmt(s['backoff'])}", ""],
        row("reports posted", lambda f: f"{f['reported']} of {f['jobs']}"),
        row("completion -> first report message p50 / p95 / max (s)", lambda f: pcts(f["completion_to_report_s"])),
        row("polls per job mean / max", lambda f: f"{an.fmt(f['polls_per_job']['mean'])} / "
                                                  f"{an.fmt(f['polls_per_job']['max'])}"),
        row("webhooks sent / accepted (204)", lambda f: f"{f['webhooks']['sent']} / {f['webhooks']['accepted']}"),
        row("run wall time (s)", lambda f: an.fmt(f["durations_s"]["total"], 1)),
    ])
