"""Block Kit replies of the `/card` command and its buttons: pure, built with slack_sdk models
and the builders of `bot.render.slacktext`.

Two status views exist on purpose: the personal one (ephemeral, to the agent who asked) may show
the cardholder's name, delivery address and who signed for the card; the shared one (posted to a
channel) never does. Every reply is finished by `slacktext` (limits, PANs masked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, DividerBlock, MarkdownTextObject

from bot.render import actions, help_text, mrkdwn, slacktext
from bot.render.messages import tracking_value
from bot.render.mrkdwn import escape, shipment_words, slack_date, status_words, wall_clock
from bot.render.slacktext import button, context, section
from d1.models import PRODUCTION_STATUS_WORDS, Address, ProductionStatus, Shipment

HELP_ENTRIES = help_text.HELP_ENTRIES
HELP_EXAMPLES = help_text.HELP_EXAMPLES
MAX_LIST_ROWS = 40  # a channel with more subscriptions gets a "... and N more" line


@dataclass(frozen=True)
class Reply:
    """What the bot answers: fallback text plus blocks (slack_sdk models, or dicts already
    built by another feature's renderer). `in_channel`: news for the whole channel rather
    than for the asker only."""

    text: str
    blocks: Sequence[Block | dict[str, Any]] = field(default_factory=tuple)
    in_channel: bool = False

    def block_dicts(self) -> list[dict[str, Any]]:
        return slacktext.fit_blocks(self.blocks)

    def respond_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for Bolt's `respond()` / `chat.postMessage`, within Slack's
        limits."""
        payload = slacktext.message_payload(self.text, self.blocks)
        kwargs: dict[str, Any] = {"text": payload["text"], **extra}
        if payload.get("blocks"):
            kwargs["blocks"] = payload["blocks"]
        return kwargs


@dataclass(frozen=True)
class ChannelSubscriptionRow:
    """One line of `/card list`: a subscription and its card's current status."""

    card_id: str
    filter: str
    created_by: str
    created_at: datetime
    status: str | None = None
    shipment_status: str | None = None


# --------------------------------------------------------------------------- formatting


def _day(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return slack_date(value, with_time=False)
    return value.isoformat()


# --------------------------------------------------------------------------- status views


def _production_fields(status: ProductionStatus) -> list[MarkdownTextObject]:
    fields = [mrkdwn.field("Production status", status_words(status.status))]
    if status.reason:
        fields.append(mrkdwn.field("Reason", escape(status.reason)))
    if status.due_date:
        fields.append(mrkdwn.field("Due date", _day(status.due_date)))
    if status.production_site:
        fields.append(mrkdwn.field("Production site", escape(status.production_site)))
    if status.production_request_date:
        fields.append(mrkdwn.field("Requested", slack_date(status.production_request_date)))
    if status.production_date:
        fields.append(mrkdwn.field("Produced", slack_date(status.production_date)))
    if status.masked_pan:
        fields.append(mrkdwn.field("Card", f"`{escape(status.masked_pan)}`"))
    services = status.services
    if services is not None:
        product = services.card_product_id
        if product:
            fields.append(mrkdwn.field("Card product", escape(product)))
        wanted = [
            ("issuance", services.issuance),
            ("priority", services.priority),
            ("delivery", services.delivery),
            ("packaging", services.packaging),
        ]
        listed = ", ".join(f"{k} {escape(v)}" for k, v in wanted if v)
        if listed:
            fields.append(mrkdwn.field("Services", listed))
    return fields


def shipment_fields(shipment: Shipment, *, personal: bool) -> list[MarkdownTextObject]:
    """The shipment part of a status: carrier, tracking link, status, ETA, checkpoint ...
    `personal` adds who signed for the card (a person's name: never in a channel)."""
    fields = []
    if shipment.carrier:
        fields.append(mrkdwn.field("Carrier", slacktext.carrier_label(shipment.carrier)))
    link = tracking_value(shipment)
    if link:
        fields.append(mrkdwn.field("Tracking number", link))
    status = shipment_words(shipment.status)
    if shipment.message:
        status += f"\n_{escape(shipment.message)}_"
    fields.append(mrkdwn.field("Shipment status", status))
    if shipment.estimated_delivery_date:
        fields.append(
            mrkdwn.field(
                "Estimated delivery", wall_clock(shipment.estimated_delivery_date, with_time=False)
            )
        )
    if shipment.delivery_date:
        fields.append(mrkdwn.field("Delivered", wall_clock(shipment.delivery_date)))
    if personal and shipment.signed_by:
        fields.append(mrkdwn.field("Signed by", escape(shipment.signed_by)))
    if shipment.failed_delivery_attempts and shipment.failed_delivery_attempts != "0":
        fields.append(mrkdwn.field("Failed attempts", escape(shipment.failed_delivery_attempts)))
    checkpoint = shipment.last_checkpoint
    if checkpoint is not None:
        place = ", ".join(escape(p) for p in (checkpoint.city, checkpoint.country_name) if p)
        parts = [p for p in (escape(checkpoint.message or ""), place) if p]
        if checkpoint.checkpoint_time:
            parts.append(wall_clock(checkpoint.checkpoint_time))
        if parts:
            fields.append(mrkdwn.field("Last checkpoint", "\n".join(parts)))
    return fields


def _address_lines(address: Address) -> str:
    parts = [
        address.company_name,
        address.line1,
        address.line2,
        address.line3,
        " ".join(p for p in (address.zip_code, address.city) if p),
        address.state,
        address.country_code,
    ]
    return "\n".join(escape(p) for p in parts if p)


def status_blocks(
    card_id: str,
    status: ProductionStatus,
    *,
    fetched_at: datetime,
    personal: bool,
    shared_by: str | None = None,
    buttons: bool = True,
) -> list[Block]:
    """The card's status. `personal` adds name and address (ephemeral replies only)."""
    blocks: list[Block] = [mrkdwn.header(f"Card {escape(card_id)}")]
    blocks.extend(mrkdwn.sections(_production_fields(status)))
    if status.shipment is not None:
        blocks.append(DividerBlock())
        blocks.extend(mrkdwn.sections(shipment_fields(status.shipment, personal=personal)))
    if personal and (status.name or status.delivery_address):
        private = []
        if status.name:
            private.append(mrkdwn.field("Cardholder", escape(status.name)))
        if status.delivery_address:
            lines = _address_lines(status.delivery_address)
            if lines:
                private.append(mrkdwn.field("Delivery address", lines))
        if private:
            blocks.append(DividerBlock())
            blocks.extend(mrkdwn.sections(private))
            blocks.append(
                context(
                    ":lock: Only you can see the name and address; "
                    "*Share in channel* leaves them out."
                )
            )
    footer = f"Last updated {slack_date(fetched_at)} from D1"
    if shared_by:
        footer += f" · shared by {slacktext.user(shared_by)}"
    blocks.append(context(footer))
    if buttons:
        value = actions.encode_value(actions.ActionValue(card_id=card_id))
        blocks.append(
            ActionsBlock(
                elements=[
                    button(
                        "Subscribe this channel",
                        action_id=actions.SUBSCRIBE,
                        value=value,
                        style="primary",
                    ),
                    button("Refresh", action_id=actions.REFRESH, value=value),
                    button("Share in channel", action_id=actions.SHARE, value=value),
                    button("Timeline", action_id=actions.TIMELINE, value=value),
                ]
            )
        )
    return blocks


def _status_text(card_id: str, status: ProductionStatus) -> str:
    words = PRODUCTION_STATUS_WORDS.get(status.status) or escape(status.status)
    return f"Card {escape(card_id)}: {words}"


def status_reply(card_id: str, status: ProductionStatus, *, fetched_at: datetime) -> Reply:
    """The ephemeral answer to `/card status` (personal view with buttons)."""
    text = _status_text(card_id, status)
    blocks = status_blocks(card_id, status, fetched_at=fetched_at, personal=True)
    return Reply(text=text, blocks=blocks)


def shared_status_reply(
    card_id: str, status: ProductionStatus, *, fetched_at: datetime, shared_by: str
) -> Reply:
    """The card posted to a channel: no name, no address, no signer, no buttons that act for
    someone."""
    text = _status_text(card_id, status)
    blocks = status_blocks(
        card_id, status, fetched_at=fetched_at, personal=False, shared_by=shared_by, buttons=False
    )
    return Reply(text=text, blocks=blocks)


# --------------------------------------------------------------------------- other replies


def _list_line(row: ChannelSubscriptionRow) -> str:
    state = status_words(row.status) if row.status else "no events yet"
    if row.shipment_status:
        state += f", {shipment_words(row.shipment_status)}"
    only = " (exceptions only)" if row.filter == "exceptions" else ""
    return (
        f"• *{escape(row.card_id)}*{only}: {state}\n"
        f"    followed by {slacktext.user(row.created_by)} "
        f"since {slack_date(row.created_at, with_time=False)}"
    )


def list_reply(rows: Sequence[ChannelSubscriptionRow], *, dead_letters: int = 0) -> Reply:
    """`/card list`: card, filter, created by, when, current status; dead letters if any."""
    if not rows:
        text = "This channel follows no cards. Try `/card subscribe &lt;cardId&gt;`."
        blocks: list[Block] = [section(text)]
    else:
        text = f"This channel follows {len(rows)} card{'s' if len(rows) != 1 else ''}."
        shown = [_list_line(r) for r in rows[:MAX_LIST_ROWS]]
        blocks = [section(f"*{text}*")]
        for i in range(0, len(shown), 10):
            blocks.append(section("\n".join(shown[i : i + 10])))
        if len(rows) > MAX_LIST_ROWS:
            more = len(rows) - MAX_LIST_ROWS
            blocks.append(context(f"… and {more} more."))
    if dead_letters:
        warning = (
            f":warning: {dead_letters} message{'s' if dead_letters != 1 else ''} for this "
            "channel could not be delivered (see the operator's dead letters)."
        )
        blocks.append(context(warning))
    return Reply(text=text, blocks=blocks)


def message_reply(text: str, *, emoji: str | None = None) -> Reply:
    """A one-line answer (confirmations and errors); `text` is mrkdwn the caller built, with
    outside text already escaped."""
    line = f":{emoji}: {text}" if emoji else text
    return Reply(text=line, blocks=[section(line)])


def error_reply(text: str) -> Reply:
    return message_reply(text, emoji="warning")


def help_reply() -> Reply:
    """Every subcommand with what it does and an example (bot/render/help_text.py)."""
    return Reply(text=help_text.HELP_FALLBACK, blocks=help_text.help_blocks())


def home_view(paused: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The App Home tab: what the bot does and how to use it (no card data), and the channels
    whose updates wait (`paused`: channel id and why, in words)."""
    intro = (
        "*D1 Cards* tells your team where a card is in Thales D1 production and shipping, "
        "posts each followed card's updates in one thread per card, and raises exceptions "
        "the minute D1 reports them."
    )
    top: list[Block] = [mrkdwn.header("D1 Cards"), section(intro)]
    if paused:
        lines = [f"• {slacktext.channel(c)}: {escape(why)}" for c, why in paused]
        top.append(
            section(
                ":warning: *Updates paused* (they wait, nothing is lost; invite me back or run "
                "`/card subscribe` there again):\n" + "\n".join(lines)
            )
        )
    top.append(DividerBlock())
    return slacktext.view_payload({"type": "home", "blocks": [*top, *help_reply().blocks]})
