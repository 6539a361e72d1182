"""Requests signed exactly as Slack signs them (v0 HMAC of `v0:{timestamp}:{body}` with the
current time), for slash commands and interactive payloads."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM_ID = "T0TEST"


def signed_headers(
    body: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """Slack's signature headers for `body` (a stale `timestamp` makes a replayed request)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": content_type,
    }


def command_body(
    text: str,
    *,
    response_url: str,
    user_id: str = "U1",
    channel_id: str = "C1",
    team_id: str = TEAM_ID,
    command: str = "/card",
) -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": channel_id.lower(),
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0TEST",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    )


def action_body(
    action_id: str,
    value: str,
    *,
    response_url: str,
    user_id: str = "U1",
    channel_id: str = "C1",
    team_id: str = TEAM_ID,
    message: dict[str, Any] | None = None,
) -> str:
    """A `block_actions` payload for a button press (on `message` when it is a channel one)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "test"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "container": {"type": "message", "channel_id": channel_id, "is_ephemeral": message is None},
        "trigger_id": "1.2.3",
        "channel": {"id": channel_id, "name": channel_id.lower()},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if message is not None:
        payload["message"] = message
        payload["container"]["message_ts"] = message.get("ts")
    return urlencode({"payload": json.dumps(payload)})


async def post_signed(
    http: httpx.AsyncClient,
    url: str,
    body: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    """POST `body` signed; JSON bodies (events) are sent as JSON, the rest as a form."""
    kind = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
    headers = signed_headers(body, secret=secret, timestamp=timestamp, content_type=kind)
    return await http.post(url, content=body, headers=headers)
