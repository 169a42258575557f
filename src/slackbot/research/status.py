"""What a research status message and `/research status` say, as Block Kit and mrkdwn. Pure functions.

The question is the user's text and the progress line is Gemini's (which may quote any web page
Deep Research read): both are escaped wherever they enter `mrkdwn` or `text`, so `<!channel>`,
`<@U…>` or `<https://evil|Slack login>` show as typed and never ping anyone or become a link.
"""

from __future__ import annotations

from ..store.jobs import Job

CANCEL_ACTION = "research_cancel"  # the status message's Cancel button (listeners/actions.py routes it)
START_ACTION = "research_start"  # a plan's Start button
EDIT_ACTION = "research_edit_plan"  # a plan's Edit plan button (opens EDIT_VIEW)
EDIT_VIEW = "research_edit_plan_view"  # the Edit plan modal's callback_id
EDIT_INPUT = "plan_text"  # its text input's block and action id
START_WORDS = "Yes, start the research with this plan."  # the confirming turn Start sends

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
    "plan_expired": ("hourglass", "Cancelled: the plan waited too long for Start"),
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
    if status == "awaiting_approval":
        return ":raised_hand: Plan ready: start, edit or cancel"
    if status == "approved":
        return ":hourglass_flowing_sand: Sending your answer to the agent"
    return ":mag: Researching"


def _elapsed(job: Job, now: float) -> float:
    return (job.finished or now) - (job.created or now)


def _research_time(job: Job, now: float) -> float:
    """How long the research itself ran (after the plan was approved)."""
    return (job.finished or now) - (job.research_started or job.created or now)


def agent_name(agent: str) -> str:
    return f"`{escape(agent)}`" if agent else "the research agent"


def plan_lines(plan: str, limit: int = 2800) -> str:
    """The agent's plan (untrusted) as a readable quoted list, escaped, within one section's room."""
    lines = [plain(line, 400) for line in plan.splitlines() if line.strip()]
    text, used = [], 0
    for line in lines:
        if used + len(line) + 3 > limit:
            text.append(">…")
            break
        text.append(f">{line}")
        used += len(line) + 3
    return "\n".join(text) or ">_(the agent sent an empty plan)_"


def _button(action_id: str, label: str, job_id: str, style: str = "") -> dict:
    button = {"type": "button", "action_id": action_id, "value": job_id,
              "text": {"type": "plain_text", "text": label}}
    if style:
        button["style"] = style
    return button


def status_message(job: Job, *, now: float, note: str = "") -> dict:
    """chat.postMessage / chat.update kwargs for a job's status message."""
    head = f"*Deep Research* · {status_label(job.status)}\n>{plain(job.question, 2800)}"
    facts = [f"Asked by <@{job.requester}>"]
    if job.running and not job.awaiting:
        facts.append(f"running for {duration(_elapsed(job, now))}")
        if job.progress:
            facts.append(f"latest: _{plain(job.progress, 150)}_")
        if job.phase == "plan":
            facts.append("drafting a research plan for your approval")
    elif job.awaiting:
        facts.append("only they can start, edit or cancel it")
    elif job.status == "completed":
        facts.append(f"{agent_name(job.agent)} took {duration(_research_time(job, now))} · report in the thread")
    elif job.finished:
        facts.append(f"after {duration(_elapsed(job, now))}")
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    if job.plan and (job.awaiting or job.status == "approved"):
        blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": "*Research plan*\n"
                                                      + plan_lines(job.plan)}})
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2900]}]})
    if job.awaiting:
        blocks.append({"type": "actions", "elements": [
            _button(START_ACTION, "Start", job.id, "primary"), _button(EDIT_ACTION, "Edit plan", job.id),
            _button(CANCEL_ACTION, "Cancel", job.id, "danger")]})
    elif job.running:
        blocks.append({"type": "actions", "elements": [_button(CANCEL_ACTION, "Cancel", job.id, "danger")]})
    fallback = f"Deep Research ({status_label(job.status)}): {plain(job.question, 2800)}"
    return {"text": fallback, "blocks": blocks}


