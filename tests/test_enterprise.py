"""Enterprise mode end to end: a `slackbot serve` process configured only through its documented
settings answers a chat turn over the Enterprise Agent Platform paths, authenticated by a service
account whose key file points google-auth at the emulator's token endpoint."""

from __future__ import annotations

import json
import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import end_processes, eventually, free_port, process_env, wait_ready
from test_chat import MENTION, joined

PROJECT, LOCATION = "slackbot-enterprise-test", "us-central1"


def service_account_key(path, token_uri: str) -> str:
    """Write a freshly generated service-account key file; returns its client_email."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"slackbot@{PROJECT}.iam.gserviceaccount.com"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem,
        "client_email": email, "client_id": "1", "token_uri": token_uri}))
    return email


def spawn_enterprise_bot(settings, key_file) -> subprocess.Popen:
    env = process_env(settings, GOOGLE_GENAI_USE_ENTERPRISE="true", GOOGLE_CLOUD_PROJECT=PROJECT,
                      GOOGLE_CLOUD_LOCATION=LOCATION, GOOGLE_APPLICATION_CREDENTIALS=str(key_file))
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_API_VERSION"):
        env.pop(name, None)  # the only credential is the service account
    return subprocess.Popen([sys.executable, "-m", "slackbot", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_chat_turn_in_enterprise_mode_uses_the_service_accounts_token(
        settings_for, slack_emu, gemini_emu, tmp_path):
    email = service_account_key(tmp_path / "key.json", f"{gemini_emu.base_url}/token")
    settings = settings_for(port=free_port())
    proc = spawn_enterprise_bot(settings, tmp_path / "key.json")
    try:
        await wait_ready(settings.port)
        slack_emu.app_url = f"http://127.0.0.1:{settings.port}/slack/events"
        gemini_emu.script(text="Answered through the Enterprise Agent Platform.")
        d = await slack_emu.user_message("C_GENERAL", f"{MENTION} hello from the enterprise")
        await eventually(lambda: "AnsweredthroughtheEnterpriseAgentPlatform." in joined(
            slack_emu, "C_GENERAL", d.message.ts), 20, message="the answer in Slack")
    finally:
        end_processes([proc])
    [(token, claims)] = gemini_emu.access_tokens.items()
    assert claims["iss"] == email and "cloud-platform" in claims["scope"]
    creates = [r for r in gemini_emu.requests if r["method"] == "POST" and r["status"] == 200]
    assert creates, "the turn reached the emulator"
    for request in creates:
        assert request["path"] == f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/interactions"
        assert request["bearer"] == token
