"""What a research status message and `/research status` say, as Block Kit and mrkdwn. Pure functions.

The question is the user's text and the progress line is Gemini's (which may quote any web page
Deep Research read): both are escaped wherever they enter `mrkdwn` or `text`, so `<!channel>`,
`<@U…>` or `<https://evil|Slack login>` show as typed and never ping anyone or become a link.
"""

from __future__ import annotations

from ..store.jobs import Job

CANCEL_ACTION = "research_cancel"  # the status message's Cancel button (listeners/actions.py routes it)

OUTCOMES = {
    "completed": ("white_check_mark", "Done"),
    "failed": ("x", "Failed"),
    "cancelled": ("no_entry_sign", "Cancelled"),
    "incomplete": ("warning", "Stopped before finishing"),
    "budget_exceeded": ("warning", "Stopped: the research budget ran out"),
    "timed_out": ("hourglass", "Timed out"),
    "requires_action": ("warning", "Stopped: the agent asked for an action this bot can't take"),
    "lost": ("x", "Lost: Gemini no longer knows this research"),
    "not_started": ("x", "Failed: the research never started (the bot may have restarted)"),
}
RETRY_HINT = "Try again with `/research <question>`, perhaps narrower."


def escape(text: str) -> str:
    """Slack's three control characters, so untrusted text is shown, never parsed as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int) -> str:
    """Untrusted text for one line of mrkdwn: whitespace folded, escaped, at most `limit` characters
    once escaped (cut with "…", never inside an entity such as `&lt;`)."""
    out = escape(" ".join(text.split()))
    if len(out) <= limit:
        return out
    out = out[: limit - 1]
    amp = out.rfind("&", max(0, len(out) - 4))
    if amp != -1 and ";" not in out[amp:]:
        out = out[:amp]
    return out + "…"


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
    if status == "posting":
        return ":memo: Posting the report"
    return ":mag: Researching"


def _elapsed(job: Job, now: float) -> float:
    return (job.finished or now) - (job.created or now)


def status_message(job: Job, *, now: float, note: str = "") -> dict:
    """chat.postMessage / chat.update kwargs for a job's status message."""
    head = f"*Deep Research* · {status_label(job.status)}\n>{plain(job.question, 2800)}"
    facts = [f"Asked by <@{job.requester}>"]
    if job.running:
        facts.append(f"running for {duration(_elapsed(job, now))}")
        if job.progress:
            facts.append(f"latest: _{plain(job.progress, 150)}_")
    elif job.status == "completed":
        facts.append(f"took {duration(_elapsed(job, now))} · report in the thread")
    elif job.finished:
        facts.append(f"after {duration(_elapsed(job, now))}")
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2900]}]})
    if job.running:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": CANCEL_ACTION, "style": "danger", "value": job.id,
            "text": {"type": "plain_text", "text": "Cancel"},
        }]})
    fallback = f"Deep Research ({status_label(job.status)}): {plain(job.question, 2800)}"
    return {"text": fallback, "blocks": blocks}


def outcome_note(status: str, by_user: str = "") -> str:
    if status == "completed":
        return ""
    if status == "cancelled" and by_user:
        # the user's own choice, not a failure: no "perhaps narrower" hint
        return f"Cancelled by <@{by_user}>. Start a new one any time with `/research <question>`."
    return RETRY_HINT


def jobs_list(jobs: list[Job], *, now: float) -> str:
    """`/research status`: the caller's recent jobs, newest first."""
    if not jobs:
        return "You have no research jobs. Start one with `/research <question>`."
    lines = ["*Your research jobs*"]
    for job in jobs:
        lines.append(f"• {status_label(job.status)} ({duration(_elapsed(job, now))}) in <#{job.channel}>: "
                     f"{plain(job.question, 120)}")
    return "\n".join(lines)


def file_title(question: str) -> str:
    """The report file's title. Titles are shown as plain text, but they also reach notifications and
    search: keep Slack's control characters out (escaping would show `&lt;` literally there)."""
    folded = " ".join(question.split())[:80].replace("<", "‹").replace(">", "›")
    return f"Research: {folded}"


ORPHANED = ("I can't find this research any more (its record is gone, perhaps after a restart), so there is "
            "nothing to cancel. Start it again with `/research <question>` if you still need it.")


ALREADY_OVER = "This research has already finished, so there is nothing to cancel."


def cancel_refused(requester: str) -> str:
    return f"Only <@{requester}> can cancel this research."


def cannot_post(error: str) -> str:
    if error in ("not_in_channel", "channel_not_found"):
        return ("I can't post in this channel. Invite me with `/invite @bot` (or run `/research` "
                "where I'm a member), then try again.")
    return "I couldn't post the research status message here, so I didn't start the research."
