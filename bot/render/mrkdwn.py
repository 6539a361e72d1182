"""Slack mrkdwn and Block Kit building blocks shared by every renderer (pure).

`escape` is the one way outside text enters a message: PAN-like digit runs are masked, then
Slack's three control characters are escaped.
"""

from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import Block, HeaderBlock, MarkdownTextObject, SectionBlock

from d1.carddata import redact_pans
from d1.models import PRODUCTION_STATUS_WORDS, SHIPMENT_STATUS_WORDS

MAX_FIELDS = 10  # Slack's limit of fields in one section
HEADER_LIMIT = 150  # Slack's limit of a header's text


def escape(text: str | None) -> str:
    """Outside text made safe for Slack: PAN-like numbers masked, mrkdwn escaped."""
    if not text:
        return ""
    return redact_pans(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(value: datetime, *, with_time: bool = True) -> str:
    """A date Slack shows in each reader's own timezone, with a UTC fallback."""
    stamp = int(value.timestamp())
    fmt = "{date_short_pretty} {time}" if with_time else "{date_short_pretty}"
    fallback = value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")
    return f"<!date^{stamp}^{fmt}|{fallback}>"


def status_words(status: str | None) -> str:
    """`Shipped (`CARD_SHIPPED`)`; an unknown status is shown as it is."""
    if not status:
        return "Unknown"
    words = PRODUCTION_STATUS_WORDS.get(status)
    return f"{words} (`{escape(status)}`)" if words else f"`{escape(status)}`"


def shipment_words(status: str | None) -> str:
    """`In transit (`IN_TRANSIT`)`; an unknown shipment status is shown as it is."""
    if not status:
        return "Unknown"
    words = SHIPMENT_STATUS_WORDS.get(status)
    return f"{words} (`{escape(status)}`)" if words else f"`{escape(status)}`"


def plain_status(status: str | None, shipment_status: str | None) -> str:
    """Status in words without markup, for fallback text and headers."""
    words = PRODUCTION_STATUS_WORDS.get(status or "", status or "Unknown")
    if shipment_status:
        words += " / " + SHIPMENT_STATUS_WORDS.get(shipment_status, shipment_status)
    return words


def field(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=f"*{label}*\n{value}")


def sections(fields: list[MarkdownTextObject]) -> list[Block]:
    """Fields laid out in as many sections as Slack's 10-field limit needs."""
    return [
        SectionBlock(fields=fields[i : i + MAX_FIELDS]) for i in range(0, len(fields), MAX_FIELDS)
    ]


def header(text: str) -> HeaderBlock:
    if len(text) > HEADER_LIMIT:
        text = text[: HEADER_LIMIT - 1] + "…"
    return HeaderBlock(text=text)
