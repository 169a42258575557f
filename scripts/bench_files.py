"""Figures for shared files (issue 10): a 5 MB image and a 20 MB PDF, each shared in a DM.

Runs the real bot as its own `slackbot serve` process (so its memory is its own), with both
emulators and the timer in this process, over loopback and a real Redis. For each file it reports
  * event -> Gemini request: from the signed delivery to the emulator receiving the create
    (download from Slack + base64 + the SDK's request), and
  * event -> first visible text: to the first non-placeholder text of the answer in Slack,
  * the bot's RSS before the turn and its peak during it (VmHWM, reset before each turn by
    writing 5 to /proc/<pid>/clear_refs), so the growth per turn is measured, not the start-up peak.
The emulator answers at once (no first-token delay), so the times are the bot's and the wire's.

    PYTHONPATH=src .venv/bin/python scripts/bench_files.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

from slackbot_emulators.gemini import GeminiEmulator
from slackbot_emulators.slack import SlackEmulator

SIGNING_SECRET, BOT_TOKEN = "bench-signing-secret", "xoxb-bench-token"
MB = 1_000_000
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


async def wait_for(predicate, timeout: float, interval: float = 0.002):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(interval)
    return value


async def one_turn(slack: SlackEmulator, gemini: GeminiEmulator, pid: int, name: str, mime: str,
                   data: bytes) -> dict:
    before = len(slack.bot_messages("D_ALICE"))
    requests_before = len(gemini.requests)
    file = slack.host_file(name, data, mimetype=mime)
    rss_before = proc_kb(pid, "VmRSS")
    reset_peak(pid)
    t0 = time.monotonic()
    wall0 = time.time()
    await slack.user_shares("D_ALICE", f"what is in {name}?", [file])

    def first_text():
        msgs = slack.bot_messages("D_ALICE")[before:]
        return msgs and msgs[0].visible_text.strip()  # the first message is posted with Gemini's first words
    await wait_for(first_text, 120)
    first_visible = time.monotonic() - t0
    sha = hashlib.sha256(data).hexdigest()
    await wait_for(lambda: any(sha in m.visible_text for m in slack.bot_messages("D_ALICE")[before:]), 120)
    creates = [r for r in gemini.requests[requests_before:] if r["method"] == "POST"]
    to_gemini = creates[0]["time"] - wall0 if creates else float("nan")
    await asyncio.sleep(0.3)  # let the turn's tail (head move, log line) run before reading the peak
    return {"file": name, "bytes": len(data), "to_gemini_s": to_gemini, "first_visible_s": first_visible,
            "rss_before_mb": rss_before / 1024, "peak_mb": proc_kb(pid, "VmHWM") / 1024}


async def fetch_only(slack: SlackEmulator, name: str, mime: str, data: bytes) -> dict:
    """The bot's own share of the memory: files.fetch.turn_parts alone (download + base64), traced."""
    import tracemalloc

    from slackbot.config import Settings
    from slackbot.files.fetch import turn_parts

    settings = Settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url)
    file = slack.host_file(name, data, mimetype=mime)
    tracemalloc.start()
    parts = await turn_parts([file], "what is this?", settings, bot_user_id="UBOT")
    _, peak = tracemalloc.get_traced_memory()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(parts.parts) == 2
    return {"file": name, "bytes": len(data), "peak": peak, "held": held}


async def main(runs: int) -> None:
    slack = SlackEmulator(signing_secret=SIGNING_SECRET, bot_token=BOT_TOKEN)
    gemini = GeminiEmulator(chunk_chars=40, chunk_delay=0.01)
    await slack.start()
    await gemini.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_APP_TOKEN": "",
        "SLACK_API_URL": slack.api_url, "GEMINI_API_KEY": "bench-key", "GEMINI_BASE_URL": gemini.base_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "PORT": str(port),
        "SLACKBOT_HOST": "127.0.0.1", "SLACKBOT_REDIS_PREFIX": f"bench-files-{secrets.token_hex(4)}",
        "SLACKBOT_LOG_LEVEL": "WARNING", "SLACKBOT_RESEARCH_WORKER": "false",
        # this checkout's code, whatever the working directory of the bot process
        "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]),
    })
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env=env, cwd=tmp,
                                stdin=subprocess.DEVNULL)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(500):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.02)
            slack.app_url = f"http://127.0.0.1:{port}/slack/events"
            # warm-up: imports, connections, the SDK's models, one small file of each kind
            await one_turn(slack, gemini, proc.pid, "warm.png", "image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(1000))
            await one_turn(slack, gemini, proc.pid, "warm.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(1000))
            rows = []
            for _ in range(runs):
                rows.append(await one_turn(slack, gemini, proc.pid, "photo.png", "image/png",
                                           b"\x89PNG\r\n\x1a\n" + os.urandom(5 * MB - 8)))
                rows.append(await one_turn(slack, gemini, proc.pid, "contract.pdf", "application/pdf",
                                           b"%PDF-1.7\n" + os.urandom(20 * MB - 9)))
        finally:
            proc.terminate()
            proc.wait(30)
    fetched = [await fetch_only(slack, "photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(5 * MB - 8)),
               await fetch_only(slack, "contract.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(20 * MB - 9))]
    await slack.stop()
    await gemini.stop()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores ({cpu}), {proc_total_gb():.1f} GB RAM, Python {platform.python_version()}")
    print(f"{'file':<14}{'MB':>6}{'event->Gemini s':>17}{'event->first text s':>21}{'RSS before MB':>15}"
          f"{'peak MB':>9}{'growth MB':>11}{'growth/file':>13}")
    for r in rows:
        growth = r["peak_mb"] - r["rss_before_mb"]
        print(f"{r['file']:<14}{r['bytes'] / MB:>6.1f}{r['to_gemini_s']:>17.2f}{r['first_visible_s']:>21.2f}"
              f"{r['rss_before_mb']:>15.1f}{r['peak_mb']:>9.1f}{growth:>11.1f}{growth * 2**20 / r['bytes']:>12.2f}x")
    print("files.fetch.turn_parts alone (download + base64 part), tracemalloc in this process:")
    for r in fetched:
        print(f"  {r['file']:<14}{r['bytes'] / MB:>6.1f} MB: peak {r['peak'] / 2**20:.1f} MB "
              f"({r['peak'] / r['bytes']:.2f}x the file), held after {r['held'] / 2**20:.1f} MB (the base64 part)")


def proc_total_gb() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
