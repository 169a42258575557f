"""Canvases in the Slack emulator (issue 22; slack-agents.md 9): `canvases.create` and
`conversations.canvases.create`, scope canvases:write, Tier 2, `document_content` {"type": "markdown",
"markdown": ...} up to 1 MiB, stored so tests read what a person would (`canvas(id)`, `channel_canvas(channel)`).

A workspace's `plan` "free" applies the free plan's rules: no standalone canvases (canvases.create without
channel_id answers `free_teams_cannot_create_non_tabbed_canvases`, the code a free workspace was seen to
answer; another report names `free_teams_cannot_create_standalone_canvases`) and one canvas tab per channel
(`free_team_canvas_tab_already_exists`). On any plan a channel has one channel canvas
(`channel_canvas_already_exists`). The app must be in the channel (`restricted_action`: our reading).

What a canvas's Markdown does beyond showing text (`acts(id)`, for tests): canvas Markdown embeds with image
syntax, `![](@U123)` a user mention (which notifies), `![](#C123)` a channel and `![](https://…)` a Slack
message, file or canvas (docs.slack.dev, formatting canvas content); Slack's message tokens (`<@U…>`,
`<!channel>`, `<url|label>`) are counted too (our conservative reading: the docs say nothing of them). As
in Markdown, `!\\[` (an escaped bracket) and `&lt;` act on nothing; conservatively, code is not exempt.
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from .slack_model import Channel, Component, SlackError, json_arg

MAX_MARKDOWN = 1_048_576  # "limited to 1 MiB (1,048,576 characters)"


class Canvases(Component):
    def reset(self) -> None:
        self.canvases: dict[str, dict] = {}  # id -> {id, title, markdown, channel, kind, team, created}

    def canvas(self, canvas_id: str) -> dict:
        return self.canvases[canvas_id]

    def acts(self, canvas_id: str) -> dict[str, list[str]]:
        """What the canvas's Markdown would do to people: see the module's docstring."""
        return markup_acts(self.canvases[canvas_id]["markdown"] or "")

    def channel_canvas(self, channel: str) -> dict | None:
        return next((c for c in self.canvases.values() if c["channel"] == channel and c["kind"] == "channel"), None)

    def _tabs(self, channel: str) -> list[dict]:
        return [c for c in self.canvases.values() if c["channel"] == channel]

    def _markdown(self, p: dict) -> str:
        content = json_arg(p.get("document_content"))
        if content is None:
            return ""  # "created untitled and empty"
        if not (isinstance(content, dict) and content.get("type") == "markdown"
                and isinstance(content.get("markdown"), str)):
            raise SlackError("invalid_arguments")
        if len(content["markdown"]) > MAX_MARKDOWN:
            raise SlackError("canvas_creation_failed")
        return content["markdown"]

    def _in_channel(self, channel_id: object) -> Channel:
        ch = self.emu._channel(channel_id)
        if self.emu.bot_user_id not in ch.members:
            raise SlackError("restricted_action")
        return ch

    def _create(self, title: str | None, markdown: str, ch: Channel | None, kind: str) -> dict:
        canvas_id = self.emu._new_id("F")
        team = self.emu.team_of(ch) if ch else (self.emu._acting().team_id or self.emu.team_id)
        canvas = {"id": canvas_id, "title": title, "markdown": markdown, "channel": ch.id if ch else None,
                  "kind": kind, "team": team, "created": time.time(),
                  "url": f"{self.emu.base_url}/docs/{team}/{canvas_id}"}
        self.canvases[canvas_id] = canvas
        self.emu._emit("canvas", {k: v for k, v in canvas.items() if k != "markdown"})
        return canvas

    def _free(self, ch: Channel | None) -> bool:
        team = self.emu.team_of(ch) if ch else (self.emu._acting().team_id or self.emu.team_id)
        return self.emu.workspaces[team].plan == "free"

    def _api_canvases_create(self, p: dict) -> dict:
        markdown = self._markdown(p)
        ch = self._in_channel(p["channel_id"]) if p.get("channel_id") else None
        if ch is None and self._free(None):
            raise SlackError("free_teams_cannot_create_non_tabbed_canvases")
        if ch is not None and self._free(ch) and self._tabs(ch.id):
            raise SlackError("free_team_canvas_tab_already_exists")
        title = p.get("title") if isinstance(p.get("title"), str) else None
        return {"canvas_id": self._create(title, markdown, ch, "tab" if ch else "standalone")["id"]}

    def _api_conversations_canvases_create(self, p: dict) -> dict:
        ch = self._in_channel(p.get("channel_id"))
        markdown = self._markdown(p)
        if self._free(ch) and self._tabs(ch.id):
            raise SlackError("free_team_canvas_tab_already_exists")
        if self.channel_canvas(ch.id):
            raise SlackError("channel_canvas_already_exists")
        title = p.get("title") if isinstance(p.get("title"), str) else None
        return {"canvas_id": self._create(title, markdown, ch, "channel")["id"]}

    def state(self) -> dict:
        return {"canvases": list(self.canvases.values())}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/docs/{team}/{canvas_id}", self._http_canvas)

    async def _http_canvas(self, request: web.Request) -> web.Response:
        """A canvas link, for local tools (the sandbox page): its Markdown as text."""
        canvas = self.canvases.get(request.match_info["canvas_id"])
        if canvas is None:
            return web.Response(status=404, text="canvas_not_found", content_type="text/plain")
        return web.Response(text=canvas["markdown"], content_type="text/markdown", charset="utf-8")


# Bounded runs: every match is checked within a few hundred characters of where it starts (linear).
_EMBED = re.compile(r"(?<!\\)!\[[^\]\n]{0,300}\]\(([^()\s]{1,600})\)")
_TOKEN = re.compile(r"<(@[UW][A-Z0-9_]{1,40}|![a-z]{1,20}(?:\^[A-Za-z0-9_]{1,40})?|[a-z][a-z0-9+.-]{0,20}:[^<>|\s]{1,600}\|)[^<>]{0,300}>")


def markup_acts(markdown: str) -> dict[str, list[str]]:
    """{"mentions": user ids, "channels": channel ids, "embeds": URLs, "tokens": Slack tokens} the
    Markdown would act on, in order."""
    found: dict[str, list[str]] = {"mentions": [], "channels": [], "embeds": [], "tokens": []}
    for target in _EMBED.findall(markdown):
        kind = "mentions" if target[:1] == "@" else "channels" if target[:1] == "#" else "embeds"
        found[kind].append(target.lstrip("@#") if kind != "embeds" else target)
    found["tokens"] = [t.group(0) for t in _TOKEN.finditer(markdown)]
    return found
