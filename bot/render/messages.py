"""Block Kit for channel messages: pure functions from stored card and event rows.

Everything here is posted to channels, which many people read: a channel message carries no
personal data at all (no cardholder name, no address, no `signedBy`), every piece of text that
came from outside passes through `slacktext.escape` (PANs masked, mentions made inert), and
every payload is finished by `slacktext.message_payload` (Slack's limits, PANs masked again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, MarkdownTextObject

from bot.render import actions, mrkdwn, slacktext, triage
from bot.render.slacktext import button, context, section
from d1.models import Shipment
from storage.tables import CardRecord, EventRecord

MAX_SECTION_TEXT = slacktext.SECTION_TEXT
MAX_SUMMARY_ROWS = 40  # a burst summary longer than this ends with "... and N more"


@dataclass(frozen=True)
class ChannelMessage:
    """A message for `chat.postMessage` / `chat.update`: fallback text plus blocks."""

    text: str
    blocks: Sequence[Block] = field(default_factory=tuple)

    def block_dicts(self) -> list[dict[str, Any]]:
        return slacktext.fit_blocks(self.blocks)

    def as_payload(self) -> dict[str, Any]:
        """`{"text", "blocks"}` as stored in an outbox row's payload, within Slack's limits."""
        payload = slacktext.message_payload(self.text, self.blocks)
        return {"text": payload["text"], "blocks": payload.get("blocks", [])}


# --------------------------------------------------------------------------- text helpers


def card_label(card_id: str) -> str:
    """How a card is named in a channel: its D1 card id (masked if it ever looks like a PAN)."""
    return mrkdwn.escape(card_id)


def _shipment(raw: dict[str, Any] | None) -> Shipment | None:
    if not raw:
        return None
    try:
        return Shipment.model_validate(raw)
    except ValueError:
        return None


def tracking_value(shipment: Shipment) -> str | None:
    """The tracking number (as text) and a link to the carrier's page, labelled with the
    carrier's name (`slacktext.tracking_link`: http(s) only, encoded, never with a PAN)."""
    number = mrkdwn.escape(shipment.tracking_number)
    link = slacktext.tracking_link(shipment.tracking_url or shipment.redirect_url, shipment.carrier)
    parts = [p for p in (number, link) if p]
    return " · ".join(parts) or None


def _shipment_fields(shipment: Shipment) -> list[MarkdownTextObject]:
    """Carrier facts that may go to a channel. Never `signedBy`: it is a person's name."""
    fields: list[MarkdownTextObject] = []
    if shipment.status:
        value = mrkdwn.shipment_words(shipment.status)
        if shipment.message:
            value += f"\n{mrkdwn.escape(shipment.message)}"
        fields.append(mrkdwn.field("Shipment", value))
    if shipment.carrier:
        fields.append(mrkdwn.field("Carrier", slacktext.carrier_label(shipment.carrier)))
    link = tracking_value(shipment)
    if link:
        fields.append(mrkdwn.field("Tracking", link))
    if shipment.estimated_delivery_date and not shipment.delivery_date:
        fields.append(
            mrkdwn.field(
                "ETA", mrkdwn.wall_clock(shipment.estimated_delivery_date, with_time=False)
            )
        )
    if shipment.delivery_date:
        fields.append(mrkdwn.field("Delivered", mrkdwn.wall_clock(shipment.delivery_date)))
    if shipment.failed_delivery_attempts and shipment.failed_delivery_attempts != "0":
        fields.append(
            mrkdwn.field("Failed attempts", mrkdwn.escape(shipment.failed_delivery_attempts))
        )
    checkpoint = shipment.last_checkpoint
    if checkpoint is not None and (checkpoint.city or checkpoint.country_name):
        place = ", ".join(mrkdwn.escape(p) for p in (checkpoint.city, checkpoint.country_name) if p)
        when = (
            f" ({mrkdwn.wall_clock(checkpoint.checkpoint_time)})"
            if checkpoint.checkpoint_time
            else ""
        )
        fields.append(mrkdwn.field("Last checkpoint", place + when))
    return fields


def _event_shipment(event: EventRecord) -> Shipment | None:
    details = (event.payload or {}).get("details") or {}
    return _shipment(details.get("shipment"))


def _event_line(event: EventRecord) -> str:
    """What an event reported, in one line of mrkdwn."""
    parts = [mrkdwn.status_words(event.details_status)] if event.details_status else []
    if event.shipment_status:
        shipment = mrkdwn.shipment_words(event.shipment_status)
        if event.shipment_message:
            shipment += f": {mrkdwn.escape(event.shipment_message)}"
        parts.append(shipment)
    if event.operation_status and event.operation_status != "SUCCESSFUL":
        parts.append(f"operation `{mrkdwn.escape(event.operation_status)}`")
    if not parts:
        parts.append(f"`{mrkdwn.escape(event.operation)}`")
    return " · ".join(parts)


def _event_reason(event: EventRecord) -> str | None:
    payload = event.payload or {}
    reason = (payload.get("details") or {}).get("reason")
    code = payload.get("errorCode")
    bits = []
    if reason:
        bits.append(f"reason: {mrkdwn.escape(str(reason))}")
    if code:
        bits.append(f"error code `{mrkdwn.escape(str(code))}`")
    return ", ".join(bits) or None


# --------------------------------------------------------------------------- the parent


def card_parent_message(card: CardRecord) -> ChannelMessage:
    """The first message about a card in a channel, kept current with `chat.update`."""
    label = card_label(card.card_id)
    plain = mrkdwn.plain_status(card.status, card.shipment_status)
    alert = ":warning: " if card.is_exception else ""
    fields = [mrkdwn.field("Status", mrkdwn.status_words(card.status))]
    shipment = _shipment(card.shipment)
    if shipment is not None:
        fields.extend(_shipment_fields(shipment))
    elif card.shipment_status:
        fields.append(mrkdwn.field("Shipment", mrkdwn.shipment_words(card.shipment_status)))
    if card.production_site:
        fields.append(mrkdwn.field("Production site", mrkdwn.escape(card.production_site)))
    if card.reason:
        fields.append(mrkdwn.field("Reason", mrkdwn.escape(card.reason)))
    footer = []
    if card.state_event_time is not None:
        footer.append(f"Status as of {mrkdwn.slack_date(card.state_event_time)}")
    footer.append("Updates in the thread :thread:")
    blocks: list[Block] = [
        mrkdwn.header(f"Card {label}"),
        section(f"{alert}*{plain}*"),
        *mrkdwn.sections(fields),
        context(" · ".join(footer)),
    ]
    return ChannelMessage(text=f"{alert}Card {label}: {plain}", blocks=blocks)


# --------------------------------------------------------------------------- thread replies


def event_reply_message(event: EventRecord) -> ChannelMessage:
    """One event in the card's thread (rendered from the event, not from the card)."""
    alert = ":warning: " if event.is_exception else ""
    line = f"{alert}{_event_line(event)}"
    reason = _event_reason(event)
    if reason:
        line += f"\n{reason}"
    blocks: list[Block] = [section(line)]
    shipment = _event_shipment(event)
    if shipment is not None:
        fields = [f for f in _shipment_fields(shipment) if not f.text.startswith("*Shipment*")]
        blocks.extend(mrkdwn.sections(fields))
    when = mrkdwn.slack_date(event.event_time)
    blocks.append(context(f"`{mrkdwn.escape(event.operation)}` · event time {when}"))
    plain = mrkdwn.plain_status(event.details_status, event.shipment_status)
    return ChannelMessage(text=f"{alert}Card {card_label(event.card_id)}: {plain}", blocks=blocks)


def flat_event_message(event: EventRecord) -> ChannelMessage:
    """One event as its own message, for a channel that keeps no threads: the reply, headed by
    the card it is about."""
    reply = event_reply_message(event)
    heading = section(f"*Card {card_label(event.card_id)}*")
    return ChannelMessage(text=reply.text, blocks=[heading, *reply.blocks])


def card_notice_message(card_id: str, text: str) -> ChannelMessage:
    """A plain notice in a card's thread (stuck cards and other scheduled findings)."""
    return ChannelMessage(
        text=f"Card {card_label(card_id)}: {mrkdwn.escape(text)}",
        blocks=[section(mrkdwn.escape(text))],
    )


def stuck_card_message(
    card: CardRecord, *, stuck_for: timedelta, expected: str | None = None
) -> ChannelMessage:
    """A card that has not moved for longer than expected."""
    label = card_label(card.card_id)
    plain = mrkdwn.plain_status(card.status, card.shipment_status)
    hours = int(stuck_for.total_seconds() // 3600)
    duration = f"{hours // 24} days" if hours >= 48 else f"{hours} hours"
    line = f":hourglass: Card *{label}* has been *{plain}* for {duration}"
    if expected:
        line += f" (expected within {mrkdwn.escape(expected)})"
    return ChannelMessage(
        text=f"Card {label} has been {plain} for {duration}",
        blocks=[section(line), context("Use `/card status " + label + "` to ask D1 now.")],
    )


# --------------------------------------------------------------------------- exception alerts


def _alert_blocks(
    card: CardRecord, event: EventRecord, *, thread_link: str | None
) -> tuple[str, list[Block]]:
    label = card_label(card.card_id)
    plain = mrkdwn.plain_status(event.details_status, event.shipment_status)
    what = _event_line(event)
    reason = _event_reason(event)
    if reason:
        what += f"\n{reason}"
    fields = [
        mrkdwn.field("Card", f"`{label}`"),
        mrkdwn.field("Reported", mrkdwn.slack_date(event.event_time)),
    ]
    shipment = _event_shipment(event)
    if shipment is not None:
        fields.extend(_shipment_fields(shipment))
    blocks: list[Block] = [
        mrkdwn.header(f"Card exception: {plain}"),
        section(f":rotating_light: {what}"),
        *mrkdwn.sections(fields),
    ]
    link = slacktext.safe_url(thread_link)
    if link:
        blocks.append(context(f"<{link}|Card thread>"))
    return f"Card exception on {label}: {plain}", blocks


def exception_alert_message(
    card: CardRecord,
    event: EventRecord,
    *,
    thread_link: str | None = None,
    state: triage.AlertState | None = None,
    now: datetime | None = None,
) -> ChannelMessage:
    """An alert for the exceptions channel: what happened, who owns it and for how long, and
    buttons to act on it (rendered again, in place, when its owner or state changes)."""
    state = state or triage.AlertState()
    text, blocks = _alert_blocks(card, event, thread_link=thread_link)
    blocks.append(context(triage.state_line(state, now)))
    value = actions.encode_value(actions.ActionValue(card.card_id, event.id))
    elements = triage.triage_buttons(card.card_id, event.id, state)
    elements.append(button("Refresh status", action_id=actions.ALERT_REFRESH, value=value))
    if state.open:
        elements.append(button("Re-request tracking", action_id=actions.ALERT_RETRACK, value=value))
    blocks.append(ActionsBlock(block_id="alert_actions", elements=elements))
    if not state.open:
        text += " (resolved)"
    elif state.owner:
        text += f" (owner {slacktext.user(state.owner)})"
    return ChannelMessage(text=text, blocks=blocks)


# --------------------------------------------------------------------------- burst summary


def burst_summary_message(cards: Sequence[CardRecord]) -> ChannelMessage:
    """Many cards changed at once (a batch file): one message counting them by status and
    listing them, exceptions first, then the newest."""
    newest_first = sorted(
        cards, key=lambda c: c.state_event_time or datetime.min.replace(tzinfo=timezone.utc),
        reverse=True,
    )  # fmt: skip
    ordered = sorted(newest_first, key=lambda c: not c.is_exception)  # stable: newest first
    exceptions = sum(1 for c in ordered if c.is_exception)
    head = f"{len(ordered)} cards changed at once"
    if exceptions:
        head += f", {exceptions} with exceptions"
    counts = Counter(mrkdwn.plain_status(c.status, c.shipment_status) for c in ordered)
    lines = [" · ".join(f"{words}: {n}" for words, n in counts.most_common())]
    for card in ordered[:MAX_SUMMARY_ROWS]:
        mark = ":warning: " if card.is_exception else "• "
        line = f"{mark}`{card_label(card.card_id)}` {mrkdwn.status_words(card.status)}"
        if card.shipment_status:
            line += f" · {mrkdwn.shipment_words(card.shipment_status)}"
        lines.append(line)
    if len(ordered) > MAX_SUMMARY_ROWS:
        lines.append(f"… and {len(ordered) - MAX_SUMMARY_ROWS} more")
    blocks: list[Block] = [mrkdwn.header(head)]
    chunk: list[str] = []
    for line in lines:  # sections of at most MAX_SECTION_TEXT characters
        if chunk and len("\n".join([*chunk, line])) > MAX_SECTION_TEXT:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    blocks.append(
        context("Summarised to spare the channel; `/card status &lt;cardId&gt;` for details.")
    )
    return ChannelMessage(text=head, blocks=blocks)


# --------------------------------------------------------------------------- notices


def not_in_channel_notice(channel_id: str) -> ChannelMessage:
    """To the subscriber, when the bot cannot post to the channel they subscribed."""
    text = (
        f"I can't post card updates to {slacktext.channel(channel_id)}: I'm not a member of it. "
        f"Type `/invite @d1bot` in that channel, and new updates will arrive there."
    )
    return ChannelMessage(text=text, blocks=[section(text)])
