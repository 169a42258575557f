"""Modals in the Slack emulator (issue 22's Edit plan): `views.open` and the `view_submission` a person
sends by pressing the modal's submit button.

As Slack documents it: `views.open` takes a `trigger_id` from an interaction (a click, a slash command)
that is single-use and expires after 3 seconds (`expired_trigger_id`; an unknown one answers
`invalid_trigger_id`), and a `view` of type "modal" with a title, at most 100 blocks (`invalid_arguments`
otherwise). A submission posts `{"type": "view_submission", "view": {..., "state": {"values": {block_id:
{action_id: {"type": "plain_text_input", "value": ...}}}}}}`; an empty ack closes the modal.
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
        except SlackError:
            raise SlackError("invalid_arguments") from None
        opened = {**view, "id": self.emu._new_id("V"), "user": issued[1], "team_id": self.emu.team_id,
                  "app_id": self.emu.app_id}
        self.opened.append(opened)
        self.emu._emit("modal", {"id": opened["id"], "user": issued[1], "callback_id": view.get("callback_id")})
        return {"view": opened}

    async def submit(self, view: dict, values: dict[str, str], *, user: str = "", channel: str = "C_GENERAL"):
        """The person types `values` (block id -> text; each block's element keeps its action id) and
        presses submit: Slack posts a signed `view_submission`."""
        state: dict = {}
        for block in view.get("blocks") or []:
            element = block.get("element") or {}
            if block.get("type") == "input" and block.get("block_id") in values:
                state[block["block_id"]] = {element.get("action_id", ""): {
                    "type": element.get("type", "plain_text_input"), "value": values[block["block_id"]]}}
        ch = self.emu.channels[channel]
        payload = {"type": "view_submission", **self.emu.interaction_base(ch, user or view["user"]),
                   "view": {**view, "state": {"values": state}}}
        return await self.emu.send_interaction(payload)
