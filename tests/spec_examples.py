"""The JSON examples of D1's own documentation (d1/spec), read from the spec files."""

from __future__ import annotations

import json
import re

from d1.spec import spec_json, spec_text


def tracking_hub_examples() -> list[dict]:
    """Every ```json block of tracking-hub.md, parsed."""
    text = spec_text("tracking-hub.md")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def notification_examples() -> list[dict]:
    return [e for e in tracking_hub_examples() if "operation" in e]


def track_request_examples() -> list[dict]:
    return [e for e in tracking_hub_examples() if "trackingType" in e]


def load_schema(name: str) -> dict:
    return spec_json(name)
