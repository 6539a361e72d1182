"""A card's story as a modal (`views.open`): every stored event in time order with its status
in words, when, where, the operation and marks (arrived late, found by reconciliation), mixed
with the tracking requests and looks of the audit log; pages within Slack's modal limits.

Only the agent who opened the modal sees it, so who signed for the card may be shown; card
numbers are masked like everywhere (`bot.render.slacktext`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block

from bot.render import actions, mrkdwn, slacktext
from bot.render.slacktext import button, context, escape, section
from storage.tables import SOURCE_RECONCILIATION, AuditRecord, CardRecord, EventRecord

PAGE_LINES = 48  # 6 sections of 8 lines: far below 100 blocks and 3,000 characters each
LINES_PER_SECTION = 8
TITLE = "Card story"
TRACKING_ACTIONS = frozenset({"track", "button_retrack"})
PAGE_TURN = "timeline_page"  # audited, but turning a page is not another look
LAST_PAGE = 10**6  # asks `story_view` for the newest page


@dataclass(frozen=True)
class StoryLine:
    at: datetime
    text: str


def _place(event: EventRecord) -> str:
    shipment = ((event.payload or {}).get("details") or {}).get("shipment") or {}
    checkpoint = shipment.get("lastCheckpoint") or {}
    parts = [checkpoint.get("city"), checkpoint.get("countryName")]
    place = ", ".join(escape(p) for p in parts if isinstance(p, str) and p)
    return f" · {place}" if place else ""


def event_line(event: EventRecord) -> StoryLine:
    words = mrkdwn.status_words(event.details_status)
    if event.shipment_status:
        words += f" · {mrkdwn.shipment_words(event.shipment_status)}"
    text = (
        f"{mrkdwn.slack_date(event.event_time)} {words}{_place(event)}\n"
        f"      `{escape(event.operation)}` {escape(event.operation_status)}"
    )
    if event.shipment_message:
        text += f" · _{escape(event.shipment_message)}_"
    shipment = ((event.payload or {}).get("details") or {}).get("shipment") or {}
    if isinstance(shipment.get("signedBy"), str) and shipment["signedBy"]:
        text += f" · signed by {escape(shipment['signedBy'])}"
    if not event.became_current:
        text += f" · :hourglass: arrived late ({mrkdwn.slack_date(event.received_at)})"
    if event.source == SOURCE_RECONCILIATION:
        text += " · :mag: found by reconciliation with D1"
    if event.is_exception:
        text = ":rotating_light: " + text
    return StoryLine(event.event_time, "• " + text)


def audit_line(row: AuditRecord) -> StoryLine:
    who = slacktext.user(row.user_id)
    what = escape(row.action)
    if row.action in TRACKING_ACTIONS:
        verb = f":satellite_antenna: {who} asked D1 to track (`{what}`, {escape(row.outcome)})"
    else:
        verb = f":eyes: {who} looked (`{what}`)"
    return StoryLine(row.at, f"• {mrkdwn.slack_date(row.at)} {verb}")


def story_lines(events: Sequence[EventRecord], looks: Sequence[AuditRecord]) -> list[StoryLine]:
    """Events and audit rows in one time order (events first on a tie)."""
    lines = [event_line(e) for e in events]
    lines += [audit_line(a) for a in looks if a.action != PAGE_TURN]
    return sorted(lines, key=lambda line: line.at)  # stable: events stay before looks


def story_view(
    card_id: str,
    card: CardRecord | None,
    lines: Sequence[StoryLine],
    *,
    page: int,
    channel_id: str,
) -> dict[str, Any]:
    """One page of the modal; the newest page is the last."""
    pages = max(1, -(-len(lines) // PAGE_LINES))
    page = min(max(page, 0), pages - 1)
    shown = lines[page * PAGE_LINES : (page + 1) * PAGE_LINES]
    now = "no events stored yet"
    if card is not None and card.status:
        now = mrkdwn.plain_status(card.status, card.shipment_status)
    blocks: list[Block] = [
        mrkdwn.header(f"Card {escape(card_id)}"),
        context(f"Now: {now} · {len(lines)} entries, oldest first · page {page + 1} of {pages}"),
    ]
    for start in range(0, len(shown), LINES_PER_SECTION):
        chunk = shown[start : start + LINES_PER_SECTION]
        blocks.append(section("\n".join(line.text for line in chunk)))
    if not shown:
        blocks.append(section("Nothing is stored about this card yet."))
    turns = []
    if page > 0:
        value = actions.encode_value(actions.ActionValue(card_id, page - 1))
        turns.append(button("Older", action_id=actions.TIMELINE_PAGE, value=value))
    if page < pages - 1:
        value = actions.encode_value(actions.ActionValue(card_id, page + 1))
        turns.append(button("Newer", action_id=actions.TIMELINE_PAGE, value=value))
    if turns:
        blocks.append(ActionsBlock(elements=turns))
    blocks.append(context(":lock: Only you see this; card numbers are always masked."))
    metadata = json.dumps({"card": card_id, "channel": channel_id})
    return slacktext.view_payload(
        {
            "type": "modal",
            "title": {"type": "plain_text", "text": TITLE},
            "close": {"type": "plain_text", "text": "Close"},
            "private_metadata": metadata,
            "blocks": blocks,
        }
    )


__all__ = [
    "LAST_PAGE",
    "PAGE_LINES",
    "PAGE_TURN",
    "StoryLine",
    "audit_line",
    "event_line",
    "story_lines",
    "story_view",
]
