"""Local emulator of the Gemini Interactions API (google-genai 3.4.0 wire format).

The real SDK works against it unchanged:
``genai.Client(api_key="test", http_options=types.HttpOptions(base_url=emu.base_url))``, or in
Enterprise mode ``genai.Client(enterprise=True, project=..., location=..., http_options=...)`` with
a service-account key whose ``token_uri`` is ``{emu.base_url}/token``: the emulator issues the
access token and then accepts only that Bearer token on ``/v1beta1/projects/{p}/locations/{l}/...``.

Design: every interaction is a *timeline* computed once at create time, a list of
``(due, event)`` pairs on the monotonic clock. Nothing runs in the background:
a stream handler writes each event when it falls due, a non-streaming GET folds
the events already due into an Interaction resource, and a resume GET starts
the same walk after ``last_event_id``. So streamed, polled and resumed views can
never disagree, a "broken" stream keeps generating server-side for free, and a
stream costs one handler coroutine and no other task (cheap for load tests).
``cancel`` is the only mutation: it drops the events not yet due and appends
the cancelled ones, waking sleeping streams through ``_Record.changed``.

Stream ``index`` values are positions in the resource's ``steps`` list, whose
first entries are the input steps (``user_input``), so output steps start at 1.

Beside this module: function calling (``gemini_functions``: a scripted turn ends ``requires_action``
with ``function_call`` steps; the follow-up's ``function_result`` input is checked against them and
runs the rest of the script), image models (``gemini_images``), Deep Research options
(``gemini_agents``) and webhook deliveries (``gemini_webhooks``, the one thing done in a task: a
POST once the timeline's last event falls due). ``delete`` scrubs an interaction's text from every
record and log here, so a test can prove nothing of it is left (``contains_text``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import copy
import datetime
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import gemini_agents as agents
from . import gemini_functions as functions
from . import gemini_images as images
from . import gemini_webhooks as webhooks
from . import guard
from .showcase import results_summary, showcase_plan

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_TERMINAL = {"completed", "failed", "cancelled", "incomplete", "budget_exceeded"}
_STEP_TYPES = {"user_input", "model_output", "thought", "function_call", "function_result"}  # step.py variants
# parsed JSON body, stored on the request by the logging middleware
_BODY = web.RequestKey("json_body", object) if hasattr(web, "RequestKey") else "json_body"
_LOG = web.RequestKey("log_entry", dict) if hasattr(web, "RequestKey") else "log_entry"  # its requests entry
_API = r"/{version:v1[a-z0-9]*}/interactions"  # the SDK sends /v1/...; accept v1beta etc.
# Enterprise (Vertex) mode: google-genai 3.6 sends /v1beta1/projects/{p}/locations/{l}/interactions with
# "Authorization: Bearer <access token>" (_gaos/google_genai.py: get_google_genai_api_version)
_ENTERPRISE_API = r"/{version:v1[a-z0-9]*}/projects/{project}/locations/{location}/interactions"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_NO_CREDENTIAL = ("Request is missing required authentication credential. Expected OAuth 2 access token, "
                  "login cookie or other valid authentication credential.")
_BAD_CREDENTIAL = ("Request had invalid authentication credentials. Expected OAuth 2 access token, "
                   "login cookie or other valid authentication credential.")


class _ApiError(Exception):
    """Raised by handlers; turned into the Google error body by ``_error_response``."""

    def __init__(self, code: int, message: str, status: str | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, message)


def _not_found(message: str) -> _ApiError:
    return _ApiError(404, message)


def _error_response(code: int, message: str, status: str | None = None, headers=None) -> web.Response:
    status = status or _STATUS_NAMES.get(code, "UNKNOWN")
    body = {"error": {"code": code, "message": message, "status": status}}
    return web.json_response(body, status=code, headers=headers)


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, int(size))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _input_steps(value: Any) -> list[dict]:
    """Normalise every accepted ``input`` shape to a list of steps."""
    if isinstance(value, str):
        return [{"type": "user_input", "content": [{"type": "text", "text": value}]}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _ApiError(400, "input must be a string, a content block or a non-empty list")
    if all(isinstance(v, dict) and ("content" in v or v.get("type") in _STEP_TYPES) for v in value):
        return copy.deepcopy(value)  # a list of steps (user_input, function_result, ...)
    return [{"type": "user_input", "content": copy.deepcopy(value)}]  # a list of content blocks


def _text_of(value: Any) -> str:
    """Joined text parts of any input shape (content blocks nested in steps included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_text_of(v) for v in value) if t)
    if isinstance(value, dict):
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return value["text"]
        if value.get("type") == "function_result":
            return functions.result_text(value.get("result"))
        return _text_of(value.get("content", ""))
    return ""


