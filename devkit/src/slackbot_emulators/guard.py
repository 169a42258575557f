"""Keep local control surfaces (the emulators' `/_emu/*`, the sandbox page) local in fact.

A browser lets any web page send a "simple" cross-origin POST (`text/plain`, forms) to
127.0.0.1 without asking, and a page whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding)
becomes same-origin with a local server. Two checks close both doors:

* the Host header must be an IP literal or an allowed name (`localhost`, or a name the operator
  chose): a rebinding page sends its own name;
* control POSTs must be `application/json`, which a cross-origin page cannot send without a CORS
  preflight that these servers never grant.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

log = logging.getLogger(__name__)

LOCAL_NAMES = frozenset({"localhost"})


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_name(host_header: str) -> str:
    """"127.0.0.1:3000" -> "127.0.0.1", "[::1]:3000" -> "::1", "Example.com." -> "example.com"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host_header: str, names: frozenset[str] | set[str] = LOCAL_NAMES) -> bool:
    host = host_name(host_header)
    return bool(host) and (is_ip(host) or host in names)


def refuse_host(request: web.Request) -> web.Response:
    log.info("request for another host refused", extra={"path": request.path})
    return web.json_response({"ok": False, "error": "unknown Host; open this server by its address"}, status=421)


def refuse_content_type(request: web.Request) -> web.Response:
    log.info("control request without application/json refused", extra={"path": request.path})
    return web.json_response({"ok": False, "error": "send application/json"}, status=415)


async def local_control(request: web.Request, handler, *, exempt: tuple[str, ...] = ()) -> web.StreamResponse:
    """Serve a control request only for a local Host and, for POSTs outside `exempt`, only as JSON."""
    if not host_allowed(request.headers.get("Host", "")):
        return refuse_host(request)
    if request.method == "POST" and not request.path.startswith(exempt) and request.content_type != "application/json":
        return refuse_content_type(request)
    return await handler(request)
