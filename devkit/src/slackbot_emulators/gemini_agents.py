"""Deep Research options of the Interactions emulator: agent names, `agent_config`, the research
plan of collaborative planning and the charts of `visualization: "auto"`.

Shapes as google-genai 3.6.1 defines them (`_gaos/types/interactions/`):
  * agents (agentoption.py): `deep-research-pro-preview-12-2025`, `deep-research-preview-04-2026`,
    `deep-research-max-preview-04-2026` (and the Antigravity agents, accepted but run alike);
  * `agent_config` (deepresearchagentconfig.py): `{"type": "deep-research", "collaborative_planning":
    bool, "visualization": "off" | "auto", "thinking_summaries": "auto" | "none",
    "enable_bigquery_tool": bool}`. With collaborative planning "the agent will provide a research
    plan in its response" and "proceed only if the user confirms the plan in the next turn".

How the emulator plays it (the SDK says no more): a planning turn completes with the plan as its
text; the next agent turn chained to it by `previous_interaction_id` revises the plan while it
still asks for `collaborative_planning`, and otherwise runs the research on the latest plan (and
any words the confirming turn carries, e.g. an edited plan).

Pure: request fields and the chain's plan in, checks (``error``) and texts out.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from .gemini_images import bar_chart_png

AGENTS = {"deep-research-pro-preview-12-2025", "deep-research-preview-04-2026",
          "deep-research-max-preview-04-2026", "antigravity-preview-05-2026", "antigravity-preview-09-2026"}
_DEEP_RESEARCH_KEYS = {"type", "collaborative_planning", "visualization", "thinking_summaries", "enable_bigquery_tool"}
_CONFIG_TYPES = {"deep-research", "dynamic", "antigravity", "code-mender"}  # the SDK's agent_config tags

Error = Callable[[str], Exception]


def validate_agent(body: dict, not_found: Error, error: Error) -> dict:
    """The deep-research options of an agent create ({} when none); 404 for an unknown agent."""
    if body["agent"] not in AGENTS:
        raise not_found(f"Agent '{body['agent']}' not found.")
    config = body.get("agent_config")
    if config is None:
        return {}
    if not isinstance(config, dict) or config.get("type") not in _CONFIG_TYPES:
        raise error(f"agent_config.type: one of {sorted(_CONFIG_TYPES)}.")
    if config["type"] != "deep-research":
        return {}
    extra = set(config) - _DEEP_RESEARCH_KEYS
    if extra:
        raise error(f"agent_config: unknown field(s) {sorted(extra)} for deep-research.")
    for key in ("collaborative_planning", "enable_bigquery_tool"):
        if key in config and not isinstance(config[key], bool):
            raise error(f"agent_config.{key}: must be a boolean.")
    if config.get("visualization", "off") not in ("off", "auto"):
        raise error("agent_config.visualization: 'off' or 'auto'.")
    if config.get("thinking_summaries", "auto") not in ("auto", "none"):
        raise error("agent_config.thinking_summaries: 'auto' or 'none'.")
    return config


def research_plan(topic: str, steps: list[str] | None = None, edits: str = "") -> str:
    """The plan a planning turn answers with: numbered steps, then the question it waits on."""
    steps = steps or [f"Define the scope of {topic[:80]} and the questions that matter most",
                      "Find primary sources, official statistics and recent analyses",
                      "Compare the sources and note where they disagree",
                      "Write a report with a summary, findings, a comparison table and sources"]
    lines = [f"Research plan: {topic[:120]}", ""] + [f"{n}. {s}" for n, s in enumerate(steps, 1)]
    if edits:
        lines += ["", f"Revised as asked: {edits.strip()[:500]}"]
    lines += ["", "Shall I start the research with this plan, or would you like to change it?"]
    return "\n".join(lines)


def plan_section(plan: str, instructions: str) -> str:
    """What a report run after an approved plan says about that plan (so a test can follow it)."""
    text = f"\n## Plan followed\n\n{plan}\n"
    if instructions.strip():
        text += f"\nInstructions with the approval: {instructions.strip()[:500]}\n"
    return text


def charts(topic: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` (title, PNG) pairs: bar charts whose bars come from the topic's hash."""
    out = []
    for n in range(1, count + 1):
        digest = hashlib.sha256(f"{topic}\n{n}".encode()).digest()
        values = [1 + b % 9 for b in digest[:6]]
        out.append((f"Figure {n}: {['Trend by year', 'Share by region', 'Sources by type'][(n - 1) % 3]}",
                    bar_chart_png(values, bar=12, scale=6)))
    return out


def split_for_figures(report: str, count: int) -> list[str]:
    """The report cut before its 3rd, 4th, ... sections ("\n## "): at most ``count + 1`` parts, each
    figure to follow the part that refers to it."""
    starts, pos = [], report.find("\n## ")
    while pos >= 0:
        starts.append(pos)
        pos = report.find("\n## ", pos + 1)
    cuts = starts[2:2 + count]
    return [report[a:b] for a, b in zip([0] + cuts, cuts + [len(report)])]
