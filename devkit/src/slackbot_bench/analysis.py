"""Pure analysis of a benchmark run: from what the emulators recorded to figures and table rows.

Nothing here does I/O or reads a clock. Times are wall-clock seconds (time.time()) as the emulators
record them; a "timeline" is one Slack message's visible text over time, as a list of (time, text).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

ANSWER_TAG = re.compile(r"^Answer (m\d{6}):")
INPUT_TAG = re.compile(r"\[(m\d{6})\]")


# ----------------------------------------------------------------------------- numbers and text

def pct(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def summary(values: Sequence[float]) -> dict:
    """n, p50, p95 and max of a list of seconds, rounded for the JSON line."""
    return {"n": len(values), "p50": rnd(pct(values, 0.5)), "p95": rnd(pct(values, 0.95)),
            "max": rnd(max(values)) if values else None}


def squash(text: str) -> str:
    return "".join(text.split())


def visible(text: str, blocks) -> str:
    """What a reader sees of a message: its markdown blocks' text when it has any, else `text`."""
    parts = [b.get("text", "") for b in blocks or [] if isinstance(b, dict) and b.get("type") == "markdown"]
    return "\n".join(parts) if parts else text


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def ack_stats(rows: Sequence[tuple], phase: str) -> dict:
    """Acks of one phase from (phase, kind, HTTP status, latency s, error, sent at) rows; status 0 is
    no answer at all (its latency is not a latency)."""
    rows = [r for r in rows if r[0] == phase]
    lat = [r[3] * 1000 for r in rows if r[2] != 0]
    return {"n": len(rows), "p50_ms": rnd(pct(lat, 0.5), 1), "p99_ms": rnd(pct(lat, 0.99), 1),
            "max_ms": rnd(max(lat), 1) if lat else None,
            "non_200": sum(1 for r in rows if r[2] != 200),
            "over_3s": sum(1 for r in rows if r[3] > 3.0),
            "statuses": dict(Counter(str(r[2]) for r in rows)),
            "by_kind": dict(Counter(r[1] for r in rows))}


# ----------------------------------------------------------------------------- answers

def classify(final: str, want: str, stops: Iterable[str]) -> tuple[str, bool]:
    """(status, terminal) of an answer whose messages joined read `final`, Gemini having said `want`.

    "failed" when a failure line shows (terminal), "ok" when the text is Gemini's (whitespace may
    differ where a long answer was split), "incomplete" while it is a prefix, else "wrong"."""
    if any(s and s in final for s in stops):
        return "failed", True
    if final == want or squash(final) == squash(want):
        return "ok", True
    if squash(want).startswith(squash(final)):
        return "incomplete", False
    return "wrong", False


def group_segments(texts: Sequence[str], stops: Iterable[str]) -> tuple[dict[str, list[list[int]]], int]:
    """A thread's bot messages (visible texts, in order) grouped per answer.

    A message starting "Answer m000123:" opens an answer; the messages after it that carry no failure
    line continue it (a long answer split in several). Returns tag -> [[message indexes] per answer
    seen with that tag] and the count of messages that belong to no answer."""
    stops = [s for s in stops if s]
    tagged: dict[str, list[list[int]]] = {}
    untagged = 0
    current: list[int] | None = None
    for i, text in enumerate(texts):
        m = ANSWER_TAG.match(text)
        if m:
            current = [i]
            tagged.setdefault(m.group(1), []).append(current)
        elif current is not None and not any(s in text for s in stops):
            current.append(i)
        else:
            current = None
            untagged += 1
    return tagged, untagged


# ----------------------------------------------------------------------------- timelines

def message_timeline(posted: tuple[float, str] | None, edits: Iterable[tuple[float, str]],
                     stream: Iterable[tuple[float, str]] = ()) -> list[tuple[float, str]]:
    """One message's visible text over time: its post, every chat.update and every stream call,
    in time order, keeping only the moments its text changed."""
    points = sorted(([posted] if posted else []) + list(edits) + list(stream), key=lambda p: p[0])
    out: list[tuple[float, str]] = []
    for t, text in points:
        if not out or text != out[-1][1]:
            out.append((t, text))
    return out


def first_visible(timelines: Iterable[list[tuple[float, str]]], blank: Iterable[str]) -> float | None:
    """When the answer first showed real text (not empty, not a placeholder in `blank`)."""
    blank = {b.strip() for b in blank} | {"", "…"}
    times = [t for tl in timelines for t, text in tl if text.strip() not in blank]
    return min(times) if times else None


