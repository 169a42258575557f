"""The audit trail: one structured line per turn and per research job (who, where, model, tools and
functions used, tokens, outcome, interaction ids; the asker's text only with SLACKBOT_AUDIT_CONTENT),
logged and, with SLACKBOT_AUDIT_FILE, appended to a JSON Lines file an operator ships to their SIEM."""

from __future__ import annotations

import json
import logging
import threading
import time

from ..config import Settings

log = logging.getLogger("slackbot.audit")
_write_lock = threading.Lock()


def record(settings: Settings, kind: str, *, team: str, user: str, channel: str, thread: str, model: str,
           outcome: str, interactions: list[str], tokens: dict, tools: list[str] = (), functions: list[str] = (),
           text: str = "") -> dict:
    """Log (and sink) one audit line; returns it."""
    line = {"audit": kind, "at": round(time.time(), 3), "team": team, "user": user, "channel": channel,
            "thread_ts": thread, "model": model, "outcome": outcome, "interactions": list(interactions),
            "tools": sorted(set(tools)), "functions": sorted(set(functions)), **tokens}
    if settings.audit_content and text:
        line["text"] = text
    log.info("audit", extra={k: v for k, v in line.items() if k != "text"} if "text" in line and
             not settings.log_content else line)
    if settings.audit_file:
        try:
            with _write_lock, open(settings.audit_file, "a", encoding="utf-8") as sink:
                sink.write(json.dumps(line, ensure_ascii=False) + "\n")
        except OSError:
            log.warning("could not write the audit file")
    return line