def outcome_note(status: str, by_user: str = "") -> str:
    if status == "completed":
        return ""
    if status == "plan_expired":
        return "Nobody pressed Start, so I cancelled it. Run `/research <question>` again when you are ready."
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
PLAN_OVER = "This plan has already been answered (or the research ended), so there is nothing to start."


def plan_refused(requester: str) -> str:
    return f"Only <@{requester}> can start or edit this research plan."


def edit_view(job_id: str, plan: str, channel: str) -> dict:
    """The Edit plan modal: the plan as editable text; what is submitted goes to the agent as the next turn."""
    return {"type": "modal", "callback_id": EDIT_VIEW, "private_metadata": f"{job_id} {channel}",
            "title": {"type": "plain_text", "text": "Edit research plan"},
            "submit": {"type": "plain_text", "text": "Send to the agent"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [{"type": "input", "block_id": EDIT_INPUT, "label": {"type": "plain_text",
                                                                          "text": "The plan: edit it, or write what to change"},
                        "element": {"type": "plain_text_input", "action_id": EDIT_INPUT, "multiline": True,
                                    "max_length": 3000, "initial_value": plan[:3000]}}]}


def cancel_refused(requester: str) -> str:
    return f"Only <@{requester}> can cancel this research."


def cannot_post(error: str) -> str:
    if error in ("not_in_channel", "channel_not_found"):
        return ("I can't post in this channel. Invite me with `/invite @bot` (or run `/research` "
                "where I'm a member), then try again.")
    return "I couldn't post the research status message here, so I didn't start the research."


# Why a long report is in the thread rather than a canvas: one line, by Slack's answer to canvases.create
_NO_CANVAS = {
    "free_team_canvas_tab_already_exists": "this channel already has its canvas (the free plan allows one)",
    "channel_canvas_already_exists": "this channel already has its canvas",
    "free_teams_cannot_create_non_tabbed_canvases": "this workspace's plan does not allow it here",
    "missing_scope": "I don't have permission to create canvases (an admin can add canvases:write)",
    "not_allowed_token_type": "I don't have permission to create canvases",
    "restricted_action": "I'm not a member of this channel (invite me to get reports as canvases)",
    "not_in_channel": "I'm not a member of this channel (invite me to get reports as canvases)",
}


def canvas_fallback(error: str) -> str:
    reason = _NO_CANVAS.get(error, "Slack could not create it just now")
    return f"_The report is below and attached as a Markdown file rather than a canvas: {reason}._"


def canvas_pointer(title: str, link: str) -> str:
    """The thread's message pointing at the report's canvas (the title is the bot's own, already folded)."""
    where = f"<{link}|{escape(title)}>" if link else f"*{escape(title)}* (in this channel's canvas tabs)"
    return f":page_facing_up: The full report is a canvas: {where}. Ask follow-up questions here in the thread."


def figure_title(n: int, title: str) -> str:
    """An uploaded figure's title: its number and the agent's name for it (control characters folded)."""
    folded = " ".join(title.split())[:100].replace("<", "‹").replace(">", "›")
    if folded.lower().startswith("figure"):
        return folded
    return f"Figure {n}: {folded}" if folded else f"Figure {n}"


def with_figure_pointers(text: str, figures: list[tuple[int, str]], failed: set[int]) -> str:
    """The report with a line where each figure stood, pointing at its upload in the thread (or saying it
    could not be uploaded, so the text still reads well). `figures`: (offset, title) in report order."""
    out, last = [], 0
    for n, (offset, title) in enumerate(figures, 1):
        out.append(text[last:offset])
        name = figure_title(n, title)
        note = "could not be uploaded" if n in failed else "is attached in this thread"
        out.append(f"\n\n_({name} {note}.)_\n\n")
        last = offset
    out.append(text[last:])
    return "".join(out)
