"""What a research status message says, as Block Kit. Pure functions."""

from __future__ import annotations

from ..listeners.actions import CANCEL_ACTION

RUNNING = {"starting", "queued", "in_progress", "requires_continuation"}
OUTCOMES = {
    "completed": ("white_check_mark", "Done"),
    "failed": ("x", "Failed"),
    "cancelled": ("no_entry_sign", "Cancelled"),
    "incomplete": ("warning", "Stopped before finishing"),
    "budget_exceeded": ("warning", "Stopped: the research budget ran out"),
    "timed_out": ("hourglass", "Timed out"),
    "requires_action": ("warning", "Stopped: the agent asked for an action this bot can't take"),
    "lost": ("x", "Lost: Gemini no longer knows this research"),
}
RETRY_HINT = "Try again with `/research <question>`, perhaps narrower."


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def status_label(status: str) -> str:
    if status in OUTCOMES:
        emoji, label = OUTCOMES[status]
        return f":{emoji}: {label}"
    if status == "queued":
        return ":hourglass_flowing_sand: Queued"
    if status == "starting":
        return ":hourglass_flowing_sand: Starting"
    return ":mag: Researching"


def status_message(job: dict, *, now: float, note: str = "") -> dict:
    """The status message for a job record (a dict of its Redis fields)."""
    status = job.get("status", "starting")
    elapsed = float(job.get("finished") or now) - float(job.get("created") or now)
    question = job.get("question", "")
    head = f"*Deep Research* · {status_label(status)}\n>{_quote(question)}"
    facts = [f"Asked by <@{job.get('requester', '')}>"]
    if status in RUNNING:
        facts.append(f"running for {duration(elapsed)}")
        if job.get("progress"):
            facts.append(f"latest: _{job['progress'][:150]}_")
    elif status == "completed":
        facts.append(f"took {duration(elapsed)} · report in the thread")
    else:
        facts.append(f"after {duration(elapsed)}")
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)[:2900]}]},
    ]
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2900]}]})
    if status in RUNNING:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": CANCEL_ACTION, "style": "danger", "value": job.get("id", ""),
            "text": {"type": "plain_text", "text": "Cancel"},
        }]})
    fallback = f"Deep Research ({status_label(status)}): {question}"[:3000]
    return {"text": fallback, "blocks": blocks}


def outcome_note(status: str, by_user: str | None = None) -> str:
    if status == "completed":
        return ""
    if status == "cancelled" and by_user:
        # the user's own choice, not a failure: no "perhaps narrower" hint
        return f"Cancelled by <@{by_user}>. Start a new one any time with `/research <question>`."
    return RETRY_HINT


def jobs_list(jobs: list[dict], *, now: float) -> str:
    """`/research status`: the caller's recent jobs, newest first."""
    if not jobs:
        return "You have no research jobs. Start one with `/research <question>`."
    lines = ["*Your research jobs*"]
    for job in jobs:
        elapsed = float(job.get("finished") or now) - float(job.get("created") or now)
        lines.append(f"• {status_label(job.get('status', ''))} ({duration(elapsed)}) in <#{job.get('channel')}>: "
                     f"{_quote(job.get('question', ''))[:120]}")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return " ".join(text.split())