def final_at(timelines: Sequence[list[tuple[float, str]]]) -> float | None:
    """When the whole answer was visible: the latest time any of its messages took on the text it
    ended with (a timeline keeps changes only, so a no-op edit or a bare stopStream does not count)."""
    if not timelines or any(not tl for tl in timelines):
        return None
    return max(tl[-1][0] for tl in timelines)


def change_times(timelines: Iterable[list[tuple[float, str]]]) -> list[float]:
    """Every moment the answer's visible text changed, across its messages, in order."""
    return sorted(t for tl in timelines for t, _ in tl)


def longest_stall(changes: Sequence[float], start: float, end: float) -> float | None:
    """The longest a reader waited for the answer to change while Gemini was writing it, from its
    first token (`start`) to its last (`end`): gaps between visible changes, including the wait for
    the first one and from the last one to Gemini's end."""
    if end < start:
        return None
    inside = [t for t in changes if start < t < end]
    points = [start, *inside, end]
    return max(b - a for a, b in zip(points, points[1:])) if len(points) > 1 else 0.0


def sign_of_life(sent: float, status_times: Iterable[float], post_times: Iterable[float]) -> float | None:
    """Seconds from the person's message to the first sign the bot is on it: a thread status
    (assistant.threads.setStatus), or any message the bot posted in the thread (a placeholder, first
    words, or a native stream's start). Events before `sent` belong to earlier turns."""
    after = [t for t in (*status_times, *post_times) if t >= sent]
    return min(after) - sent if after else None


# ----------------------------------------------------------------------------- delivery mix and calls

def delivery_kinds(streamed: Sequence[bool], edit_counts: Sequence[int]) -> set[str]:
    """How an answer reached Slack, from its messages: "native" if any was a native stream, "edits"
    if any was edited with chat.update, "posts" if it was only posted (new messages, never changed)."""
    kinds = set()
    if any(streamed):
        kinds.add("native")
    if any(edit_counts):
        kinds.add("edits")
    return kinds or {"posts"}


def delivery_mix(per_answer: Iterable[set[str]]) -> dict:
    """Answers using each mechanism (an answer that changed course counts under each it used)."""
    counts = Counter(k for kinds in per_answer for k in kinds)
    return {"native": counts.get("native", 0), "edits": counts.get("edits", 0), "posts": counts.get("posts", 0)}


def message_counts(per_answer: Sequence[Sequence[int]]) -> dict:
    """Messages per answer and characters per message, from each delivered answer's messages'
    visible lengths: mean / p95 / max messages, the share delivered as one message, chars p50."""
    counts = [len(lengths) for lengths in per_answer if lengths]
    chars = [n for lengths in per_answer for n in lengths]
    return {"answers": len(counts), "mean": rnd(sum(counts) / len(counts), 2) if counts else None,
            "p95": rnd(pct(counts, 0.95), 2), "max": max(counts) if counts else None,
            "one_message_share": rnd(sum(1 for c in counts if c == 1) / len(counts), 3) if counts else None,
            "chars_p50": rnd(pct(chars, 0.5), 1)}


def calls_by_method(calls: Iterable[tuple[str, int]]) -> dict[str, dict]:
    """(method, HTTP status) of every Slack call -> {method: {"calls": n, "429": n}}, by method name."""
    out: dict[str, dict] = {}
    for method, status in calls:
        row = out.setdefault(method, {"calls": 0, "429": 0})
        row["calls"] += 1
        row["429"] += status == 429
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------- tables

def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: a rule, the header, a rule, the rows, a rule."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def compare_rows(rows_a: Sequence[tuple[str, str, float | None]],
                 rows_b: Sequence[tuple[str, str, float | None]]) -> list[tuple[str, str, str, str]]:
    """Two runs' rows (label, shown value, headline number) side by side with a / b of the numbers."""
    b_by_label = {label: (shown, num) for label, shown, num in rows_b}
    out = []
    for label, shown, num in rows_a:
        shown_b, num_b = b_by_label.get(label, ("-", None))
        r = ratio(num, num_b)
        out.append((label, shown, shown_b, "-" if r is None else f"{r:.2f}"))
    seen = {label for label, _, _ in rows_a}
    out += [(label, "-", shown, "-") for label, shown, _ in rows_b if label not in seen]
    return out


def metric_sum(page: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus text page's samples of `name` that carry these labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(page) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def leaks(answers: Iterable[tuple[str, str]], seeded: Iterable[tuple[str, str]], public: set[str]) -> int:
    """How many times an answer shows a seeded message, or links to its conversation, that not everyone
    reading the answer may read: from a conversation that is neither public nor the answer's own."""
    seeded = list(seeded)
    count = 0
    for channel, text in answers:
        for origin, content in seeded:
            if origin in public or origin == channel:
                continue
            count += (content in text) + (f"/archives/{origin}/" in text)
    return count
