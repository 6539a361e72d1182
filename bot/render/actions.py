"""Routing data of interactive buttons: action ids, and the encode/decode pair for values.

One place so that the messages that carry buttons (bot/render/views.py,
bot/render/messages.py) and the listeners that handle them (bot/slack/listeners/) cannot drift
apart.
"""

from __future__ import annotations

from dataclasses import dataclass

# Buttons of the `/card status` view.
SUBSCRIBE = "card_subscribe"
REFRESH = "card_refresh"
SHARE = "card_share"
# Buttons of `/card find` results.
STATUS = "card_status"
# The card's story: the Timeline button of card views, and the pages of its modal (the value's
# number is the page).
TIMELINE = "card_timeline"
TIMELINE_PAGE = "timeline_page"
# Buttons of an exception alert (and of `/card exceptions`). ALERT_ACK is today's "Assign to
# me" pressed on an alert posted before owners existed.
ALERT_ACK = "alert_ack"
ALERT_ASSIGN = "alert_assign"
ALERT_RESOLVE = "alert_resolve"
ALERT_REOPEN = "alert_reopen"
ALERT_REFRESH = "alert_refresh"
ALERT_RETRACK = "alert_retrack"
# Links (Slack still sends an action when a URL button is clicked: acknowledge and ignore).
OPEN_TRACKING = "open_tracking"

ALL_ACTIONS = (
    SUBSCRIBE,
    REFRESH,
    SHARE,
    STATUS,
    TIMELINE,
    TIMELINE_PAGE,
    ALERT_ACK,
    ALERT_ASSIGN,
    ALERT_RESOLVE,
    ALERT_REOPEN,
    ALERT_REFRESH,
    ALERT_RETRACK,
    OPEN_TRACKING,
)


@dataclass(frozen=True)
class ActionValue:
    """What a button refers to: a card, and for alerts the event that raised it."""

    card_id: str
    event_id: int | None = None


def encode_value(value: ActionValue) -> str:
    return value.card_id if value.event_id is None else f"{value.card_id}|{value.event_id}"


def decode_value(raw: str) -> ActionValue:
    """Inverse of `encode_value`; raises ValueError on anything else."""
    card_id, _, event = raw.partition("|")
    if not card_id:
        raise ValueError("empty action value")
    return ActionValue(card_id=card_id, event_id=int(event) if event else None)
