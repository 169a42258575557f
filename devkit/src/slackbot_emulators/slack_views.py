"""Modals in the Slack emulator (issue 22's Edit plan): `views.open` and the `view_submission` a person
sends by pressing the modal's submit button.

As Slack documents it: `views.open` takes a `trigger_id` from an interaction (a click, a slash command)
that is single-use and expires after 3 seconds (`expired_trigger_id`; an unknown one answers
`invalid_trigger_id`), and a `view` of type "modal" with a title, at most 100 blocks (`invalid_arguments`
otherwise). The limits of docs.slack.dev's view object and input elements are checked too: title, submit
and close at most 24 characters, private_metadata at most 3,000, an input block's label at most 2,000 and
its element a plain_text_input (max_length at most 3,000, initial_value within it) or checkboxes (1 to 10
options, each a text of at most 75 characters and a unique value). A submission posts `{"type":
"view_submission", "view": {..., "state": {"values": {block_id: {action_id: {"type": "plain_text_input",
"value": ...}}}}}}` (checkboxes: `{"type": "checkboxes", "selected_options": [option, ...]}`); an empty
ack closes the modal, an ack with `response_action: "errors"` keeps it open with those errors (other
response actions are not emulated: the modal stays). Issue 22.6's "Research this thread" opens one from a
message shortcut's trigger. Closing it (its close button, Escape) sends `view_closed` only when the view asked with
`notify_on_close`.

The modals on people's screens are state (`open`, and `views.open` in /_emu/state) and each change is on the
feed (`modal` with the whole view, `modal_closed`), so a local page (the sandbox) can draw them; the page
submits or closes one with POST /_emu/view_submission (`values`: block id -> the text typed, or for checkboxes
the list of the ticked options' values) and /_emu/view_close.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from .slack_model import Component, Delivery, SlackError, json_arg, parse_blocks

TRIGGER_SECONDS = 3.0
MAX_MODAL_BLOCKS = 100
CLOSING_ACTIONS = (None, "clear")  # an empty ack, or "clear": the modal goes away


class Views(Component):
    def reset(self) -> None:
        self.triggers: dict[str, tuple[float, str, str]] = {}  # trigger id -> (issued at, user, channel)
        self.opened: list[dict] = []  # every modal opened, in order (tests read what a person saw)
        self.open: dict[str, dict] = {}  # view id -> a modal on its person's screen now
        self._origin: dict[str, str] = {}  # view id -> the channel its trigger came from (names the workspace)

    def issue_trigger(self, trigger_id: str, user: str, channel: str = "") -> str:
        self.triggers[trigger_id] = (time.monotonic(), user, channel)
        return trigger_id

    def _api_views_open(self, p: dict) -> dict:
        issued = self.triggers.pop(str(p.get("trigger_id") or ""), None)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if time.monotonic() - issued[0] > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        view = json_arg(p.get("view"))
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
            raise SlackError("invalid_arguments")
        try:
            parse_blocks(view.get("blocks") or [], max_blocks=MAX_MODAL_BLOCKS)
            _check_modal(view)
        except SlackError:
            raise SlackError("invalid_arguments") from None
        opened = {**view, "id": self.emu._new_id("V"), "user": issued[1], "team_id": self.emu.team_id,
                  "app_id": self.emu.app_id}
        self.opened.append(opened)
        self.open[opened["id"]] = opened
        self._origin[opened["id"]] = issued[2]
        self.emu._emit("modal", {"id": opened["id"], "user": issued[1], "callback_id": view.get("callback_id"),
                                 "view": opened})
        return {"view": opened}

    async def submit(self, view: dict, values: dict[str, str | list[str]], *, user: str = "",
                     channel: str | None = None):
        """The person fills in `values` (block id -> text, or for checkboxes the values of the options
        ticked; each block's element keeps its action id) and presses submit: Slack posts a signed
        `view_submission`, and the app's ack decides whether the modal closes. Inputs left out are sent
        as Slack sends untouched ones (text None, no options)."""
        state: dict = {}
        for block in view.get("blocks") or []:
            element = block.get("element") or {}
            if block.get("type") != "input":
                continue
            given = values.get(block.get("block_id", ""))
            if element.get("type") == "checkboxes":
                ticked = [o for o in element.get("options") or [] if o.get("value") in (given or [])]
                entry = {"type": "checkboxes", "selected_options": ticked}
            else:
                entry = {"type": element.get("type", "plain_text_input"), "value": given}
            state[block["block_id"]] = {element.get("action_id", ""): entry}
        ch = self.emu.channels[channel or self._origin.get(view.get("id", "")) or "C_GENERAL"]
        payload = {"type": "view_submission", **self.emu.interaction_base(ch, user or view["user"]),
                   "view": {**view, "state": {"values": state}}}
        delivery = await self.emu.send_interaction(payload)
        if delivery.status == 200 and _response_action(delivery) in CLOSING_ACTIONS:
            self._closed(view.get("id", ""))
        return delivery

    async def close(self, view_id: str, user: str = "") -> Delivery | None:
        """The person closes the modal without submitting: gone from the screen; the app hears of it
        (`view_closed`) only when the view set notify_on_close."""
        view = self.open.get(view_id)
        if view is None:
            raise LookupError(f"no open modal {view_id}")
        self._closed(view_id)
        if not view.get("notify_on_close"):
            return None
        ch = self.emu.channels[self._origin.get(view_id) or "C_GENERAL"]
        payload = {"type": "view_closed", **self.emu.interaction_base(ch, user or view["user"]),
                   "view": view, "is_cleared": False}
        return await self.emu.send_interaction(payload)

    def _closed(self, view_id: str) -> None:
        view = self.open.pop(view_id, None)
        if view is not None:
            self.emu._emit("modal_closed", {"id": view_id, "user": view["user"]})

    def state(self) -> dict:
        return {"open": list(self.open.values())}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/_emu/view_submission", self._http_submit)
        app.router.add_post("/_emu/view_close", self._http_close)

    async def _http_submit(self, request: web.Request) -> web.Response:
        b = await request.json()
        view = self.open.get(str(b.get("view_id") or ""))
        if view is None:
            raise LookupError("no such open modal")
        values = b.get("values") or {}
        if not isinstance(values, dict) or not all(_is_value(v) for v in values.values()):
            raise ValueError("values: block id -> text, or the values of the checkboxes ticked")
        d = await self.submit(view, values, user=b.get("user") or view["user"])
        errors = _ack(d).get("errors") if _response_action(d) == "errors" else None
        return web.json_response({"delivery": d.to_json(), "closed": view["id"] not in self.open,
                                  "errors": errors or {}})

    async def _http_close(self, request: web.Request) -> web.Response:
        b = await request.json()
        d = await self.close(str(b.get("view_id") or ""), b.get("user") or "")
        return web.json_response({"delivery": d.to_json() if d else None})


def _is_value(given: object) -> bool:
    """What a person can put in an input: text, or (checkboxes) a list of option values."""
    return isinstance(given, str) or (isinstance(given, list) and all(isinstance(v, str) for v in given))


def _ack(delivery: Delivery) -> dict:
    try:
        body = json.loads(delivery.body) if delivery.body else {}
    except json.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _response_action(delivery: Delivery) -> str | None:
    return _ack(delivery).get("response_action")


def _text_within(obj: object, limit: int) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("text"), str) and 0 < len(obj["text"]) <= limit


def _check_modal(view: dict) -> None:
    """The view object's and input blocks' limits (docs.slack.dev reference/views, block-elements)."""
    if not _text_within(view.get("title"), 24):
        raise SlackError("invalid_arguments")
    for key in ("submit", "close"):
        if key in view and not _text_within(view[key], 24):
            raise SlackError("invalid_arguments")
    if len(str(view.get("private_metadata") or "")) > 3000:
        raise SlackError("invalid_arguments")
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            _check_input(block)


def _check_input(block: dict) -> None:
    element = block.get("element") or {}
    if not _text_within(block.get("label"), 2000) or not element.get("action_id"):
        raise SlackError("invalid_arguments")
    if element.get("type") == "plain_text_input":
        longest = element.get("max_length", 3000)
        if not (isinstance(longest, int) and 0 < longest <= 3000) or len(element.get("initial_value") or "") > longest:
            raise SlackError("invalid_arguments")
    elif element.get("type") == "checkboxes":
        options = element.get("options")
        if not isinstance(options, list) or not 0 < len(options) <= 10:
            raise SlackError("invalid_arguments")
        if any(not _text_within(o.get("text"), 75) or not o.get("value") for o in options) or \
                len({o["value"] for o in options}) != len(options):
            raise SlackError("invalid_arguments")
    else:
        raise SlackError("invalid_arguments")  # the elements this app uses; others are not emulated
