"""Prometheus metrics, one registry per process, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()

EVENTS = Counter("slackbot_events_total", "Slack requests received, by kind, outcome and installation (team id)",
                 ["kind", "outcome", "team"], registry=REGISTRY)
ANSWERS = Counter("slackbot_answers_total", "Chat answers by outcome (started, completed, failed)",
                  ["outcome"], registry=REGISTRY)
FIRST_TEXT = Histogram("slackbot_first_visible_text_seconds",
                       "Seconds from Gemini's first text to its first appearance in Slack",
                       buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16), registry=REGISTRY)
SLACK_429 = Counter("slackbot_slack_ratelimited_total", "HTTP 429 answers from Slack, by method",
                    ["method"], registry=REGISTRY)
SLACK_ERRORS = Counter("slackbot_slack_errors_total", "Slack Web API errors, by method and error",
                       ["method", "error"], registry=REGISTRY)
GEMINI_ERRORS = Counter("slackbot_gemini_errors_total", "Gemini call failures, by HTTP code or kind",
                        ["code"], registry=REGISTRY)
GEMINI_RESUMES = Counter("slackbot_gemini_stream_resumes_total", "Broken Gemini streams resumed",
                         registry=REGISTRY)
RESEARCH_JOBS = Counter("slackbot_research_jobs_total", "Research jobs reaching a status",
                        ["status"], registry=REGISTRY)
RESEARCH_TOKENS = Counter("slackbot_research_tokens_total", "Gemini tokens used by research jobs, by agent",
                          ["agent"], registry=REGISTRY)
RESEARCH_DURATION = Histogram("slackbot_research_job_seconds", "Research job run time",
                              buckets=(30, 60, 120, 300, 600, 1200, 2400, 5400), registry=REGISTRY)

TURNS_RECOVERED = Counter("slackbot_turns_recovered_total",
                          "Turns finished by this process after the process running them died", registry=REGISTRY)
TURNS_RECONCILED = Counter("slackbot_turns_reconciled_total",
                           "Posts found already in Slack after a crash, so not posted again", registry=REGISTRY)
DELIVERY_CALLS = Counter("slackbot_delivery_calls_total", "Slack writes spent delivering answers, by kind",
                         ["kind"], registry=REGISTRY)

IMAGES = Counter("slackbot_images_total", "Images Gemini was asked to make (images/), by outcome "
                 "(made, refused, failed, not_shared)", ["outcome"], registry=REGISTRY)
FUNCTION_CALLS = Counter("slackbot_function_calls_total",
                         "Workspace look-ups Gemini asked for (lookup/), by function and outcome "
                         "(ok, withheld, unavailable, refused, bad_call, failed)", ["function", "outcome"],
                         registry=REGISTRY)
FUNCTION_STEPS = Counter("slackbot_function_steps_total", "Gemini steps that ended asking for function calls",
                         registry=REGISTRY)

WORK_IN_FLIGHT = Gauge("slackbot_work_in_flight", "Answers and research steps running in this process",
                       registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)

# Token usage of chat answers (issue 13): what the bot costs, per model and channel profile.
TOKENS = Counter("slackbot_gemini_tokens_total", "Gemini tokens used by chat answers (images made in them included), by model, profile and kind",
                 ["model", "profile", "kind"], registry=REGISTRY)


def count_usage(model: str, profile: str, usage) -> dict:
    """Count one answer's usage (gemini.Usage or None); returns the fields for its log line."""
    if usage is None:
        return {}
    fields = {"tokens_input": usage.input, "tokens_output": usage.output, "tokens_thought": usage.thought,
              "tokens_image": usage.image}
    for kind, value in (("input", usage.input), ("output", usage.output), ("thought", usage.thought),
                        ("image", usage.image)):
        TOKENS.labels(model, profile, kind).inc(value)
    return fields

# The agent surface (issue 19): ratings of answers (a changed vote counts its new rating; a repeat nothing).
FEEDBACK = Counter("slackbot_feedback_total", "Answer ratings (feedback buttons), by rating, model and profile",
                   ["rating", "model", "profile"], registry=REGISTRY)
