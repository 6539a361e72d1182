"""The JSON examples of D1's own documentation (shared/spec), read from the spec files."""

from __future__ import annotations

import json
import re
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"
if not SPEC_DIR.is_dir():  # a checkout with shared/ beside the repository root
    SPEC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "spec"


def tracking_hub_examples() -> list[dict]:
    """Every ```json block of tracking-hub.md, parsed."""
    text = (SPEC_DIR / "tracking-hub.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def notification_examples() -> list[dict]:
    return [e for e in tracking_hub_examples() if "operation" in e]


def track_request_examples() -> list[dict]:
    return [e for e in tracking_hub_examples() if "trackingType" in e]


def load_schema(name: str) -> dict:
    return json.loads((SPEC_DIR / name).read_text())
