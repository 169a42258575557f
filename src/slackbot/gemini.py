"""The Gemini Interactions API, seen by the rest of the bot as turns, deltas and research snapshots.

All wire details (event types, step shapes, SDK exceptions) stay in this module.

Retries: the SDK already retries 408/409/429/5xx itself (`GEMINI_RETRY_ATTEMPTS` attempts in all,
its own backoff and Retry-After). We add only what it does not cover, so the two never multiply:
  * a connection refused/dropped before any answer (SDK does not retry it) -> up to
    `SLACKBOT_GEMINI_CONNECT_RETRIES` more tries of `create`;
  * a stream that breaks mid-answer -> resume with `get(id, stream=True, last_event_id=...)`
    up to `SLACKBOT_STREAM_RESUME_ATTEMPTS` times, never a second `create`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from google import genai
from google.genai import types
from google.genai._interactions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    NotFoundError,
)

from . import metrics
from .config import Settings

log = logging.getLogger(__name__)

TERMINAL = {"completed", "failed", "cancelled", "incomplete", "budget_exceeded"}
_TRANSPORT_ERRORS = (APIConnectionError, APITimeoutError, OSError, asyncio.TimeoutError)


@dataclass
class Delta:
    text: str


@dataclass
class Started:
    """Gemini accepted the turn: its interaction id (journalled, so a survivor can replay the stream)."""

    interaction_id: str


@dataclass
class Thought:
    """A thought summary line: shown as the thread status, never in the answer."""

    text: str


@dataclass
class Done:
    interaction_id: str
    status: str


@dataclass
class ResearchSnapshot:
    status: str
    text: str = ""
    progress: str = ""  # latest thought summary line
    citations: list[dict] = field(default_factory=list)


class GeminiError(Exception):
    """A Gemini call that finally failed. `kind` drives what the user is told."""

    def __init__(self, kind: str, detail: str = "", code: int | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # not_found | lost | rate_limited | unavailable | rejected | stream_failed
        self.code = code


def _from_status_error(exc: APIStatusError) -> GeminiError:
    code = exc.status_code
    metrics.GEMINI_ERRORS.labels(str(code)).inc()
    if code == 404:
        return GeminiError("not_found", "unknown interaction", code)
    if code == 429:
        return GeminiError("rate_limited", "quota", code)
    if code >= 500 or code in (408, 409):
        return GeminiError("unavailable", f"HTTP {code}", code)
    return GeminiError("rejected", f"HTTP {code}", code)


def _cache_sdk_model_builds() -> None:
    """Build each of the SDK's (de)serialisation models once instead of per request and per event.

    google-genai 3.4's `_gaos/utils/serializers.py` calls pydantic's `create_model` for every
    request and every streamed event (~15 ms per create, ~1.5 ms per event, on the event loop):
    measured, most of the bot's CPU per answer, and under a burst it delays first tokens by
    seconds. The models depend only on their name and field types, so they are cached by those.
    Without that module (another SDK version) nothing is patched.
    """
    try:
        from google.genai._gaos.utils import serializers
    except ImportError:
        return
    original = getattr(serializers, "create_model", None)
    if original is None or getattr(original, "slackbot_cached", False):
        return
    built: dict = {}

    def create_model(name, **fields):
        try:
            key = (name, tuple(sorted((k, repr(v) if k == "__config__" else v) for k, v in fields.items())))
            model = built.get(key)
        except TypeError:  # an unhashable field type: build it as the SDK would
            return original(name, **fields)
        if model is None:
            model = built[key] = original(name, **fields)
        return model

    create_model.slackbot_cached = True
    serializers.create_model = create_model


def build_client(settings: Settings) -> genai.Client:
    """One long-lived client per process (the async client breaks if its owner is collected)."""
    _cache_sdk_model_builds()
    http = types.HttpOptions(
        base_url=settings.gemini_base_url or None,
        timeout=int(settings.gemini_timeout_seconds * 1000),
        retry_options=types.HttpRetryOptions(attempts=settings.gemini_retry_attempts),
    )
    if settings.use_enterprise:
        return genai.Client(enterprise=True, project=settings.google_cloud_project,
                            location=settings.google_cloud_location, http_options=http)
    return genai.Client(api_key=settings.api_key or "unset", http_options=http)


class _StreamState:
    """Folds stream events into text deltas; remembers what a resume needs."""

    def __init__(self) -> None:
        self.interaction_id: str | None = None
        self.last_event_id: str | None = None
        self.status = "in_progress"
        self.done = False
        self._seen: set[str] = set()

    def consume(self, event: Any) -> "Delta | Thought | Started | None":
        event_id = getattr(event, "event_id", None)
        if event_id:
            if event_id in self._seen:  # a replay after resume: already shown
                return None
            self._seen.add(event_id)
            self.last_event_id = event_id
        kind = getattr(event, "event_type", "")
        if kind in ("interaction.created", "interaction.completed"):
            first = self.interaction_id is None
            self.interaction_id = event.interaction.id
            self.status = str(event.interaction.status)
            self.done = kind == "interaction.completed"
            if first:
                return Started(self.interaction_id)
        elif kind == "interaction.status_update":
            self.status = str(event.status)
        elif kind == "error":
            err = getattr(event, "error", None)
            metrics.GEMINI_ERRORS.labels("stream_error").inc()
            raise GeminiError("unavailable", getattr(err, "message", None) or "stream error")
        elif kind == "step.delta":
            delta_type = getattr(event.delta, "type", "")
            if delta_type == "text":
                return Delta(event.delta.text) if event.delta.text else None
            if delta_type == "thought_summary":
                line = getattr(getattr(event.delta, "content", None), "text", None)
                return Thought(line) if line else None
        return None


class Gemini:
    def __init__(self, settings: Settings, client: genai.Client | None = None):
        self.settings = settings
        self.client = client or build_client(settings)
        self._api = self.client.aio.interactions

    def _turn_body(self, user_input: str | list[dict], previous_id: str | None) -> dict:
        """`user_input`: the message text, or a list of content parts (text first, then the files
        people shared: `files.fetch.TurnInput.input`); the SDK sends either as the turn's input."""
        s = self.settings
        body: dict = {"model": s.gemini_model, "input": user_input, "stream": True, "store": True}
        # turn-scoped: the API does not carry these along the chain
        if s.system_instruction:
            body["system_instruction"] = s.system_instruction
        if s.tool_list:
            body["tools"] = s.tool_list
        config: dict = {"max_output_tokens": s.max_output_tokens}
        if s.thinking_summaries:
            config["thinking_summaries"] = "auto"
        body["generation_config"] = config
        if previous_id:
            body["previous_interaction_id"] = previous_id
        return body

    async def _open(self, body: dict):
        for attempt in range(self.settings.gemini_connect_retries + 1):
            try:
                return await self._api.create(**body)
            except APIStatusError as exc:
                raise _from_status_error(exc) from None
            except _TRANSPORT_ERRORS as exc:
                metrics.GEMINI_ERRORS.labels("connection").inc()
                if attempt == self.settings.gemini_connect_retries:
                    raise GeminiError("unavailable", type(exc).__name__) from None
                await asyncio.sleep(0.5 * 2**attempt)

    async def stream_turn(self, user_input: str | list[dict], previous_id: str | None) -> AsyncIterator[Delta | Thought | Started | Done]:
        """One chat turn, streamed. Resumes a broken stream in place; raises GeminiError at the end."""
        stream = await self._open(self._turn_body(user_input, previous_id))
        async for item in self._follow(stream, _StreamState()):
            yield item

    async def replay_turn(self, interaction_id: str) -> AsyncIterator[Delta | Thought | Started | Done]:
        """A turn another process started: its stream from the first event (Gemini stores it), then on."""
        state = _StreamState()
        state.interaction_id = interaction_id
        yield Started(interaction_id)
        stream = await self._resume(state)
        async for item in self._follow(stream, state):
            yield item

    async def _follow(self, stream, state: _StreamState) -> AsyncIterator[Delta | Thought | Started | Done]:
        started = time.monotonic()
        resumes = 0
        while True:
            try:
                async for event in stream:
                    item = state.consume(event)
                    if item is not None:
                        yield item
                    if state.done:
                        break
            except _TRANSPORT_ERRORS as exc:
                log.info("gemini stream broke", extra={"interaction": state.interaction_id, "error": type(exc).__name__})
            finally:
                await _close_quietly(stream)
            if state.done:
                log.info("gemini turn done", extra={"interaction": state.interaction_id, "status": state.status,
                                                   "latency_ms": int((time.monotonic() - started) * 1000)})
                if state.status != "completed":
                    raise GeminiError("rejected", f"status {state.status}")
                yield Done(state.interaction_id or "", state.status)
                return
            if state.interaction_id is None or resumes >= self.settings.stream_resume_attempts:
                raise GeminiError("stream_failed", "stream ended before the answer was complete")
            resumes += 1
            metrics.GEMINI_RESUMES.inc()
            await asyncio.sleep(0.2 * resumes)
            stream = await self._resume(state)

    async def _resume(self, state: _StreamState):
        try:
            return await self._api.get(state.interaction_id, stream=True, last_event_id=state.last_event_id)
        except APIStatusError as exc:
            error = _from_status_error(exc)
            if error.kind == "not_found":  # Gemini lost the interaction mid-answer: not an expired chain
                error.kind = "lost"
            raise error from None
        except _TRANSPORT_ERRORS:
            return _EmptyStream()  # counts as one more failed resume attempt

    # --- research (background agents) ---------------------------------------------------------
    async def start_research(self, question: str) -> tuple[str, str]:
        try:
            interaction = await self._api.create(
                agent=self.settings.research_agent, input=question, background=True, store=True,
                agent_config={"type": "deep-research", "thinking_summaries": "auto"},
            )
        except APIStatusError as exc:
            raise _from_status_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise GeminiError("unavailable", type(exc).__name__) from None
        return interaction.id, str(interaction.status)

    async def research_snapshot(self, interaction_id: str) -> ResearchSnapshot:
        try:
            interaction = await self._api.get(interaction_id)
        except APIStatusError as exc:
            raise _from_status_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise GeminiError("unavailable", type(exc).__name__) from None
        return snapshot_from(interaction.model_dump(mode="json", exclude_none=True))

    async def cancel(self, interaction_id: str) -> None:
        try:
            await self._api.cancel(interaction_id)
        except APIStatusError as exc:
            raise _from_status_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise GeminiError("unavailable", type(exc).__name__) from None


def snapshot_from(resource: dict) -> ResearchSnapshot:
    """Pull status, report text, latest thought summary and citations out of an Interaction."""
    snap = ResearchSnapshot(status=str(resource.get("status", "unknown")))
    texts: list[str] = []
    for step in resource.get("steps") or []:
        if step.get("type") == "thought":
            line = _summary_text(step.get("summary"))
            if line:
                snap.progress = line.strip().splitlines()[-1][:200]
        elif step.get("type") == "model_output":
            for part in step.get("content") or []:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                    for ann in part.get("annotations") or []:
                        if ann.get("url"):
                            snap.citations.append({"url": ann["url"], "title": ann.get("title") or ann["url"]})
    snap.text = "".join(texts)
    return snap


def _summary_text(summary: Any) -> str:
    if isinstance(summary, str):
        return summary
    if isinstance(summary, dict):
        return summary.get("text", "")
    if isinstance(summary, list):
        return "\n".join(_summary_text(s) for s in summary)
    return ""


async def _close_quietly(stream: Any) -> None:
    close = getattr(stream, "close", None) or getattr(stream, "aclose", None)
    if close is None:
        return
    try:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    except Exception:  # closing a broken stream may raise again; nothing to do about it
        pass


class _EmptyStream:
    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration
