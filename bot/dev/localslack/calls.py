"""What the stand-in records of each request, and how it reads request bodies.

Kept apart from the server and the methods because everything else depends on it: the
workspace answers from decoded bodies, the demo renders recorded `Call`s, and tests assert on
them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

BOT_USER_ID = "UD1BOT"
BOT_ID = "BD1BOT"
TEAM_ID = "T0LOCAL"
PERMALINK_HOST = "https://localslack.example"
# Form fields that carry JSON documents when a client sends form-encoded bodies.
JSON_FIELDS = ("blocks", "attachments", "view", "metadata")

# What an API call is answered with: HTTP status, JSON body, extra headers (Retry-After).
Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Call:
    """One request the stand-in received, and what it answered."""

    method: str
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def channel(self) -> str | None:
        value = self.body.get("channel")
        return str(value) if value is not None else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


def decode_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """JSON or form-encoded body as a dict; JSON documents inside form fields decoded, since
    slack_sdk sends `blocks` as a JSON string when it posts a form."""
    if not raw:
        return {}
    if "json" in content_type:
        try:
            decoded = json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}
        return decoded if isinstance(decoded, dict) else {"_json": decoded}
    body: dict[str, Any] = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for name in JSON_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                body[name] = json.loads(value)
    return body


def truthy(value: Any) -> bool:
    """A boolean argument as Slack reads it: form posts carry "true"/"1", JSON posts `true`."""
    if isinstance(value, str):
        return value.lower() in {"1", "true", "yes"}
    return bool(value)
