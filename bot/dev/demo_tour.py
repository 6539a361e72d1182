"""The demo's tour, played once the morning is over: what an agent does next (find a card, read
its story, take an exception, quiet a channel), each step sent to the bot as Slack would send it
and introduced by a one-line caption.

Pure: the steps, a button press typed at the prompt, finding that button on what the agent
sees, and the signed `block_actions` request Slack sends for it. `bot.dev.demo` sends them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bot.dev.demo_morning import (
    AGENT_ID,
    AGENT_NAME,
    CHANNEL_NAMES,
    DEMO_TEAM,
    EXCEPTIONS_CHANNEL,
    OPS_CHANNEL,
    TypedCommand,
    signed_headers,
)
from bot.render.actions import decode_value

TOUR_CARD = "crd-f8r6"  # the failed delivery attempt: an exception with a story


@dataclass(frozen=True)
class Click:
    """A press of the button labelled `label` (any case) for `card_id`, on the newest message
    of the channels that has one, else on the newest reply to the agent."""

    label: str
    card_id: str


@dataclass(frozen=True)
class TourStep:
    caption: str
    action: TypedCommand | Click


def tour_steps(tracking_number: str) -> tuple[TourStep, ...]:
    """The tour for the morning's failed delivery, found by its carrier tracking number."""
    ops, exceptions = OPS_CHANNEL, EXCEPTIONS_CHANNEL
    return (
        TourStep(
            "A cardholder calls with a tracking number: find the card.",
            TypedCommand(ops, f"find {tracking_number}"),
        ),
        TourStep("Read the card's story.", TypedCommand(ops, f"history {TOUR_CARD}")),
        TourStep("The open exceptions, oldest first.", TypedCommand(exceptions, "exceptions open")),
        TourStep("Take the failed delivery: its alert shows its owner.",
                 Click("Assign to me", TOUR_CARD)),
        TourStep("The exceptions you own.", TypedCommand(exceptions, "exceptions mine")),
        TourStep(
            "Keep #card-ops quiet: updates stay in the cards' threads.",
            TypedCommand(ops, "settings threads quiet"),
        ),
        TourStep("The channel's settings.", TypedCommand(ops, "settings")),
    )  # fmt: skip


def caption_line(step: TourStep) -> str:
    """`» Read the card's story.  #card-ops /card history crd-f8r6`."""
    action = step.action
    if isinstance(action, Click):
        did = f"click [{action.label}] on the alert of {action.card_id}"
    else:
        did = f"#{CHANNEL_NAMES[action.channel_id]} /card {action.text}"
    return f"» {step.caption}  {did}"


def parse_click_line(line: str) -> Click | None:
    """`click <button label> <card id>`, as typed at the prompt; None for anything else."""
    words = line.split()
    if len(words) < 3 or words[0].lower() != "click":
        return None
    return Click(label=" ".join(words[1:-1]), card_id=words[-1])


# --------------------------------------------------------------------------- pressing


@dataclass(frozen=True)
class Shown:
    """A message the agent sees, with its buttons: in a channel (`ts`), or a reply only the
    agent sees (`ts` None: Slack marks the press as on an ephemeral message)."""

    channel_id: str
    blocks: Sequence[Any]
    ts: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Press:
    """A button found on a shown message, ready to be pressed."""

    on: Shown
    action_id: str
    value: str


def _buttons(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        elements = block.get("elements") if block.get("type") == "actions" else []
        found.extend(e for e in [block.get("accessory"), *(elements or [])] if isinstance(e, dict))
    return [e for e in found if e.get("type") == "button" and e.get("action_id")]


def find_button(shown: Sequence[Shown], click: Click) -> Press | None:
    """The button `click` means on the last of `shown` that has it."""
    for message in reversed(shown):
        for element in _buttons(message.blocks):
            label = str((element.get("text") or {}).get("text") or "")
            try:
                card_id = decode_value(str(element.get("value") or "")).card_id
            except ValueError:
                continue
            if label.lower() == click.label.lower() and card_id == click.card_id:
                return Press(message, str(element["action_id"]), str(element["value"]))
    return None


def action_request(
    press: Press, *, response_url: str, signing_secret: str, now: float | None = None
) -> tuple[str, dict[str, str]]:
    """The form body and headers Slack sends to the app when the agent presses the button."""
    channel = press.on.channel_id
    container: dict[str, Any] = {
        "type": "message",
        "channel_id": channel,
        "is_ephemeral": press.on.ts is None,
    }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": DEMO_TEAM, "domain": "demo"},
        "user": {"id": AGENT_ID, "username": AGENT_NAME, "team_id": DEMO_TEAM},
        "api_app_id": "A0D1DEMO",
        "token": "demo-verification-token",
        "container": container,
        "trigger_id": "demo.trigger",
        "channel": {"id": channel, "name": CHANNEL_NAMES.get(channel, channel)},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": press.action_id,
                "block_id": "demo",
                "value": press.value,
                "action_ts": f"{time.time() if now is None else now:.6f}",
            }
        ],
    }
    if press.on.ts is not None:
        container["message_ts"] = press.on.ts
        payload["message"] = {"ts": press.on.ts, "text": press.on.text, "blocks": press.on.blocks}
    body = urlencode({"payload": json.dumps(payload)})
    return body, signed_headers(body, signing_secret=signing_secret, now=now)


__all__ = [
    "TOUR_CARD",
    "Click",
    "Press",
    "Shown",
    "TourStep",
    "action_request",
    "caption_line",
    "find_button",
    "parse_click_line",
    "tour_steps",
]
