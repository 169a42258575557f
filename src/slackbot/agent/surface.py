"""What the app's own surfaces show: the suggested prompts of the Messages tab and the App Home view.
Pure: built from settings and what the caller read for the person; escaped; within Block Kit's limits.

The Home view shows one person only what is theirs: their research jobs and usage this week, and the
profile of the channel they came from (or look at). The caller reads those for `event.user` alone.
"""

from __future__ import annotations

from ..config import Settings
from ..profiles import Profile
from ..research.status import escape, plain, status_label
from ..store.agent import WeekUsage

MAX_JOBS_SHOWN = 10
_INSTRUCTION_CHARS = 300
_SECTION_CHARS = 3000  # a section block's text


def describe_profile(settings: Settings, profile: Profile, channel_label: str) -> str:
    """The ephemeral text: one line per field, everything from config escaped for mrkdwn."""
    model = profile.model or settings.gemini_model
    tools = list(profile.tools if profile.tools is not None else settings.tool_names)
    tools += [f"{s.name} (MCP)" for s in settings.mcp_server_list
              if profile.mcp_servers is None or s.name in profile.mcp_servers]
    instruction = profile.system_instruction if profile.system_instruction is not None else settings.system_instruction
    if len(instruction) > _INSTRUCTION_CHARS:
        instruction = instruction[: _INSTRUCTION_CHARS - 1] + "…"
    lines = [
        f"*Gemini profile in {escape(channel_label)}: {escape(profile.name)}*",
        f"• Model: `{escape(model)}`",
        f"• Tools: {escape(', '.join(tools)) if tools else 'none'}",
        f"• Thinking level: {escape(profile.thinking_level or 'model default')}",
        f"• Max output tokens: {profile.max_output_tokens or 'model default'}",
        f"• System instruction: {escape(' '.join(instruction.split())) or '(none)'}",
        f"• Research agent: `{escape(profile.research_agent or settings.research_agent)}`",
    ]
    return "\n".join(lines)



def prompts_for(settings: Settings, profile: Profile | None) -> list[dict]:
    """The Messages tab's prompts: the profile's own where one applies, else the settings'."""
    chosen = (profile.suggested_prompts if profile else None) or settings.prompt_list
    return [{"title": p.title, "message": p.message} for p in chosen]


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_CHARS]}}


def _header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def capabilities(settings: Settings, research: bool) -> str:
    lines = ["• *Ask me anything* here in Messages (each message starts its own conversation), or mention "
             "@Gemini in a channel and keep talking in the thread.",
             "• *Message shortcuts*: _Ask Gemini about this message_ and _Summarize thread_ (the ⋯ menu "
             "on any message)."]
    if research:
        lines.append("• *`/research <question>`*: a Deep Research report, posted in a thread. In a thread, the "
                     "_Research this thread_ shortcut or `@Gemini research …` researches what it discussed and shared.")
    lines.append("• *`/gemini`* shows the model, tools and instructions in effect in a channel.")
    if settings.feedback_buttons:
        lines.append("• Rate answers with 👍 / 👎: it tells the people who run me what helps.")
    return "\n".join(lines)


def home_blocks(settings: Settings, *, research: bool, jobs: list, usage: WeekUsage, profile: Profile,
                where: str) -> list[dict]:
    """The Home tab of one person. `where`: the channel they came from, as a label ("#general")."""
    blocks = [_header("Gemini in Slack"), _section(capabilities(settings, research)), {"type": "divider"},
              _header("Your research jobs")]
    if jobs:
        for job in jobs[:MAX_JOBS_SHOWN]:
            blocks.append(_section(f"{status_label(job.status)} · {plain(job.question, 200)}"))
    else:
        blocks.append(_section("_None yet._" + (" Start one with `/research <question>`." if research else "")))
    blocks += [{"type": "divider"}, _header("Your usage this week"),
               _section(f"{usage.answers} answer{'s' if usage.answers != 1 else ''} · "
                        f"{usage.input_tokens:,} tokens in · {usage.output_tokens:,} tokens out"),
               {"type": "divider"}, _section(describe_profile(settings, profile, where))]
    return blocks
