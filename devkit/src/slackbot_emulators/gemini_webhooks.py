"""Webhook deliveries of the Interactions emulator.

A create may carry `webhook_config: {"uris": [...], "user_metadata": {...}}` (google-genai 3.6.1
`_gaos/types/interactions/webhookconfig.py`: the uris replace the registered webhooks, the
metadata "will be returned on each event emission"). The events the SDK names
(`_gaos/types/webhooks/webhook.py` WebhookSubscribedEvent) for interactions are
`interaction.completed`, `interaction.failed` and `interaction.requires_action`.

The SDK does not describe a delivery's body or signature. The emulator sends what Gemini's
webhook guide describes (Standard Webhooks): headers `webhook-id`, `webhook-timestamp`,
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under ``SIGNING_SECRET``)
and the body ``{"type": <event>, "version": "v1", "timestamp": <RFC 3339>, "data": {"id":
<interaction id>, "status": <status>, "user_metadata": {...}}}``. A receiver should treat it as a
hint and fetch the interaction, as the project's reference says.

Deliveries go to loopback addresses only (the emulator never calls out); others are recorded as
skipped.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import time
import uuid
from typing import Callable
from urllib.parse import urlsplit

import aiohttp

SIGNING_SECRET = "whsec_" + base64.b64encode(b"slackbot-emulator-webhook-secret").decode()
EVENTS = {"completed": "interaction.completed", "failed": "interaction.failed",
          "requires_action": "interaction.requires_action"}


def validate_config(config, error: Callable[[str], Exception]) -> None:
    if not isinstance(config, dict) or set(config) - {"uris", "user_metadata"}:
        raise error("webhook_config: {uris: [string], user_metadata: object}.")
    uris = config.get("uris", [])
    if not isinstance(uris, list) or not all(isinstance(u, str) and urlsplit(u).scheme in ("http", "https")
                                             and urlsplit(u).hostname for u in uris):
        raise error("webhook_config.uris: a list of http(s) URLs.")
    if not isinstance(config.get("user_metadata", {}), dict):
        raise error("webhook_config.user_metadata: must be an object.")


def is_loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def payload(event: str, interaction_id: str, status: str, user_metadata: dict) -> dict:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": event, "version": "v1", "timestamp": stamp,
            "data": {"id": interaction_id, "status": status, "user_metadata": user_metadata}}


def signed_headers(body: bytes) -> dict:
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(SIGNING_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"Content-Type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


async def deliver(uris: list[str], body: dict, timeout: float = 5.0) -> list[dict]:
    """POST ``body`` to each loopback uri; one record per uri (status, or why it was not sent)."""
    raw = json.dumps(body).encode()
    records = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        for uri in uris:
            record = {"uri": uri, "body": body, "time": time.time()}
            if not is_loopback(uri):
                records.append({**record, "skipped": "not a loopback address"})
                continue
            headers = signed_headers(raw)
            try:
                async with http.post(uri, data=raw, headers=headers) as resp:
                    record.update(status=resp.status, headers=headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                record.update(error=type(e).__name__, headers=headers)
            records.append(record)
    return records
