"""Installing the app in the Slack emulator (issue 23; slack-agents.md 11): "Add to Slack" and
`oauth.v2.access`, per-installation tokens, token rotation, org-wide installs, uninstalls.

- GET /oauth/v2/authorize?client_id&scope&user_scope&state&redirect_uri shows Slack's consent page: pick
  a workspace (or, with `org_deploy_enabled`, a whole Enterprise Grid org) and a person, then Allow
  (302 to the redirect URL with `code` and `state`) or Cancel (`error=access_denied`). A wrong client_id or
  a redirect_uri not among the app's `redirect_urls` is an error page, as on Slack. `approve()` does the same
  for code (tests without a browser).
- oauth.v2.access authenticates the app by HTTP Basic client_id:client_secret (what slack_sdk sends) or the
  form fields; a code is single-use and lives 10 minutes; a redirect_uri sent to authorize must be sent again,
  equal. It answers the v2 shape (team, enterprise, is_enterprise_install, bot_user_id, authed_user) and,
  with `token_rotation`, an expiring `xoxe.xoxb-` token with `expires_in` (12 h unless a test shortens
  `token_expiry_seconds`) and a `refresh_token`. grant_type=refresh_token swaps a refresh token for a new
  pair; the old refresh token is then spent (the strict reading: reuse answers invalid_refresh_token), the old
  access token lives until it expires, and an expired one answers `token_expired`.
- An org-wide install (`is_enterprise_install`, team null, enterprise set) serves every workspace of the
  org: one bot user, events carrying `enterprise_id` and authorizations without a team.
- `uninstall(target)` removes the installation, revokes its tokens (then `token_revoked`) and sends
  `tokens_revoked` and `app_uninstalled`; `revoke_tokens(target)` revokes without uninstalling.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .slack_model import Component, Delivery, Grant, Installation, SlackError

CODE_TTL = 600.0
TOKEN_EXPIRY_SECONDS = 12 * 3600  # rotated tokens expire every 12 hours


class OAuth(Component):
    CLIENT_AUTH_METHODS = frozenset({"oauth.v2.access"})

    def __init__(self, emu: Any):
        # The app's settings page: credentials, redirect URLs, distribution options.
        self.client_id, self.client_secret = "1111.2222", "emulated-client-secret"
        self.redirect_urls: list[str] = []  # empty: any redirect_uri is accepted
        self.token_rotation = False
        self.token_expiry_seconds: float = TOKEN_EXPIRY_SECONDS
        self.org_deploy_enabled = False
        super().__init__(emu)

    def reset(self) -> None:
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.exchanges: list[dict] = []  # every oauth.v2.access answered: grant type and target

    # ------------------------------------------------------------ consent

    def authorize_url(self, **params: str) -> str:
        return f"{self.emu.base_url}/oauth/v2/authorize?{urlencode(params)}"

    def _check_request(self, q: Any) -> str | None:
        """The error Slack shows instead of the consent page, if any."""
        if q.get("client_id") != self.client_id:
            return "invalid_client_id"
        if q.get("redirect_uri") and self.redirect_urls and q["redirect_uri"] not in self.redirect_urls:
            return "bad_redirect_uri"
        if not (q.get("redirect_uri") or self.redirect_urls):
            return "bad_redirect_uri"  # nowhere to send the person back to
        if not (q.get("scope") or q.get("user_scope")):
            return "invalid_scope"
        return None

    def approve(self, query: Any, target: str, user: str, *, allow: bool = True) -> str:
        """The person presses Allow (or Cancel) for `target` (a team id, or an enterprise id for an
        org-wide install): the URL Slack redirects the browser to."""
        if error := self._check_request(query):
            raise ValueError(error)
        back = query.get("redirect_uri") or self.redirect_urls[0]
        state = {"state": query["state"]} if query.get("state") else {}
        if not allow:
            return f"{back}?{urlencode({'error': 'access_denied', **state})}"
        if target not in self._targets():
            raise ValueError(f"cannot install into {target!r}")
        code = f"{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.codes[code] = {"target": target, "user": user, "scopes": _scopes(query.get("scope")),
                            "user_scopes": _scopes(query.get("user_scope")), "redirect_uri": query.get("redirect_uri"),
                            "expires": time.time() + CODE_TTL}
        return f"{back}?{urlencode({'code': code, **state})}"

    def _targets(self) -> dict[str, str]:
        """Where the person can install: each workspace, and each org when org deploys are on."""
        targets = {w.id: w.name for w in self.emu.workspaces.values()}
        if self.org_deploy_enabled:
            targets.update({w.enterprise_id: f"{w.enterprise_name or w.enterprise_id} (entire organization)"
                            for w in self.emu.workspaces.values() if w.enterprise_id})
        return targets

    async def _http_authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if error := self._check_request(q):
            return web.Response(status=400, text=_page("Something went wrong", f"<p>{error}</p>"),
                                content_type="text/html")
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(q[k])}">'
                         for k in ("client_id", "scope", "user_scope", "state", "redirect_uri") if q.get(k))
        targets = "".join(f'<option value="{t}">{html.escape(name)}</option>' for t, name in self._targets().items())
        people = "".join(f'<option value="{u.id}">{html.escape(u.real_name)}</option>'
                         for u in self.emu.users.values() if not u.is_bot)
        body = (f"<p>The app is requesting permission to access a Slack workspace: "
                f"{html.escape(q.get('scope', ''))}</p>"
                f'<form method="post" action="/oauth/v2/authorize">{hidden}'
                f'<label>Workspace <select name="target">{targets}</select></label> '
                f'<label>You are <select name="user">{people}</select></label> '
                f'<button name="decision" value="allow">Allow</button> '
                f'<button name="decision" value="deny">Cancel</button></form>')
        return web.Response(text=_page("Install the app", body), content_type="text/html")

    async def _http_allow(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            location = self.approve(form, str(form.get("target") or ""), str(form.get("user") or "U_ALICE"),
                                    allow=form.get("decision") != "deny")
        except ValueError as e:
            return web.Response(status=400, text=_page("Something went wrong", f"<p>{html.escape(str(e))}</p>"),
                                content_type="text/html")
        raise web.HTTPFound(location)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/v2/authorize", self._http_authorize)
        app.router.add_post("/oauth/v2/authorize", self._http_allow)
        app.router.add_post("/_emu/uninstall", self._http_uninstall)

    async def _http_uninstall(self, request: web.Request) -> web.Response:
        b = await request.json()
        deliveries = await (self.revoke_tokens if b.get("revoke_only") else self.uninstall)(b["target"])
        return web.json_response({"deliveries": [d.to_json() for d in deliveries]})

    # ------------------------------------------------------------ oauth.v2.access

    def _check_client(self, p: dict) -> None:
        auth = self.emu._request_authorization
        client_id, secret = p.get("client_id"), p.get("client_secret")
        if auth.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise SlackError("invalid_client_id") from None
        if client_id != self.client_id:
            raise SlackError("invalid_client_id")
        if secret != self.client_secret:
            raise SlackError("bad_client_secret")

    def _api_oauth_v2_access(self, p: dict) -> dict:
        self._check_client(p)
        grant_type = p.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            return self._refresh(p)
        if grant_type != "authorization_code":
            raise SlackError("invalid_grant_type")
        code = self.codes.pop(str(p.get("code") or ""), None)
        if code is None or time.time() >= code["expires"]:
            raise SlackError("invalid_code")
        if code["redirect_uri"] and p.get("redirect_uri") != code["redirect_uri"]:
            raise SlackError("bad_redirect_uri")
        install = self._install(code)
        grant = self._new_grant(install)
        self.exchanges.append({"grant_type": grant_type, "target": code["target"], "time": time.time()})
        out = self._answer(install, grant)
        authed = {"id": code["user"]}
        if code["user_scopes"]:
            user_token = f"xoxp-{secrets.token_hex(12)}"
            self.emu.tokens[user_token] = Grant(install, "user", user=code["user"])
            authed.update(scope=",".join(sorted(code["user_scopes"])), access_token=user_token, token_type="user")
        return {**out, "authed_user": authed}

    def _refresh(self, p: dict) -> dict:
        old = self.refresh_tokens.pop(str(p.get("refresh_token") or ""), None)
        if old is None or old.install not in self.emu.installations:
            raise SlackError("invalid_refresh_token")
        grant = self._new_grant(old.install)
        self.exchanges.append({"grant_type": "refresh_token", "target": old.install.team_id or old.install.enterprise_id,
                               "time": time.time()})
        return self._answer(old.install, grant)

    def _install(self, code: dict) -> Installation:
        """The installation for the consent's target: reinstalling keeps the bot user and updates scopes."""
        target = code["target"]
        org = target not in self.emu.workspaces
        enterprise = target if org else self.emu.workspaces[target].enterprise_id
        existing = next((i for i in self.emu.installations
                         if ((i.is_enterprise_install and i.enterprise_id == target) if org
                             else (not i.is_enterprise_install and i.team_id == target))), None)
        if existing is not None:
            existing.scopes, existing.user_scopes = set(code["scopes"]), set(code["user_scopes"])
            existing.installer = code["user"]
            return existing
        suffix = target.removeprefix("T").removeprefix("E")
        install = Installation(None if org else target, enterprise, ("W" if org else "U") + f"BOT{suffix}",
                               f"B{suffix}", set(code["scopes"]), is_enterprise_install=org,
                               installer=code["user"], user_scopes=set(code["user_scopes"]))
        self.emu.installations.append(install)
        return install

    def _new_grant(self, install: Installation) -> tuple[str, Grant]:
        if not self.token_rotation:
            token = f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
            grant = Grant(install)
        else:
            token = f"xoxe.xoxb-1-{secrets.token_hex(16)}"
            refresh = f"xoxe-1-{secrets.token_hex(16)}"
            grant = Grant(install, expires=time.time() + self.token_expiry_seconds, refresh_token=refresh)
            self.refresh_tokens[refresh] = grant
        self.emu.tokens[token] = grant
        return token, grant

    def _answer(self, install: Installation, issued: tuple[str, Grant]) -> dict:
        token, grant = issued
        workspace = self.emu.workspaces.get(install.team_id or "")
        org = next((w for w in self.emu.workspaces.values()
                    if install.enterprise_id and w.enterprise_id == install.enterprise_id), None)
        out = {"access_token": token, "token_type": "bot", "scope": ",".join(sorted(install.scopes)),
               "bot_user_id": install.bot_user_id, "app_id": self.emu.app_id,
               "team": None if install.is_enterprise_install else {"id": workspace.id, "name": workspace.name},
               "enterprise": {"id": org.enterprise_id, "name": org.enterprise_name or org.enterprise_id} if org else None,
               "is_enterprise_install": install.is_enterprise_install}
        if grant.refresh_token:
            out.update(expires_in=int(self.token_expiry_seconds), refresh_token=grant.refresh_token)
        return out

    # ------------------------------------------------------------ uninstalling

    def _installation(self, target: str) -> Installation:
        for install in self.emu.installations:
            if target in (install.team_id, install.enterprise_id if install.is_enterprise_install else None):
                return install
        raise LookupError(f"the app is not installed in {target}")

    def _revoke(self, install: Installation) -> dict:
        revoked = {"oauth": [], "bot": [install.bot_user_id]}
        for token, grant in list(self.emu.tokens.items()):
            if grant.install is install and grant.kind != "app":
                del self.emu.tokens[token]
                self.emu.revoked_tokens.add(token)
                if grant.kind == "user":
                    revoked["oauth"].append(grant.user)
        self.refresh_tokens = {r: g for r, g in self.refresh_tokens.items() if g.install is not install}
        return revoked

    async def _tell(self, install: Installation, events: list[dict]) -> list[Delivery]:
        team = install.team_id or next(w.id for w in self.emu.workspaces.values()
                                       if w.enterprise_id == install.enterprise_id)
        deliveries = []
        with self.emu.acting(install):
            for event in events:
                if self.emu.subscribed(event["type"]):
                    deliveries.append(await self.emu.deliver_event({**event, "event_ts": f"{time.time():.6f}"},
                                                                   team=team))
        return deliveries

    async def revoke_tokens(self, target: str) -> list[Delivery]:
        install = self._installation(target)
        return await self._tell(install, [{"type": "tokens_revoked", "tokens": self._revoke(install)}])

    async def uninstall(self, target: str) -> list[Delivery]:
        """A workspace (or org) removes the app: tokens revoked, then tokens_revoked and app_uninstalled."""
        install = self._installation(target)
        tokens = self._revoke(install)
        self.emu.installations.remove(install)
        return await self._tell(install, [{"type": "tokens_revoked", "tokens": tokens}, {"type": "app_uninstalled"}])

    def state(self) -> dict:
        return {"installations": [{"team_id": i.team_id, "enterprise_id": i.enterprise_id,
                                   "is_enterprise_install": i.is_enterprise_install, "bot_user_id": i.bot_user_id}
                                  for i in self.emu.installations]}


def _scopes(raw: Any) -> set[str]:
    return {s.strip() for s in str(raw or "").split(",") if s.strip()}


def _page(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>{title} | Slack</title></head><body><h1>{title}</h1>{body}</body></html>"
