"""Who is who in the Slack emulator (issues 20 and 24): user groups (`usergroups.list`,
`usergroups.users.list`, and `subteam_members_changed` when a test changes one), conversation
membership (`conversations.members`). People themselves, with title, time zone and guest flags
(is_restricted / is_ultra_restricted), are `SlackEmulator.add_user` and users.info.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .slack_model import Component, Delivery, SlackError, _format_ts

MEMBERS_PAGE_MAX = 1000


class Directory(Component):
    def reset(self) -> None:
        self.usergroups: dict[str, dict] = {}  # id -> {id, handle, name, users, disabled, team}

    def add_usergroup(self, group_id: str, handle: str, name: str, users: list[str], *,
                      disabled: bool = False, team: str | None = None) -> dict:
        self.usergroups[group_id] = {"id": group_id, "handle": handle, "name": name, "users": list(users),
                                     "disabled": disabled, "team": team or self.emu.team_id,
                                     "updated": int(time.time())}
        return self.usergroups[group_id]

    async def set_usergroup_users(self, group_id: str, users: list[str]) -> Delivery:
        """An admin changes a group's members: subteam_members_changed, as Slack sends it."""
        group = self.usergroups[group_id]
        before, previous = set(group["users"]), group["updated"]
        group["users"], group["updated"] = list(users), int(time.time())
        event = {"type": "subteam_members_changed", "subteam_id": group_id, "team_id": group["team"],
                 "date_previous_update": previous, "date_update": group["updated"],
                 "added_users": sorted(set(users) - before), "added_users_count": str(len(set(users) - before)),
                 "removed_users": sorted(before - set(users)), "removed_users_count": str(len(before - set(users))),
                 "event_ts": _format_ts(time.time())}
        return await self.emu.deliver_workspace_event(event, group["team"])

    def _group_json(self, group: dict, include_users: bool) -> dict:
        out = {"id": group["id"], "team_id": group["team"], "is_usergroup": True, "is_subteam": True,
               "name": group["name"], "handle": group["handle"], "description": "", "is_external": False,
               "date_create": group["updated"], "date_update": group["updated"],
               "date_delete": group["updated"] if group["disabled"] else 0, "user_count": len(group["users"])}
        if include_users:
            out["users"] = list(group["users"])
        return out

    def _visible_groups(self) -> list[dict]:
        install = self.emu._acting()
        return [g for g in self.usergroups.values() if install.covers(self.emu.workspaces[g["team"]])]

    def _api_usergroups_list(self, p: dict) -> dict:
        include_disabled = str(p.get("include_disabled")).lower() in ("true", "1")
        include_users = str(p.get("include_users")).lower() in ("true", "1")
        return {"usergroups": [self._group_json(g, include_users) for g in self._visible_groups()
                               if include_disabled or not g["disabled"]]}

    def _api_usergroups_users_list(self, p: dict) -> dict:
        group = next((g for g in self._visible_groups() if g["id"] == p.get("usergroup")), None)
        include_disabled = str(p.get("include_disabled")).lower() in ("true", "1")
        if group is None or (group["disabled"] and not include_disabled):
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _api_conversations_members(self, p: dict) -> dict:
        ch = self.emu._channel(p.get("channel"))
        self.emu._check_can_see(ch)
        try:
            limit = min(max(int(p.get("limit") or 100), 1), MEMBERS_PAGE_MAX)
            start = int(p.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor") from None
        members = sorted(ch.members)
        rest = members[start + limit:]
        return {"members": members[start:start + limit],
                "response_metadata": {"next_cursor": str(start + limit) if rest else ""}}

    def state(self) -> dict:
        return {"usergroups": list(self.usergroups.values())}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/_emu/usergroup", self._http_usergroup)

    async def _http_usergroup(self, request: web.Request) -> web.Response:
        b: Any = await request.json()
        if b["id"] not in self.usergroups:
            self.add_usergroup(b["id"], b.get("handle") or b["id"].lower(), b.get("name") or b["id"], b["users"])
            return web.json_response({"ok": True})
        d = await self.set_usergroup_users(b["id"], b["users"])
        return web.json_response({"ok": True, "delivery": d.to_json()})
