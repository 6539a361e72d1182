"""Slack mrkdwn pieces shared by every renderer (pure): dates, status words, fields.

Outside text enters through `escape`, which is `bot.render.slacktext.escape` (the one boundary:
card numbers masked, `&`, `<`, `>` escaped); the block builders here cut to Slack's limits there.
"""

from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import Block, HeaderBlock, MarkdownTextObject

from bot.render import slacktext
from bot.render.slacktext import escape
from d1.models import PRODUCTION_STATUS_WORDS, SHIPMENT_STATUS_WORDS

MAX_FIELDS = slacktext.SECTION_FIELDS
HEADER_LIMIT = slacktext.HEADER_TEXT


def slack_date(value: datetime, *, with_time: bool = True) -> str:
    """A date Slack shows in each reader's own timezone, with a UTC fallback."""
    stamp = int(value.timestamp())
    fmt = "{date_short_pretty} {time}" if with_time else "{date_short_pretty}"
    fallback = value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")
    return f"<!date^{stamp}^{fmt}|{fallback}>"


def wall_clock(value: datetime, *, with_time: bool = True) -> str:
    """A local date-time of a place (an ETA, a delivery, a checkpoint) as D1 wrote it: the same
    calendar day and hour for every reader, never shifted into their timezone."""
    day = f"{value:%a} {value.day} {value:%b %Y}"
    return f"{day}, {value:%H:%M}" if with_time and (value.hour or value.minute) else day


def status_words(status: str | None) -> str:
    """`Shipped (`CARD_SHIPPED`)`; an unknown status is shown as it is (escaped)."""
    if not status:
        return "Unknown"
    words = PRODUCTION_STATUS_WORDS.get(status)
    return f"{words} (`{escape(status)}`)" if words else f"`{escape(status)}`"


def shipment_words(status: str | None) -> str:
    """`In transit (`IN_TRANSIT`)`; an unknown shipment status is shown as it is (escaped)."""
    if not status:
        return "Unknown"
    words = SHIPMENT_STATUS_WORDS.get(status)
    return f"{words} (`{escape(status)}`)" if words else f"`{escape(status)}`"


def plain_status(status: str | None, shipment_status: str | None) -> str:
    """Status in words without markup, for fallback text and headers; an unknown code is
    shown escaped (it would otherwise be obeyed: `<!here>` as a status pings a channel)."""
    words = PRODUCTION_STATUS_WORDS.get(status or "") or escape(status or "Unknown")
    if shipment_status:
        words += " / " + (SHIPMENT_STATUS_WORDS.get(shipment_status) or escape(shipment_status))
    return words


def field(label: str, value: str) -> MarkdownTextObject:
    return slacktext.field(label, value)


def sections(fields: list[MarkdownTextObject]) -> list[Block]:
    """Fields laid out in as many sections as Slack's 10-field limit needs."""
    return slacktext.field_sections(fields)


def header(text: str) -> HeaderBlock:
    return slacktext.header(text)


__all__ = [
    "escape",
    "field",
    "header",
    "plain_status",
    "sections",
    "shipment_words",
    "slack_date",
    "status_words",
]
