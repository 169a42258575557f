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
ack closes the modal. Issue 22.6's "Research this thread" opens one from a message shortcut's trigger.
"""

from __future__ import annotations

import time

from .slack_model import Component, SlackError, json_arg, parse_blocks

TRIGGER_SECONDS = 3.0
MAX_MODAL_BLOCKS = 100


class Views(Component):
    def reset(self) -> None:
        self.triggers: dict[str, tuple[float, str]] = {}  # trigger id -> (issued at, user)
        self.opened: list[dict] = []  # every modal opened, in order (tests read what a person saw)

    def issue_trigger(self, trigger_id: str, user: str) -> str:
        self.triggers[trigger_id] = (time.monotonic(), user)
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
        self.emu._emit("modal", {"id": opened["id"], "user": issued[1], "callback_id": view.get("callback_id")})
        return {"view": opened}

    async def submit(self, view: dict, values: dict[str, str | list[str]], *, user: str = "",
                     channel: str = "C_GENERAL"):
        """The person fills in `values` (block id -> text, or for checkboxes the values of the options
        ticked; each block's element keeps its action id) and presses submit: Slack posts a signed
        `view_submission`. Inputs left out are sent as Slack sends untouched ones (text None, no options)."""
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
        ch = self.emu.channels[channel]
        payload = {"type": "view_submission", **self.emu.interaction_base(ch, user or view["user"]),
                   "view": {**view, "state": {"values": state}}}
        return await self.emu.send_interaction(payload)


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