def _jwt_claims(assertion: str) -> dict | None:
    """The payload of a compact JWT, or None if it is not one."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


# --- file content parts (image, document, audio, video), checked as the SDK defines them -------------
def _media_parts(steps: list[dict]) -> list[dict]:
    """Validate every content block of the input steps; a summary (type, MIME, size, sha256) of each
    file part, so a test can prove the exact bytes arrived. 400 for what the API would refuse."""
    from slackbot.files.kinds import MIME_PARTS  # read from the SDK's own Literal types

    seen = []
    for step in steps:
        for block in step.get("content") or [] if isinstance(step, dict) else []:
            if not isinstance(block, dict):
                raise _ApiError(400, "Each content block must be an object.")
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise _ApiError(400, "A text content block needs 'text'.")
                continue
            if kind not in ("image", "document", "audio", "video"):
                continue  # tool results and the like: not this emulator's concern
            mime = block.get("mime_type")
            if MIME_PARTS.get(mime) != kind:
                raise _ApiError(400, f"Unsupported MIME type '{mime}' for {kind} content.")
            if ("data" in block) == ("uri" in block):
                raise _ApiError(400, f"A {kind} content block needs exactly one of 'data' or 'uri'.")
            if "uri" in block:
                seen.append({"type": kind, "mime_type": mime, "uri": block["uri"]})
                continue
            try:
                raw = base64.b64decode(block["data"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise _ApiError(400, f"Invalid base64 in {kind} content 'data'.") from None
            seen.append({"type": kind, "mime_type": mime, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    return seen


def _describe_media(media: list[dict]) -> str:
    """What the default reply says about the files it received (a digest a test can compare)."""
    return "".join(f"\n[{m['type']} {m['mime_type']} {m.get('bytes', 0)} bytes sha256:{m.get('sha256', '-')}]"
                   for m in media)


def _with_showcase(rec: "_Record") -> dict:
    """The plan, or for an unscripted question that asks for a table, code, sources... by name, a
    realistic answer (showcase.py) under what was scripted; the echo otherwise."""
    if "text" in rec.plan or "calls" in rec.plan:
        return rec.plan
    declared = {tool.get("type") for tool in rec.body.get("tools") or [] if isinstance(tool, dict)}
    shown = showcase_plan(rec.input_text, declared, functions.declared_functions(rec.body))
    if not shown:
        return rec.plan
    if "text" in shown:
        shown["text"] += _describe_media(rec.media)
    return {**shown, **rec.plan}


@dataclass
class _Record:
    """One interaction: the request, its precomputed timeline and some flags."""

    id: str
    kind: str  # "model" | "agent"
    body: dict
    input_steps: list[dict]
    input_text: str
    previous_id: str | None
    plan: dict
    t0: float  # time.monotonic() at creation
    wall0: float  # wall clock at creation
    timeline: list[tuple[float, dict]] = field(default_factory=list)
    stored: bool = True
    gone: bool = False  # deleted or forgotten: the API answers 404
    stream_connections: int = 0
    resume_breaks: int = 0
    media: list[dict] = field(default_factory=list)  # what each file part carried (see _media_parts)
    image: dict | None = None  # image options of an image-model request (gemini_images.image_request)
    agent_config: dict = field(default_factory=dict)  # validated deep-research options
    pending_calls: list[dict] = field(default_factory=list)  # function_call steps awaiting results
    continuation: dict | None = None  # the script a follow-up with those results runs
    research_plan: str | None = None  # the plan a collaborative-planning turn answered with
    topic: str = ""  # what a research chain is about (the question of its first turn)
    first_text_sent: float | None = None  # wall clock when a stream first wrote a text delta
    last_event_sent: float | None = None  # wall clock of the latest event any stream wrote
    changed: asyncio.Future | None = None

    def add(self, due: float, event_type: str, **payload) -> None:
        # event ids are positional, so "replay after X" is a slice of the timeline
        self.timeline.append((due, {"event_type": event_type, **payload,
                                    "event_id": f"evt_{len(self.timeline)}"}))

    def who(self) -> dict:
        return {"agent": self.body["agent"]} if self.kind == "agent" else {"model": self.body["model"]}

    def head(self, status: str, **extra) -> dict:
        """The partial interaction object carried by lifecycle events."""
        return {"id": self.id, "status": status, "object": "interaction", **self.who(),
                "created": _iso(self.wall0), **extra}


class GeminiEmulator:
    def __init__(self, *, chunk_chars: int = 24, chunk_delay: float = 0.01, first_token_delay: float = 0.0):
        self.agent_defaults: dict = {}  # plan fields every agent run starts from (the sandbox slows them)
        self.planning_defaults: dict = {}  # over those, for collaborative-planning turns (plans come sooner)
        # image_scale shrinks generated pictures (1K -> 64 px by default; 1 = real size) and
        # image_noise makes them as large as photographs: both for memory benchmarks
        self.config = {"chunk_chars": chunk_chars, "chunk_delay": chunk_delay,
                       "first_token_delay": first_token_delay, "image_scale": 1 / 16, "image_noise": False}
        self.base_url = ""
        self.requests: list[dict] = []
        self.function_results: list[dict] = []  # every function_result received, checked, in order
        self.image_requests: list[dict] = []  # every image generation or edit asked for
        self.webhook_deliveries: list[dict] = []  # every webhook POST made (or skipped)
        self.deleted: list[dict] = []  # {"id", "time"} of each interactions.delete
        # while True, interactions.delete answers 503 without deleting (Gemini's side is down); each
        # refused delete is counted, so a test can wait for the bot to have tried
        self.deletes_down = False
        self.deletes_refused = 0
        self._tasks: set[asyncio.Task] = set()  # pending webhook deliveries
        self._plans: collections.deque = collections.deque()
        self._agent_plans: collections.deque = collections.deque()
        self._records: dict[str, _Record] = {}
        self.access_tokens: dict[str, dict] = {}  # issued by POST /token: token -> the JWT's claims
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._log_middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        for api in (_API, _ENTERPRISE_API):
            r.add_post(api, self._h_create)
            r.add_get(api + "/{id}", self._h_get)
            r.add_post(api + "/{id}/cancel", self._h_cancel)
            r.add_delete(api + "/{id}", self._h_delete)
        r.add_post("/token", self._h_token)  # a service account's token_uri (OAuth 2 JWT bearer grant)
        r.add_post("/_emu/script", self._c_script)
        r.add_post("/_emu/script_agent", self._c_script)
        r.add_post("/_emu/forget/{id}", self._c_forget)
        r.add_get("/_emu/interactions/{id}", self._c_interaction)
        r.add_get("/_emu/requests", self._c_requests)
        r.add_get("/_emu/model_creates", self._c_model_creates)
        r.add_get("/_emu/logs", self._c_logs)
        r.add_post("/_emu/reset", self._c_reset)
        r.add_post("/_emu/config", self._c_config)
        # access_log=None: per-request logging would dominate a load benchmark
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # port 0 -> the kernel's pick
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ scripting
    def script(self, **plan) -> None:
        self._plans.append(self._new_plan(plan))

    def script_agent(self, **plan) -> None:
        self._agent_plans.append(self._new_plan(plan))

    @staticmethod
    def _new_plan(plan: dict) -> dict:
        plan = dict(plan)
        if plan.get("fail_status"):
            plan["_fails_left"] = int(plan.get("fail_times", 1))
        return plan

    def forget(self, interaction_id: str) -> None:
        self._records[interaction_id].gone = True

    def interaction(self, interaction_id: str) -> dict:
        rec = self._records[interaction_id]
        now = time.monotonic()
        future_text = "".join(e["delta"]["text"] for _, e in rec.timeline
                              if e["event_type"] == "step.delta" and e["delta"]["type"] == "text")
        return {"id": rec.id, "kind": rec.kind, "request": rec.body, "input_text": rec.input_text, "media": rec.media,
                "pending_calls": rec.pending_calls, "research_plan": rec.research_plan,
                "output_text": future_text, "status": self._fold(rec)["status"],
                "previous_interaction_id": rec.previous_id, "stored": rec.stored, "gone": rec.gone,
                "stream_connections": rec.stream_connections,
                "first_text_sent": rec.first_text_sent, "last_event_sent": rec.last_event_sent,
                # wall clock when the timeline's last event is due: a run's completion, however it is read
                "ends_at": rec.wall0 + (rec.timeline[-1][0] - rec.t0) if rec.timeline else None,
                "events": [e for due, e in rec.timeline if due <= now]}

    def interaction_ids(self) -> list[str]:
        """Every interaction created so far, oldest first (the benchmark maps them to messages)."""
        return list(self._records)

    def model_creates(self) -> list[dict]:
        """Bodies of accepted (HTTP 200) model creates; injected failures are only in ``requests``."""
        return [r["body"] for r in self.requests
                if r["method"] == "POST" and r["path"].endswith("/interactions")
                and r["status"] == 200 and isinstance(r["body"], dict) and "model" in r["body"]]

    def reset(self) -> None:
        """Forget plans, interactions and every log (the pace config is kept)."""
        self._plans.clear()
        self._agent_plans.clear()
        self._records.clear()
        for log in (self.requests, self.function_results, self.image_requests, self.webhook_deliveries, self.deleted):
            log.clear()
        self.deletes_down, self.deletes_refused = False, 0

    def stored_ids(self) -> list[str]:
        """Interactions a client can still read (stored, neither deleted nor past retention)."""
        return [i for i, rec in self._records.items() if rec.stored and not rec.gone]

    def contains_text(self, text: str) -> bool:
        """Whether ``text`` is anywhere the emulator keeps data: interactions, the request log, the
        function results, image requests and webhook bodies (a deletion test asserts False)."""
        kept = [self.requests, self.function_results, self.image_requests, self.webhook_deliveries,
                [(r.body, r.input_steps, r.input_text, r.timeline, r.research_plan, r.topic, r.continuation)
                 for r in self._records.values()]]
        return text in json.dumps(kept, default=str, ensure_ascii=False)

    def _take_plan(self, queue: collections.deque, text: str) -> dict:
        """First plan whose ``match`` is in the input; plans with failures left stay queued."""
        for plan in queue:
            if plan.get("match") is None or plan["match"] in text:
                if plan.get("_fails_left", 0) <= 0:
                    queue.remove(plan)
                return plan
        return {}

    # ------------------------------------------------------------------ HTTP plumbing
    @web.middleware
    async def _log_middleware(self, request: web.Request, handler):
        if request.path.startswith("/_emu/"):  # control: local Host and JSON POSTs only (guard.py)
            return await guard.local_control(request, handler)
        if request.path == "/token":  # the OAuth endpoint needs no credential of its own
            return await handler(request)
        raw = await request.read() if request.can_read_body else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request[_BODY] = body
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        entry = {"method": request.method, "path": request.path, "query": dict(request.query),
                 "body": body, "status": None, "time": time.time(),
                 "bearer": bearer if scheme.lower() == "bearer" else None}
        self.requests.append(entry)
        request[_LOG] = entry
        try:
            self._check_credential(request, entry["bearer"])
            resp = await handler(request)
        except _ApiError as e:
            resp = _error_response(e.code, e.message, e.status)
        except web.HTTPException as e:  # aiohttp's own 404/405 for unknown routes
            resp = _error_response(e.status, e.reason)
        entry["status"] = resp.status
        return resp

    def _check_credential(self, request: web.Request, bearer: str | None) -> None:
        """Enterprise paths take only an access token this emulator issued (as Google checks its
        own); the Developer API takes an API key (or any Authorization header)."""
        if "project" in request.match_info:
            if not bearer:
                raise _ApiError(401, _NO_CREDENTIAL)
            if bearer not in self.access_tokens:
                raise _ApiError(401, _BAD_CREDENTIAL)
        elif not (request.headers.get("x-goog-api-key") or request.headers.get("authorization")):
            raise _ApiError(403, "Method doesn't allow unregistered callers. Please use an API key.")

    async def _h_token(self, request: web.Request) -> web.Response:
        """OAuth 2 token endpoint for a service account (RFC 7523 JWT bearer grant, as google-auth
        sends it to the key file's token_uri). The claims are checked; the signature is not (the
        emulator keeps no registry of public keys)."""
        form = await request.post()
        if form.get("grant_type") != _JWT_BEARER:
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": "Invalid grant_type."}, status=400)
        claims = _jwt_claims(str(form.get("assertion", "")))
        if claims is None or not claims.get("iss") or not str(claims.get("aud", "")).endswith("/token") \
                or not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time():
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "Invalid JWT: bad claims or expired."}, status=400)
        token = f"ya29.emu-{uuid.uuid4().hex}"
        self.access_tokens[token] = claims
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _get_record(self, interaction_id: str) -> _Record:
        rec = self._records.get(interaction_id)
        if rec is None or rec.gone or not rec.stored:
            raise _ApiError(404, f"Interaction '{interaction_id}' not found.")
        return rec

    # ------------------------------------------------------------------ create
    async def _h_create(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _ApiError(400, "Request body must be a JSON object.")
        kind = self._validate_create(body)
        steps = _input_steps(body["input"])
        media = _media_parts(steps)
        text = _text_of(body["input"])
        prev = self._records.get(body.get("previous_interaction_id") or "")
        results = functions.check_results(prev.pending_calls if prev else [], steps, _bad_request)
        image = images.image_request(body, _bad_request) if kind == "model" else None
        agent_config = agents.validate_agent(body, _not_found, _bad_request) if kind == "agent" else {}
        if results and prev.continuation is not None:  # the model goes on where its script said
            plan = copy.deepcopy(prev.continuation)
        else:
            plan = self._take_plan(self._agent_plans if kind == "agent" else self._plans, text)
        if plan.get("_fails_left", 0) > 0:  # injected failure; the SDK retries 429/5xx itself
            plan["_fails_left"] -= 1
            headers = {"Retry-After": str(plan["retry_after"])} if "retry_after" in plan else None
            return _error_response(int(plan["fail_status"]), "Injected failure.", headers=headers)
        rec = _Record(id=f"v1_{uuid.uuid4().hex}", kind=kind, body=body, input_steps=steps,
                      input_text=text, previous_id=body.get("previous_interaction_id"), plan=plan,
                      t0=time.monotonic(), wall0=time.time(), stored=body.get("store", True) is not False,
                      resume_breaks=self._resume_breaks(plan), media=media, image=image, agent_config=agent_config)
        request[_LOG]["interaction_id"] = rec.id  # so a delete can scrub the request's text
        calls = {c["id"]: c for c in prev.pending_calls} if results else {}
        self.function_results.extend(
            {"interaction_id": rec.id, "previous_interaction_id": prev.id, "call_id": r["call_id"],
             "name": calls[r["call_id"]]["name"], "result": r["result"], "is_error": bool(r.get("is_error"))}
            for r in results)
        (self._build_agent if kind == "agent" else self._build_model)(rec)
        self._records[rec.id] = rec
        if (body.get("webhook_config") or {}).get("uris") and rec.stored:
            task = asyncio.get_running_loop().create_task(self._webhook_when_done(rec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if body.get("stream"):
            return await self._stream(request, rec, 0)
        if not body.get("background"):  # a blocking create answers once generation is over
            await self._wait_until(rec, lambda: rec.timeline[-1][0])
        return web.json_response(self._fold(rec))

    def _validate_create(self, body: dict) -> str:
        if ("model" in body) == ("agent" in body):
            raise _ApiError(400, "Exactly one of 'model' or 'agent' must be set.")
        if "input" not in body:
            raise _ApiError(400, "'input' is required.")
        prev = body.get("previous_interaction_id")
        if body.get("store") is False and (prev or body.get("background")):
            raise _ApiError(400, "'store=false' cannot be combined with previous_interaction_id or background.")
        if "agent" in body and not body.get("background"):
            raise _ApiError(400, "Agent interactions require background=true.")
        if prev:
            self._get_record(prev)  # 404 if unknown, deleted or past retention
        if "webhook_config" in body:
            webhooks.validate_config(body["webhook_config"], _bad_request)
        _validate_turn_fields(body)
        return "agent" if "agent" in body else "model"

    @staticmethod
    def _resume_breaks(plan: dict) -> int:
        value = plan.get("break_resume")
        if value is True:
            return 1 << 30  # "always"
        return int(value or 0)

    def _depth(self, rec: _Record) -> int:
        depth, prev = 1, rec.previous_id
        while prev and prev in self._records and depth < 10_000:
            depth, prev = depth + 1, self._records[prev].previous_id
        return depth

    def _pace(self, rec: _Record, name: str) -> float:
        return float(rec.plan.get(name, self.config[name]))

    def _build_model(self, rec: _Record) -> None:
        """Timeline of a model turn: created, [thought step], output step, final status."""
        plan, t = _with_showcase(rec), rec.t0
        reply = plan.get("text", f"Reply {self._depth(rec)} to: {rec.input_text}{_describe_media(rec.media)}")
        size, gap = self._pace(rec, "chunk_chars"), self._pace(rec, "chunk_delay")
        rec.add(t, "interaction.created", interaction=rec.head("in_progress"))
        rec.add(t, "interaction.status_update", interaction_id=rec.id, status="in_progress")
        t += self._pace(rec, "first_token_delay")
        index = len(rec.input_steps)
        if plan.get("thought"):
            rec.add(t, "step.start", index=index, step={"type": "thought"})
            for piece in _chunks(plan["thought"], size):
                rec.add(t, "step.delta", index=index,
                        delta={"type": "thought_summary", "content": {"type": "text", "text": piece}})
                t += gap
            # real thinking models also stream an opaque signature: clients must skip it
            rec.add(t, "step.delta", index=index, delta={"type": "thought_signature", "signature": "c2lnbmF0dXJl"})
            rec.add(t, "step.stop", index=index)
            index += 1
        if plan.get("tool_steps"):
            t, index = _add_tool_steps(rec, plan["tool_steps"], t, index, gap)
        calls = self._function_calls(rec, plan)
        if calls:  # the turn ends asking for the results (gemini_functions.py)
            if plan.get("preface"):  # a model may say something before its calls, in the same turn
                rec.add(t, "step.start", index=index, step={"type": "model_output"})
                for piece in _chunks(plan["preface"], size):
                    rec.add(t, "step.delta", index=index, delta={"type": "text", "text": piece})
                    t += gap
                rec.add(t, "step.stop", index=index)
                index += 1
            for call in calls:
                rec.add(t, "step.start", index=index, step={**call, "arguments": {}})
                for piece in _chunks(json.dumps(call["arguments"]), size):
                    rec.add(t, "step.delta", index=index, delta={"type": "arguments_delta", "arguments": piece})
                    t += gap
                rec.add(t, "step.stop", index=index)
                index += 1
            self._finish(rec, t, "requires_action", json.dumps([c["arguments"] for c in calls]),
                         plan.get("thought", ""))
            return
        reply = plan.get("then_text", reply) if "calls" in plan and "text" not in plan else reply
        if plan.get("summarise") and "then_text" not in plan:  # a showcased search: answer from its results
            reply = results_summary(rec.input_steps)
        if plan.get("error_event"):
            reply = reply[: len(reply) // 2]  # fail half-way through the answer
        picture = self._picture(rec, plan)
        step = {"type": "model_output", **({"error": images.SAFETY_BLOCK} if picture and picture["refused"] else {})}
        rec.add(t, "step.start", index=index, step=step)
        if rec.image and not rec.image["text"]:
            reply = ""  # images only: no words
        for i, piece in enumerate(_chunks(reply, size) if reply else []):
            t += gap if i else 0.0
            rec.add(t, "step.delta", index=index, delta={"type": "text", "text": piece})
        if picture and not picture["refused"]:
            t += gap
            rec.add(t, "step.delta", index=index, delta={"type": "image", "mime_type": "image/png",
                                                         "data": picture["data"]})
        if plan.get("annotations"):
            # grounding metadata streams after the text it annotates, as text_annotation_delta
            rec.add(t, "step.delta", index=index,
                    delta={"type": "text_annotation_delta", "annotations": _annotations(plan["annotations"], reply)})
        if plan.get("error_event"):
            rec.add(t, "error", error={"code": "INTERNAL", "message": str(plan["error_event"])})
            return
        if plan.get("off_schema_event"):  # a server bug: an event the SDK's own types reject
            rec.add(t, "step.delta", index=index, delta={"type": "text", "text": {"not": "a string"}})
        rec.add(t, "step.stop", index=index)
        image_tokens = images.IMAGE_TOKENS[rec.image["image_size"]] if picture and not picture["refused"] else 0
        self._finish(rec, t, plan.get("status", "completed"), reply, plan.get("thought", ""), image_tokens)

    def _function_calls(self, rec: _Record, plan: dict) -> list[dict]:
        """The function_call steps this turn makes (only offered functions), remembering what the
        follow-up with their results will run: the script's next call step or its final text."""
        steps = functions.call_steps(plan.get("calls"))
        calls = functions.make_calls(steps[0], functions.declared_functions(rec.body)) if steps else []
        if calls:
            rec.pending_calls = calls
            rest = {k: v for k, v in plan.items()
                    if k not in ("calls", "text", "then_text", "match", "thought", "preface")}
            rec.continuation = {**rest, "calls": steps[1:]}
            if "then_text" in plan:
                rec.continuation["then_text"] = plan["then_text"]
        return calls

    def _picture(self, rec: _Record, plan: dict) -> dict | None:
        """The image an image-model turn returns: a PNG whose bands encode the prompt and any input
        images (so an edit differs from a generation), or a scripted safety refusal. Recorded."""
        if rec.image is None:
            return None
        inputs = [m for m in rec.media if m["type"] == "image"]
        seed = (rec.input_text + "".join(m.get("sha256", m.get("uri", "")) for m in inputs)).encode()
        width, height = images.dimensions(rec.image["aspect_ratio"], rec.image["image_size"],
                                          float(plan.get("image_scale", self.config["image_scale"])))
        refused = bool(plan.get("refuse_image"))
        png = b"" if refused else images.render(seed, width, height,
                                                bool(plan.get("image_noise", self.config["image_noise"])))
        self.image_requests.append({
            "interaction_id": rec.id, "model": rec.body["model"], "prompt": rec.input_text, "input_images": inputs,
            "aspect_ratio": rec.image["aspect_ratio"], "image_size": rec.image["image_size"],
            "width": width, "height": height, "refused": refused, "colours": images.band_colours(seed),
            "sha256": hashlib.sha256(png).hexdigest() if png else None})
        return {"refused": refused, "data": base64.b64encode(png).decode()}

    def _finish(self, rec: _Record, t: float, status: str, text: str, thought: str = "", image_tokens: int = 0) -> None:
        inp, out, th = _tokens(rec.input_text), _tokens(text), _tokens(thought)
        usage = {"total_input_tokens": inp, "total_output_tokens": out + image_tokens,
                 "total_thought_tokens": th, "total_tokens": inp + out + th + image_tokens}
        if image_tokens:
            usage["output_tokens_by_modality"] = [{"modality": "text", "tokens": out},
                                                  {"modality": "image", "tokens": image_tokens}]
        rec.add(t, "interaction.status_update", interaction_id=rec.id, status=status)
        updated = _iso(rec.wall0 + (t - rec.t0))
        rec.add(t, "interaction.completed", interaction=rec.head(status, usage=usage, updated=updated))

    def _build_agent(self, rec: _Record) -> None:
        """Deep-research timeline: ``queued`` for queued_for s, ``in_progress`` for run_for s (thought
        steps spread over it), then ``final_status`` with the report. ``statuses`` replaces the phases."""
        planning = self.planning_defaults if rec.agent_config.get("collaborative_planning") else {}
        plan, t = {**self.agent_defaults, **planning, **rec.plan}, rec.t0
        phases = plan.get("statuses") or [["queued", plan.get("queued_for", 0.2)],
                                          ["in_progress", plan.get("run_for", 1.0)]]
        rec.add(t, "interaction.created", interaction=rec.head(phases[0][0]))
        work_start = None
        for status, seconds in phases:
            rec.add(t, "interaction.status_update", interaction_id=rec.id, status=status)
            if status == "in_progress" and work_start is None:
                work_start = t
            t += float(seconds)
        final = plan.get("final_status", "completed")
        prev = self._records.get(rec.previous_id or "")
        planned = prev.research_plan if prev is not None and prev.kind == "agent" else None
        rec.topic = prev.topic if planned else (rec.input_text.strip() or "the topic")
        topic = rec.topic
        thoughts = plan.get("thoughts") or [
            f"Planning the research on {topic[:80]}", "Searching the web for primary sources",
            "Reading and comparing the sources", "Drafting the report and checking citations"]
        if rec.agent_config.get("thinking_summaries") == "none":
            thoughts = []
        start = rec.t0 if work_start is None else work_start
        index = len(rec.input_steps)
        for i, thought in enumerate(thoughts):  # spread evenly over the working time
            at = start + (t - start) * i / len(thoughts)
            rec.add(at, "step.start", index=index, step={"type": "thought"})
            rec.add(at, "step.delta", index=index,
                    delta={"type": "thought_summary", "content": {"type": "text", "text": thought}})
            rec.add(at, "step.stop", index=index)
            index += 1
        # thoughts were appended out of time order: sort (stably, so a status comes before a thought
        # due at the same time) and renumber, since event ids are positions
        rec.timeline.sort(key=lambda pair: pair[0])
        rec.timeline[:] = [(due, {**e, "event_id": f"evt_{n}"}) for n, (due, e) in enumerate(rec.timeline)]
        if final == "failed":
            rec.add(t, "error", error={"code": "INTERNAL", "message": plan.get("error_event", "Research failed.")})
            return
        report = ""
        if rec.agent_config.get("collaborative_planning") and final == "completed":
            # a planning turn: the plan (revised by this turn's words when it follows a plan), then wait
            report = rec.research_plan = agents.research_plan(topic, plan.get("plan_steps"),
                                                              rec.input_text if planned else "")
            self._add_report(rec, t, index, report, [], [])
        elif final == "completed" or "report" in plan:
            report, annotations = (plan["report"], []) if "report" in plan else _default_report(topic)
            if planned:
                report += agents.plan_section(planned, rec.input_text)
            figures = (agents.charts(topic, int(plan.get("charts", 2)))
                       if rec.agent_config.get("visualization") == "auto" else [])
            self._add_report(rec, t, index, report, annotations, figures)
        self._finish(rec, t, final, report, " ".join(thoughts))

    @staticmethod
    def _add_report(rec: _Record, t: float, index: int, report: str, annotations: list[dict],
                    figures: list[tuple[str, bytes]]) -> None:
        """The report's model_output step; with figures (visualization "auto") each chart follows the
        part of the text that refers to it, and each part carries its own citations."""
        rec.add(t, "step.start", index=index, step={"type": "model_output"})
        parts = agents.split_for_figures(report, len(figures)) if figures else [report]
        offset = 0
        for n, part in enumerate(parts):
            figure = figures[n] if n < len(figures) else None
            words = part + (f"\n\n{figure[0]} is shown below.\n" if figure else "")
            for piece in _chunks(words, 1500):
                rec.add(t, "step.delta", index=index, delta={"type": "text", "text": piece})
            own = [{**a, "start_index": a["start_index"] - offset, "end_index": a["end_index"] - offset}
                   for a in annotations if offset <= a["start_index"] < offset + len(part)]
            if own:
                rec.add(t, "step.delta", index=index, delta={"type": "text_annotation_delta", "annotations": own})
            if figure:
                rec.add(t, "step.delta", index=index, delta={"type": "image", "mime_type": "image/png",
                                                             "data": base64.b64encode(figure[1]).decode()})
            offset += len(part)
        for title, png in figures[len(parts):]:  # a report with fewer sections than charts
            rec.add(t, "step.delta", index=index, delta={"type": "text", "text": f"\n\n{title}:\n"})
            rec.add(t, "step.delta", index=index, delta={"type": "image", "mime_type": "image/png",
                                                         "data": base64.b64encode(png).decode()})
        rec.add(t, "step.stop", index=index)

    # ------------------------------------------------------------------ read side
    def _fold(self, rec: _Record, include_input: bool = False) -> dict:
        """The Interaction resource as of now: the input steps plus every event already due."""
        now = time.monotonic()
        res: dict[str, Any] = {"id": rec.id, "object": "interaction", "status": "in_progress", **rec.who(),
                               "created": _iso(rec.wall0), "steps": copy.deepcopy(rec.input_steps)}
        if rec.previous_id:
            res["previous_interaction_id"] = rec.previous_id
        if include_input:
            res["input"] = rec.body["input"]
        last, arguments = rec.t0, {}
        for due, event in rec.timeline:
            if due > now:
                break
            _apply(res, event, arguments)
            last = due
        res["updated"] = _iso(rec.wall0 + (last - rec.t0))
        return res

    async def _h_get(self, request: web.Request) -> web.StreamResponse:
        rec = self._get_record(request.match_info["id"])
        if request.query.get("stream", "false").lower() != "true":
            return web.json_response(self._fold(rec, request.query.get("include_input") == "true"))
        start = 0
        last_id = request.query.get("last_event_id")
        if last_id:
            try:
                start = int(last_id.removeprefix("evt_")) + 1
            except ValueError:
                raise _ApiError(400, f"Invalid last_event_id '{last_id}'.") from None
        if rec.resume_breaks > 0 and (last_id or rec.stream_connections > 0):
            # break_resume: headers, then a cut; the SDK's iterator raises APIConnectionError
            rec.resume_breaks -= 1
            return await self._stream(request, rec, start, cut_after=0)
        return await self._stream(request, rec, start)

    async def _stream(self, request, rec: _Record, start: int, cut_after: int | None = None):
        """Write the timeline from ``start`` as SSE, each event when it falls due."""
        first = rec.stream_connections == 0
        rec.stream_connections += 1
        clean_after = None
        if first and "break_after_events" in rec.plan:
            cut_after = int(rec.plan["break_after_events"])
        if first and "end_early_after_events" in rec.plan:
            clean_after = int(rec.plan["end_early_after_events"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        i, sent = start, 0
        try:
            while i < len(rec.timeline) and sent != cut_after and sent != clean_after:
                due, event = rec.timeline[i]
                if due > time.monotonic():
                    await self._sleep(rec, due - time.monotonic())
                    continue  # re-check: a cancel may have replaced the tail
                frame = f"event: {event['event_type']}\nid: {event['event_id']}\ndata: {json.dumps(event)}\n\n"
                await resp.write(frame.encode())
                rec.last_event_sent = time.time()
                if rec.first_text_sent is None and event.get("delta", {}).get("type") == "text":
                    rec.first_text_sent = rec.last_event_sent
                i, sent = i + 1, sent + 1
            if sent == cut_after:
                # close() flushes what was written, then FIN without the final empty chunk:
                # the client sees a truncated chunked body (httpx RemoteProtocolError)
                request.transport.close()
                return resp
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away; the interaction itself carries on
        return resp

    async def _sleep(self, rec: _Record, delay: float) -> None:
        if rec.changed is None or rec.changed.done():
            rec.changed = asyncio.get_running_loop().create_future()
        await asyncio.wait([rec.changed], timeout=delay)  # no extra task, unlike wait_for

    async def _wait_until(self, rec: _Record, due_fn) -> None:
        while (left := due_fn() - time.monotonic()) > 0:
            await self._sleep(rec, left)

    async def _h_cancel(self, request: web.Request) -> web.Response:
        rec = self._get_record(request.match_info["id"])
        status = self._fold(rec)["status"]
        if status in _TERMINAL:
            # documented choice: the real API refuses to cancel a finished interaction
            raise _ApiError(400, f"Interaction is already in terminal state '{status}'.", "FAILED_PRECONDITION")
        now = time.monotonic()
        rec.timeline[:] = [(due, e) for due, e in rec.timeline if due <= now]
        rec.add(now, "interaction.status_update", interaction_id=rec.id, status="cancelled")
        rec.add(now, "interaction.completed", interaction=rec.head("cancelled", updated=_iso(time.time())))
        if rec.changed is not None and not rec.changed.done():
            rec.changed.set_result(None)  # wake streams and blocking creates
        return web.json_response(self._fold(rec))

    async def _h_delete(self, request: web.Request) -> web.Response:
        """interactions.delete: 404 from then on for get, stream, cancel and previous_interaction_id;
        what the interaction said is scrubbed from every log here (only ids and statuses stay)."""
        rec = self._get_record(request.match_info["id"])
        if self.deletes_down:
            self.deletes_refused += 1
            return _error_response(503, "The service is currently unavailable.")
        rec.gone = True
        self.deleted.append({"id": rec.id, "time": time.time()})
        rec.body = {k: v for k, v in rec.body.items() if k in ("model", "agent")}
        rec.input_steps, rec.input_text, rec.media, rec.plan, rec.continuation = [], "", [], {}, None
        rec.research_plan, rec.topic = None, ""
        rec.timeline[:] = [(due, e) for due, e in rec.timeline if not e["event_type"].startswith("step.")]
        for entry in self.requests:
            if entry.get("interaction_id") == rec.id:
                entry["body"] = None
        for log in (self.function_results, self.image_requests):
            log[:] = [e for e in log if e["interaction_id"] != rec.id]
        return web.json_response({})

    async def _webhook_when_done(self, rec: _Record) -> None:
        """POST the webhook event once the interaction completes, fails or requires action (a
        cancel, deletion or other end sends none)."""
        await self._wait_until(rec, lambda: rec.timeline[-1][0])
        if rec.gone:
            return
        status = self._fold(rec)["status"]
        event = webhooks.EVENTS.get(status)
        if event is not None:
            config = rec.body["webhook_config"]
            body = webhooks.payload(event, rec.id, status, config.get("user_metadata", {}))
            self.webhook_deliveries.extend(await webhooks.deliver(config["uris"], body))

    # ------------------------------------------------------------------ control endpoints
    async def _c_script(self, request: web.Request) -> web.Response:
        plan = await request.json()
        (self.script_agent if request.path.endswith("_agent") else self.script)(**plan)
        return web.json_response({"ok": True})

    async def _c_forget(self, request: web.Request) -> web.Response:
        try:
            self.forget(request.match_info["id"])
        except KeyError:
            return _error_response(404, "unknown interaction")
        return web.json_response({"ok": True})

    async def _c_interaction(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.interaction(request.match_info["id"]))
        except KeyError:
            return _error_response(404, "unknown interaction")

    async def _c_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _c_model_creates(self, request: web.Request) -> web.Response:
        return web.json_response(self.model_creates())

    async def _c_logs(self, request: web.Request) -> web.Response:
        """What a test out of process asserts on: results, images, webhooks, deletes, what remains."""
        return web.json_response({"function_results": self.function_results, "image_requests": self.image_requests,
                                  "webhook_deliveries": self.webhook_deliveries, "deleted": self.deleted,
                                  "stored_ids": self.stored_ids()})

    async def _c_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _c_config(self, request: web.Request) -> web.Response:
        update = await request.json()
        self.config.update({k: v for k, v in update.items() if k in self.config})
        return web.json_response(self.config)


def _apply(res: dict, event: dict, arguments: dict[int, str]) -> None:
    """Fold one stream event into the resource (the client-side view of the same data).
    ``arguments`` gathers each function call's streamed JSON until its step stops."""
    kind = event["event_type"]
    if kind in ("interaction.created", "interaction.completed"):
        res["status"] = event["interaction"]["status"]
        if "usage" in event["interaction"]:
            res["usage"] = event["interaction"]["usage"]
    elif kind == "interaction.status_update":
        res["status"] = event["status"]
    elif kind == "error":
        res["status"] = "failed"
        res.setdefault("errors", []).append(event["error"])
    elif kind == "step.start":
        steps = res["steps"]
        steps.extend({"type": "unknown"} for _ in range(event["index"] + 1 - len(steps)))
        steps[event["index"]] = copy.deepcopy(event["step"])
    elif kind == "step.delta" and event["delta"]["type"] == "arguments_delta":
        arguments[event["index"]] = arguments.get(event["index"], "") + event["delta"]["arguments"]
    elif kind == "step.delta":
        _apply_delta(res["steps"][event["index"]], event["delta"])
    elif kind == "step.stop" and event["index"] in arguments:
        res["steps"][event["index"]]["arguments"] = json.loads(arguments.pop(event["index"]))


def _apply_delta(step: dict, delta: dict) -> None:
    kind = delta["type"]
    if kind == "text":
        content = step.setdefault("content", [])
        if content and content[-1].get("type") == "text":
            content[-1]["text"] += delta["text"]
        else:
            content.append({"type": "text", "text": delta["text"]})
    elif kind == "thought_summary":
        summary = step.setdefault("summary", [])
        part = delta["content"]
        if summary and summary[-1].get("type") == "text" and part.get("type") == "text":
            summary[-1]["text"] += part["text"]
        else:
            summary.append(dict(part))
    elif kind == "image":
        step.setdefault("content", []).append({k: v for k, v in delta.items() if k in ("type", "mime_type", "data")})
    elif kind == "thought_signature":
        step["signature"] = delta["signature"]
    elif kind == "text_annotation_delta":
        step["content"][-1].setdefault("annotations", []).extend(delta["annotations"])


# ------------------------------------------------------------------ tools, annotations, request checks
_TOOL_TYPES = {"google_search", "url_context", "code_execution", "file_search", "mcp_server", "function",
               "google_maps", "computer_use", "retrieval", "tool_search"}
_TOOL_KEYS = {  # fields the SDK's Tool variants define (types/interactions/*.py); others answer 400
    "google_search": {"search_types"}, "url_context": set(), "code_execution": set(),
    "mcp_server": {"name", "url", "headers", "allowed_tools", "defer_loading"},
    "file_search": {"file_search_store_names", "metadata_filter", "top_k"},
    "function": functions.FUNCTION_KEYS,
}
_GENERATION_KEYS = {"temperature", "top_p", "seed", "stop_sequences", "max_output_tokens", "thinking_level",
                    "thinking_summaries", "tool_choice", "speech_config", "image_config", "video_config",
                    "transcription_config"}
_THINKING_LEVELS = {"minimal", "low", "medium", "high", "xhigh"}
# one pixel, transparent: what a plot looks like to a test
_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def _validate_turn_fields(body: dict) -> None:
    """`tools` and `generation_config` as the SDK defines them (MCPServerParam, GenerationConfig)."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _ApiError(400, "'tools' must be a list.")
        names, function_names = set(), set()
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind not in _TOOL_TYPES:
                raise _ApiError(400, f"tools[{i}].type: unknown tool type {kind!r}.")
            extra = set(tool) - {"type"} - _TOOL_KEYS.get(kind, set(tool))
            if extra:
                raise _ApiError(400, f"tools[{i}]: unknown field(s) {sorted(extra)} for {kind}.")
            if kind == "function":
                functions.validate_function_tool(i, tool, function_names, _bad_request)
            if kind == "mcp_server":
                _validate_mcp_tool(i, tool)
                if tool["name"] in names:
                    raise _ApiError(400, f"tools[{i}].name: duplicate MCP server name.")
                names.add(tool["name"])
    config = body.get("generation_config")
    if config is not None:
        if not isinstance(config, dict):
            raise _ApiError(400, "'generation_config' must be an object.")
        extra = set(config) - _GENERATION_KEYS
        if extra:
            raise _ApiError(400, f"generation_config: unknown field(s) {sorted(extra)}.")
        if "thinking_level" in config and config["thinking_level"] not in _THINKING_LEVELS:
            raise _ApiError(400, "generation_config.thinking_level: invalid value.")
        if "thinking_summaries" in config and config["thinking_summaries"] not in ("auto", "none"):
            raise _ApiError(400, "generation_config.thinking_summaries: invalid value.")
        if "tool_choice" in config:
            functions.validate_tool_choice(config["tool_choice"], _bad_request)
        tokens = config.get("max_output_tokens")
        if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
            raise _ApiError(400, "generation_config.max_output_tokens: must be a positive integer.")


def _validate_mcp_tool(i: int, tool: dict) -> None:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise _ApiError(400, f"tools[{i}].name: required for mcp_server.")
    if not isinstance(tool.get("url"), str) or not tool["url"].startswith(("https://", "http://")):
        raise _ApiError(400, f"tools[{i}].url: must be an http(s) URL.")
    headers = tool.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _ApiError(400, f"tools[{i}].headers: must map strings to strings.")
    allowed = tool.get("allowed_tools", [])
    if not isinstance(allowed, list):
        raise _ApiError(400, f"tools[{i}].allowed_tools: must be a list.")
    for entry in allowed:  # AllowedTools: {mode?: auto|any|none|validated, tools?: [str]}
        if (not isinstance(entry, dict) or set(entry) - {"mode", "tools"}
                or entry.get("mode", "auto") not in ("auto", "any", "none", "validated")
                or not all(isinstance(t, str) for t in entry.get("tools", []))):
            raise _ApiError(400, f"tools[{i}].allowed_tools: each entry is {{mode, tools: [str]}}.")


def _declared(rec: _Record, kind: str, server: str | None = None, name: str | None = None) -> bool:
    """A model calls only the tools its request declares (and, for MCP, only allowed tool names)."""
    for tool in rec.body.get("tools") or []:
        if tool.get("type") != kind:
            continue
        if kind != "mcp_server":
            return True
        if tool.get("name") == server:
            allowed = [t for entry in tool.get("allowed_tools") or [] for t in entry.get("tools", [])]
            return not allowed or name in allowed
    return False


def _add_tool_steps(rec: _Record, steps: list[dict], t: float, index: int, gap: float) -> tuple[float, int]:
    """Call/result step pairs before the answer. Each scripted step: {"tool": google_search |
    url_context | code_execution | mcp, ...}; a step for a tool the request did not declare is
    skipped, as a real model cannot call it.
      google_search: queries; url_context: urls;
      code_execution: code, output, is_error, image (true: one PNG in the result; a string: that
        PNG, base64);
      mcp: server, name, arguments, result (text), is_error (MCP's CallToolResult.isError)."""
    for n, spec in enumerate(steps):
        kind = spec.get("tool")
        call_id = f"call_{n}"
        if kind == "mcp":
            if not _declared(rec, "mcp_server", spec.get("server"), spec.get("name")):
                continue
            call = {"type": "mcp_server_tool_call", "id": call_id, "name": spec["name"],
                    "server_name": spec["server"], "arguments": spec.get("arguments", {})}
            text = str(spec.get("result", "ok"))
            result = {"type": "mcp_server_tool_result", "call_id": call_id, "name": spec["name"],
                      "server_name": spec["server"],
                      "result": ({"isError": True, "content": [{"type": "text", "text": text}]}
                                 if spec.get("is_error") else [{"type": "text", "text": text}])}
        elif kind == "code_execution":
            if not _declared(rec, "code_execution"):
                continue
            call = {"type": "code_execution_call", "id": call_id,
                    "arguments": {"code": spec.get("code", "print(1)"), "language": "python"}}
            parts: list = [{"type": "text", "text": spec.get("output", "")}]
            if spec.get("image"):
                data = spec["image"] if isinstance(spec["image"], str) else _PNG
                parts.append({"type": "image", "mime_type": "image/png", "data": data})
            result = {"type": "code_execution_result", "call_id": call_id, "result": parts,
                      "is_error": bool(spec.get("is_error"))}
        elif kind in ("google_search", "url_context"):
            if not _declared(rec, kind):
                continue
            args = {"queries": spec.get("queries", ["query"])} if kind == "google_search" else \
                {"urls": spec.get("urls", ["https://example.com/"])}
            call = {"type": f"{kind}_call", "id": call_id, "arguments": args}
            result = {"type": f"{kind}_result", "call_id": call_id, "result": [],
                      "is_error": bool(spec.get("is_error"))}
        else:
            raise _ApiError(500, f"emulator: unknown scripted tool {kind!r}")
        for step in (call, result):
            rec.add(t, "step.start", index=index, step=step)
            t += float(spec.get("seconds", gap))
            rec.add(t, "step.stop", index=index)
            index += 1
    return t, index


def _annotations(specs: list, reply: str) -> list[dict]:
    """url_citation annotations: {"url", "title", "cite": text in the reply to anchor} (or full dicts)."""
    out = []
    for spec in specs:
        ann = {"type": "url_citation", **spec}
        cite = ann.pop("cite", None)
        if cite and cite in reply:
            start = len(reply[: reply.index(cite)].encode())  # indexes are in bytes
            ann.update(start_index=start, end_index=start + len(cite.encode()))
        out.append(ann)
    return out


_SOURCES = [("Primary survey", "https://example.org/survey"), ("Industry report", "https://example.com/report"),
            ("Standards body note", "https://standards.example.net/note"),
            ("Academic paper", "https://papers.example.edu/paper"),
            ("News analysis", "https://news.example.org/analysis")]
_SECTIONS = ["Background", "Current state", "Key players", "Risks and open questions", "Outlook"]


def _default_report(topic: str) -> tuple[str, list[dict]]:
    """A ~6,000-char Markdown report (headings, table, code block, sources) plus url_citation annotations."""
    title = topic.splitlines()[0][:120]
    parts = [f"# Research report: {title}\n\n## Executive summary\n\n"
             f"This report examines {title}. It draws on {len(_SOURCES)} sources and summarises the "
             "evidence, the main disagreements between them and what to watch next [1].\n"]
    cites: list[tuple[int, int]] = []  # (section number, source number)
    for n, name in enumerate(_SECTIONS):
        src = n % len(_SOURCES) + 1
        paragraph = (f"Evidence on {name.lower()} is broad but uneven. Several sources agree on the main "
                     "trend, while they differ on its pace and on the metrics they use to measure it. "
                     "Where figures conflict we report the more conservative estimate and note the gap. ")
        detail = (f"For {title[:60]}, the practical consequence is that decisions should rest on the "
                  "overlap between independent sources rather than on any single headline number. ")
        parts.append(f"\n## {n + 1}. {name}\n\n{paragraph * 2}[{src}]\n\n{detail * 2}\n\n"
                     f"- Finding {n + 1}.1: the trend is consistent across regions.\n"
                     f"- Finding {n + 1}.2: measurement differs between sources.\n"
                     f"- Finding {n + 1}.3: more data is expected within a year.\n")
        cites.append((n, src))
    parts.append("\n## Comparison\n\n| Source | Scope | Confidence |\n|---|---|---|\n"
                 + "".join(f"| {s} | {['global', 'regional', 'sector'][i % 3]} | {['high', 'medium'][i % 2]} |\n"
                           for i, (s, _) in enumerate(_SOURCES)))
    parts.append("\n## Method\n\n```python\nscores = {src: weight * quality for src, weight, quality in rows}\n"
                 "best = max(scores, key=scores.get)\n```\n")
    parts.append("\n## Sources\n\n" + "".join(f"{i}. [{s}]({u})\n" for i, (s, u) in enumerate(_SOURCES, 1)))
    report = "".join(parts)
    annotations, pos = [], 0
    for marker_src in [1] + [src for _, src in cites]:  # every "[n]" marker, in order
        marker = f"[{marker_src}]"
        pos = report.index(marker, pos)
        name, url = _SOURCES[marker_src - 1]
        annotations.append({"type": "url_citation", "url": url, "title": name,
                            "start_index": pos, "end_index": pos + len(marker)})
        pos += len(marker)
    return report, annotations


async def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gemini Interactions API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--chunk-chars", type=int, default=24)
    parser.add_argument("--chunk-delay", type=float, default=0.01)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    emu = GeminiEmulator(chunk_chars=args.chunk_chars, chunk_delay=args.chunk_delay,
                         first_token_delay=args.first_token_delay)
    url = await emu.start(args.host, args.port)
    print(f"gemini emulator listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        await emu.stop()


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        pass
