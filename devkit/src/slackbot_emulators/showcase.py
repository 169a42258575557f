"""Deterministic showcase answers of the Interactions emulator.

Without a Gemini key the sandbox talks to the emulator, whose default answer is an echo
("Reply N to: ..."). A newcomer who asks for a table, code, a list or sources should see how the
bot renders each in Slack, so a question that asks for one of these by name gets a realistic
Markdown answer instead: the same words always give the same answer (tests rely on it), and
anything else still gets the echo. Sources and code runs come only when the request declares
the tool (google_search, code_execution), as a real model can call only declared tools.

A request for a picture ("draw ...") when the request offers `generate_image` calls it with the
request as the prompt, then says the picture is in the thread.

A question about what people said or decided ("what did Bob say about the launch?"), when the
request offers the bot's `search_slack` function, is answered the way a model uses it: a
`function_call` searching for the topic, then (`summarise`) an answer built from what the search
returned, quoting each message with its author and channel.

Pure: the question's words and the declared tools in, a plan for the emulator's timeline out.
"""

from __future__ import annotations

import base64
import json

from .gemini_images import bar_chart_png

# (section, words that ask for it, tool the request must declare); sections appear in this order
_TRIGGERS = (
    ("search", {"search", "sources", "latest", "news"}, "google_search"),
    ("table", {"table", "tables"}, None),
    ("list", {"list", "checklist", "steps"}, None),
    ("code", {"code", "function", "snippet"}, None),
    ("code_run", {"calculate", "plot", "chart"}, "code_execution"),
    ("essay", {"essay"}, None),
)
_EVERYTHING = {"markdown", "formatting", "showcase"}  # one answer with every kind of block

_TABLE = ("A quick comparison of three stores:\n\n"
          "| Store | Best for | Trade-off |\n|---|---|---|\n"
          "| Redis | Shared, short-lived state | Bounded by memory |\n"
          "| PostgreSQL | Durable relational data | Heavier writes |\n"
          "| SQLite | One process, one file | One writer at a time |\n")
_LIST = ("How I would approach it:\n\n"
         "1. **Reproduce** the problem with the smallest input you can.\n"
         "2. **Read** the logs around the first error, not the last.\n"
         "3. **Change one thing** at a time and note what you changed.\n"
         "4. **Write a test** that fails before the fix and passes after.\n\n"
         "- Keep the notes in the ticket, so the next person starts where you stopped.\n"
         "- Ask for a second pair of eyes after an hour without progress.\n")
_CODE = ("A small Python helper that retries a flaky call:\n\n"
         "```python\nimport time\n\n\ndef retry(call, attempts=3, delay=0.5):\n"
         "    \"\"\"Call `call`, waiting twice as long after each failure.\"\"\"\n"
         "    for attempt in range(attempts):\n        try:\n            return call()\n"
         "        except ConnectionError:\n            if attempt == attempts - 1:\n                raise\n"
         "            time.sleep(delay * 2 ** attempt)\n```\n\n"
         "`retry(fetch)` tries three times, waiting 0.5 s and then 1 s between tries.\n")
_SEARCH = ("Recent reporting agrees on the main trend, while the sources differ on how fast "
           "it is moving. The official guidance lists what to prepare first.\n")
_SEARCH_SOURCES = [
    {"url": "https://news.example.org/analysis", "title": "News analysis", "cite": "agrees on the main trend"},
    {"url": "https://guidance.example.net/overview", "title": "Official guidance", "cite": "official guidance"},
]
_VALUES = [3, 1, 4, 1, 5, 9, 2, 6]


_CODE_RUN = {"tool": "code_execution", "code": f"values = {_VALUES}\nprint(sum(values) / len(values))",
             "output": f"{sum(_VALUES) / len(_VALUES)}\n", "image": base64.b64encode(bar_chart_png(_VALUES)).decode()}
_QUOTE = "> Make it work, make it right, make it fast.\n"


def _essay(topic: str) -> str:
    parts = [f"# {topic}\n\n"]
    for n, name in enumerate(("Background", "How it works", "Where it helps", "Where it hurts", "In practice"), 1):
        parts.append(f"## {n}. {name}\n\n" + (
            f"This section looks at {name.lower()}. Most of what matters here is ordinary engineering: "
            "clear ownership, small steps and a way to tell whether a change helped. Teams that write "
            "down what they expect before they change anything learn faster than teams that do not. ") * 3
            + "\n\n")
    return "".join(parts)


def _topic(text: str) -> str:
    line = " ".join(text.split())[:80]
    return line or "your question"


_DRAW = {"draw", "picture", "sketch", "illustrate", "illustration"}  # a picture asked for (generate_image)
_SAID = {"say", "said", "says", "decide", "decided", "discuss", "discussed", "mention", "mentioned"}
_NOT_TOPIC = {"the", "a", "an", "our", "this", "that", "we", "us", "what", "did", "does", "do", "about", "on",
              "of", "in", "for", "to", "is", "was", "were", "anyone", "someone", "people", "slack"} | _SAID


def _topic_words(text: str) -> str:
    """What a "what did X say about Y" question is about: the words after "about" (else all), common ones out."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    if "about" in words:
        words = words[words.index("about") + 1:]
    return " ".join(w for w in words if w not in _NOT_TOPIC and len(w) > 1)


def results_summary(steps: list[dict]) -> str:
    """The answer to a showcased search: each message the function_results hold (the bot's JSON), quoted."""
    lines = []
    for step in steps:
        if step.get("type") != "function_result" or not isinstance(step.get("result"), str):
            continue
        try:
            result = json.loads(step["result"])
        except ValueError:
            continue
        for msg in result.get("messages") or [] if isinstance(result, dict) else []:
            lines.append(f"- **{msg.get('author', 'Someone')}** in {msg.get('channel', 'a channel')} "
                         f"({str(msg.get('date', ''))[:10]}): {msg.get('text', '')}")
        if isinstance(result, dict) and result.get("withheld"):
            lines.append(f"- Some of what I found is {result['withheld']}.")
        if isinstance(result, dict) and result.get("error"):
            lines.append(f"- The search was {result['error']}.")
    if not lines:
        return "I searched Slack but found nothing about that.\n"
    return "Here is what I found in Slack:\n\n" + "\n".join(lines) + "\n"


def showcase_plan(text: str, declared_tools: set[str], functions: set[str] = frozenset()) -> dict:
    """{"text", "tool_steps", "annotations"} for a question that asks for a showcased block by name,
    a `search_slack` call for a question about what people said (when the request offers it), else {}
    (the caller's echo stands)."""
    words = set("".join(c if c.isalpha() else " " for c in text.lower()).split())  # one linear pass
    if "generate_image" in functions and words & _DRAW:
        return {"calls": [{"name": "generate_image", "arguments": {"prompt": _topic(text)}}],
                "then_text": "I made the picture you asked for; it is in the thread above.\n"}
    if "search_slack" in functions and words & _SAID and _topic_words(text):
        return {"calls": [{"name": "search_slack", "arguments": {"query": _topic_words(text)}}], "summarise": True}
    everything = bool(words & _EVERYTHING)
    wanted = [name for name, triggers, tool in _TRIGGERS
              if (everything or words & triggers) and (tool is None or tool in declared_tools)]
    if everything:
        wanted = [w for w in wanted if w != "essay"]
    if not wanted:
        return {}
    topic = _topic(text)
    body, steps, annotations = [], [], []
    if everything:
        body.append(f"## {topic}\n\nMarkdown in Slack: **bold**, _italic_, ~~struck~~, `inline code` and "
                    "[a link](https://example.com/markdown).\n")
    for name in wanted:
        if name == "search":
            steps.append({"tool": "google_search", "queries": [topic]})
            annotations.extend(_SEARCH_SOURCES)
            body.append(_SEARCH)
        elif name == "code_run":
            steps.append(_CODE_RUN)
            body.append("I ran the numbers: the mean of the eight values is **3.875**, and the plot shows "
                        "how they spread.\n")
        elif name == "essay":
            body.append(_essay(topic))
        else:
            body.append({"table": _TABLE, "list": _LIST, "code": _CODE}[name])
    if everything:
        body.append(_QUOTE)
    return {"text": "\n".join(body).rstrip() + "\n", "tool_steps": steps, "annotations": annotations}
