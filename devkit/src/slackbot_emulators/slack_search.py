"""Workspace knowledge in the Slack emulator (issue 20; slack-agents.md 7 and 12): Real-time Search
(`assistant.search.context`) over the emulator's own messages and files, permalinks
(`chat.getPermalink`, and in every result) and history reads (`conversations.history`).

Search rules, strictest reading where sources leave room:
- A bot token needs the `action_token` of a recent mention or message event (the emulator puts one in
  app_mention, in message.im/.mpim/.groups, and in message.channels when the app is mentioned); it
  searches as that person. A user token searches as its owner and needs none. A token that is missing,
  unknown, expired (`action_token_ttl`, undocumented: 10 minutes here) or of another workspace answers
  `invalid_action_token` (the docs name no error for it: ours). Guests cannot search (`access_denied`).
- Public channels of the workspace are searched whether or not the person is in them; private channels,
  group DMs and DMs only when `channel_types` asks for them, the token holds search:read.private / .mpim /
  .im (user-token scopes: a bot token lacks them unless a test grants them), and the person is a member.
- At most 20 results a page (`limit` is capped), then `response_metadata.next_cursor`; `after` / `before`
  (unix seconds, exclusive); bots' messages only with `include_bots`; sort score (default) or timestamp.
- 10 calls a minute per person (each page counts), besides the method's per-workspace tier.
- Matching is by words: keyword search (default) needs every query word; with Slack AI Search on
  (`ai_search_enabled`, `assistant.search.info`) a message matching any word is a hit, ranked by how
  many it matches. `context_messages` and search modifiers (in:, from:) are not emulated.
conversations.history: top-level messages newest first, at most 15 a call, one call a minute (the tier
for distributed non-Marketplace apps), for conversations the bot is in with the type's history scope.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .slack_model import SIGN_IN_PAGE, Channel, Component, Message, SlackError, TokenBucket, _ts_key

SEARCH_PAGE = 20
HISTORY_PAGE_CAP = 15  # conversations.history for non-Marketplace apps, whatever `limit` says
PER_USER_PER_MINUTE = 10
ACTION_TOKEN_TTL = 600.0
CHANNEL_TYPE_SCOPES = {"public_channel": "search:read.public", "private_channel": "search:read.private",
                       "mpim": "search:read.mpim", "im": "search:read.im"}
CONTENT_TYPE_SCOPES = {"messages": None, "files": "search:read.files", "channels": None,
                       "users": "search:read.users"}


def _words(text: str) -> list[str]:
    """Lower-case words: letters and digits, everything else a separator (linear, no regex)."""
    return "".join(c if c.isalnum() else " " for c in text.casefold()).split()


def _csv(raw: Any, default: str) -> list[str]:
    return [x.strip() for x in str(raw or default).split(",") if x.strip()]


class Search(Component):
    def __init__(self, emu: Any):
        self.action_token_ttl = ACTION_TOKEN_TTL
        self.ai_search_enabled = False
        self.per_user_per_minute = PER_USER_PER_MINUTE
        super().__init__(emu)

    def reset(self) -> None:
        self.action_tokens: dict[str, dict] = {}  # token -> {user, team, expires}
        self.searches: list[dict] = []  # every accepted search: who searched, what, how many results
        self._user_buckets: dict[str, TokenBucket] = {}

    def issue_action_token(self, user: str, team: str) -> str:
        if len(self.action_tokens) > 10_000:  # every person's message carries one: forget the expired
            now = time.time()
            self.action_tokens = {t: e for t, e in self.action_tokens.items() if e["expires"] > now}
        token = f"{secrets.randbelow(10**10)}.{secrets.token_hex(12)}"
        self.action_tokens[token] = {"user": user, "team": team, "expires": time.time() + self.action_token_ttl}
        return token

    # ----------------------------------------------------------- permalinks

    def permalink(self, ch: Channel, msg: Message) -> str:
        """Slack's shape: /archives/<channel>/p<ts without the dot>, replies with thread_ts and cid."""
        url = f"{self.emu.base_url}/archives/{ch.id}/p{msg.ts.replace('.', '')}"
        if msg.thread_ts and msg.thread_ts != msg.ts:
            url += "?" + urlencode({"thread_ts": msg.thread_ts, "cid": ch.id})
        return url

    def _api_chat_getPermalink(self, p: dict) -> dict:
        ch = self.emu._channel(p.get("channel"))
        if (ch.is_private or ch.is_im) and self.emu.bot_user_id not in ch.members:
            raise SlackError("channel_not_found")
        msg = self.emu._find(ch, p.get("message_ts"))
        return {"channel": ch.id, "permalink": self.permalink(ch, msg)}

    # ----------------------------------------------------------- search

    def _searcher(self, p: dict) -> str:
        grant = self.emu._grant
        if grant is not None and grant.kind == "user":
            return grant.user
        entry = self.action_tokens.get(str(p.get("action_token") or ""))
        install = self.emu._acting()
        if entry is None or time.time() >= entry["expires"] \
                or not install.covers(self.emu.workspaces[entry["team"]]):
            raise SlackError("invalid_action_token")
        return entry["user"]

    def _api_assistant_search_info(self, p: dict) -> dict:
        return {"is_ai_search_enabled": self.ai_search_enabled}

    def _api_assistant_search_context(self, p: dict) -> dict:
        query = str(p.get("query") or "").strip()
        if not query:
            raise SlackError("invalid_arguments")
        user = self._searcher(p)
        if user in self.emu.users and self.emu.users[user].guest:
            raise SlackError("access_denied")  # guests cannot use Real-time Search
        channel_types = _csv(p.get("channel_types"), "public_channel")
        content_types = _csv(p.get("content_types"), "messages")
        if set(channel_types) - set(CHANNEL_TYPE_SCOPES) or set(content_types) - set(CONTENT_TYPE_SCOPES):
            raise SlackError("invalid_arguments")
        scopes = self._token_scopes()
        for needed in [CHANNEL_TYPE_SCOPES[t] for t in channel_types] + [CONTENT_TYPE_SCOPES[t] for t in content_types]:
            if needed and needed not in scopes:
                raise SlackError("missing_scope", needed=needed)
        bucket = self._user_buckets.setdefault(user, TokenBucket(self.per_user_per_minute, self.per_user_per_minute))
        if self.emu.rate_limits and (wait := bucket.take()):
            raise SlackError("ratelimited", 429, wait)
        try:
            after, before = (float(p[k]) if p.get(k) not in (None, "") else None for k in ("after", "before"))
            limit = min(max(int(p.get("limit") or SEARCH_PAGE), 1), SEARCH_PAGE)
            offset = int(json.loads(base64.b64decode(p["cursor"]))["offset"]) if p.get("cursor") else 0
        except (ValueError, KeyError, TypeError):
            raise SlackError("invalid_cursor" if p.get("cursor") else "invalid_arguments") from None
        channels = [ch for ch in self.emu.channels.values() if self._readable(ch, user, channel_types)]
        results: dict[str, list] = {}
        more = False
        if "messages" in content_types:
            hits = self._message_hits(channels, query, after, before, p)
            results["messages"] = [self._message_json(ch, m) for ch, m in hits[offset:offset + limit]]
            more = len(hits) > offset + limit
        if "files" in content_types:
            results["files"] = self._file_hits(channels, query)
        if "channels" in content_types:
            results["channels"] = [{"id": ch.id, "name": ch.name, "is_private": ch.is_private,
                                    "permalink": f"{self.emu.base_url}/archives/{ch.id}"}
                                   for ch in channels if not ch.is_im and self._matches(ch.name, query)]
        if "users" in content_types:
            results["users"] = [{"user_id": u.id, "full_name": u.real_name, "title": u.title}
                                for u in self.emu.users.values()
                                if self._matches(f"{u.name} {u.real_name} {u.title}", query)]
        cursor = base64.b64encode(json.dumps({"offset": offset + limit}).encode()).decode() if more else ""
        self.searches.append({"user": user, "query": query, "channel_types": channel_types,
                              "results": sum(len(v) for v in results.values()), "time": time.time()})
        return {"results": results, "response_metadata": {"next_cursor": cursor}}

    def _token_scopes(self) -> set[str]:
        grant = self.emu._grant
        return grant.install.user_scopes if grant is not None and grant.kind == "user" else self.emu.scopes

    def _readable(self, ch: Channel, user: str, channel_types: list[str]) -> bool:
        """In the searcher's workspace(s), of a requested type, and public or theirs."""
        if not self.emu._acting().covers(self.emu.workspaces[self.emu.team_of(ch)]):
            return False
        return ch.search_type in channel_types and (ch.search_type == "public_channel" or user in ch.members)

    def _matches(self, text: str, query: str) -> int:
        """How many query words the text has: all are needed for keyword search, one for AI search."""
        words, wanted = set(_words(text)), set(_words(query))
        found = len(words & wanted)
        return found if (found and self.ai_search_enabled) or (wanted and found == len(wanted)) else 0

    def _message_hits(self, channels: list[Channel], query: str, after: float | None, before: float | None,
                      p: dict) -> list[tuple[Channel, Message]]:
        include_bots = str(p.get("include_bots")).lower() in ("true", "1")
        scored = []
        for ch in channels:
            for msg in ch.messages:
                stamp = float(msg.ts)
                if (after is not None and stamp <= after) or (before is not None and stamp >= before):
                    continue
                if msg.subtype == "tombstone" or (msg.bot_id and not include_bots):
                    continue
                if score := self._matches(msg.visible_text, query):
                    scored.append((score, ch, msg))
        newest_first = str(p.get("sort_dir") or "desc") != "asc"
        scored.sort(key=lambda x: _ts_key(x[2].ts), reverse=newest_first)
        if str(p.get("sort") or "score") == "score":
            scored.sort(key=lambda x: x[0], reverse=True)  # stable: ties keep the time order
        return [(ch, msg) for _, ch, msg in scored]

    def _message_json(self, ch: Channel, msg: Message) -> dict:
        return {"author_user_id": msg.user, "team_id": self.emu.team_of(ch), "channel_id": ch.id,
                "message_ts": msg.ts, "content": msg.visible_text, "is_author_bot": bool(msg.bot_id),
                "permalink": self.permalink(ch, msg)}

    def _file_hits(self, channels: list[Channel], query: str) -> list[dict]:
        ids = {ch.id for ch in channels}
        return [{"file_id": r["id"], "title": r["title"], "author_user_id": r.get("user"), "channel_id": r["channel"],
                 "permalink": self.emu.file_url(r["id"], r["filename"])}
                for r in self.emu.files
                if r.get("channel") in ids and self._matches(f"{r['title']} {r['filename']}", query)]

    # ----------------------------------------------------------- history

    def _api_conversations_history(self, p: dict) -> dict:
        ch = self.emu._channel(p.get("channel"))
        self.emu._check_readable(ch)
        try:
            limit = min(max(int(p.get("limit") or 100), 1), HISTORY_PAGE_CAP)
            oldest = _ts_key(str(p["oldest"])) if p.get("oldest") else None
            latest = _ts_key(str(p["latest"])) if p.get("latest") else None
            start = int(base64.b64decode(p["cursor"]).decode().removeprefix("offset:")) if p.get("cursor") else 0
        except ValueError:
            raise SlackError("invalid_cursor" if p.get("cursor") else "invalid_arguments") from None
        inclusive = str(p.get("inclusive")).lower() in ("true", "1")
        msgs = [m for m in reversed(self.emu.messages(ch.id))
                if (oldest is None or _ts_key(m.ts) > oldest or (inclusive and _ts_key(m.ts) == oldest))
                and (latest is None or _ts_key(m.ts) < latest or (inclusive and _ts_key(m.ts) == latest))]
        page, more = msgs[start:start + limit], len(msgs) > start + limit
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return {"messages": [self.emu._reply_json(m, self.emu.messages(ch.id, m.ts)) for m in page],
                "has_more": more, "pin_count": 0, "response_metadata": {"next_cursor": cursor}}

    # ----------------------------------------------------------- control endpoints

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/archives/{channel}/{p}", self._http_permalink)

    async def _http_permalink(self, request: web.Request) -> web.Response:
        """Where a permalink leads: Slack's sign-in page, as for a browser without a session."""
        return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
