"""Stuck-card rules, pure: which stage a card may sit in for how long, and the words for it.

A rule measures from a clock (when the card entered its status, its last shipment update, or
the carrier's estimated delivery date) and has a threshold from the settings. The database
applies them in SQL (`storage/repositories/stuck.py`); `matching_rule` applies them to one card
in Python, for tests and for explaining a single card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.render.slacktext import context, escape, message_payload, section
from bot.settings import Settings
from d1.models import PRODUCTION_STATUS_WORDS, SHIPMENT_STATUS_WORDS, SHIPMENT_STATUSES
from d1.semantics import FINAL_SHIPMENT_STATUSES, FINAL_STATUSES
from storage.repositories.stuck import (
    CLOCK_ETA,
    CLOCK_SHIPMENT,
    CLOCK_STATE,
    StuckCard,
    StuckCriterion,
)

# Shipment statuses of a card still on its way (everything but DELIVERED).
UNDELIVERED_SHIPMENT_STATUSES: tuple[str, ...] = tuple(
    status for status in SHIPMENT_STATUSES if status not in FINAL_SHIPMENT_STATUSES
)
SHIPPED_STATUSES: tuple[str, ...] = ("CARD_SHIPPED",)


@dataclass(frozen=True)
class StuckRule:
    """A card in `statuses` (or `shipment_statuses`) for longer than `threshold` is stuck."""

    name: str
    title: str  # what it means, for people: "waiting for production"
    threshold: timedelta
    clock: str
    priority: int
    statuses: tuple[str, ...] = ()
    shipment_statuses: tuple[str, ...] = ()
    # Also cards in `statuses` with no shipment status at all (shipped, carrier silent).
    with_no_shipment: bool = False


def default_rules(settings: Settings) -> list[StuckRule]:
    """The rules with the thresholds from the settings (defaults from issue 5)."""
    hours = timedelta(hours=1)
    return [
        StuckRule(
            name="overdue",
            title="past its estimated delivery date",
            threshold=settings.d1bot_stuck_overdue_hours * hours,
            clock=CLOCK_ETA,
            priority=1,
            shipment_statuses=UNDELIVERED_SHIPMENT_STATUSES,
        ),
        StuckRule(
            name="shipment_quiet",
            title="shipped, no carrier update",
            threshold=settings.d1bot_stuck_shipment_quiet_hours * hours,
            clock=CLOCK_SHIPMENT,
            priority=2,
            statuses=SHIPPED_STATUSES,
            shipment_statuses=UNDELIVERED_SHIPMENT_STATUSES,
            with_no_shipment=True,
        ),
        StuckRule(
            name="on_hold",
            title="on hold",
            threshold=settings.d1bot_stuck_onhold_hours * hours,
            clock=CLOCK_STATE,
            priority=3,
            statuses=("CARD_PROD_ONHOLD",),
        ),
        StuckRule(
            name="production_slow",
            title="in production",
            threshold=settings.d1bot_stuck_production_hours * hours,
            clock=CLOCK_STATE,
            priority=4,
            statuses=("CARD_PROD_READY", "CARD_PROD_ONGOING"),
        ),
        StuckRule(
            name="not_started",
            title="waiting for production",
            threshold=settings.d1bot_stuck_requested_hours * hours,
            clock=CLOCK_STATE,
            priority=5,
            statuses=("CARD_PROD_REQUESTED", "DATA_PREPARED"),
        ),
    ]


def criteria(rules: list[StuckRule], now: datetime) -> list[StuckCriterion]:
    """The rules as the database applies them at `now`."""
    found: list[StuckCriterion] = []
    for rule in rules:
        before = now - rule.threshold
        if rule.shipment_statuses:
            # Shipment rules select on the shipment status (indexed, and few cards are
            # undelivered), not on the status most cards are in.
            found.append(
                StuckCriterion(
                    rule=rule.name,
                    priority=rule.priority,
                    clock=rule.clock,
                    before=before,
                    shipment_statuses=rule.shipment_statuses,
                )
            )
            if rule.with_no_shipment:
                found.append(
                    StuckCriterion(
                        rule=rule.name,
                        priority=rule.priority,
                        clock=rule.clock,
                        before=before,
                        statuses=rule.statuses,
                        no_shipment=True,
                    )
                )
        else:
            found.append(
                StuckCriterion(
                    rule=rule.name,
                    priority=rule.priority,
                    clock=rule.clock,
                    before=before,
                    statuses=rule.statuses,
                )
            )
    return found


class CardState(Protocol):
    """What the rules look at (a `CardRecord` has all of it)."""

    status: str | None
    shipment_status: str | None
    state_since: datetime | None
    state_event_time: datetime | None
    last_shipment_update_at: datetime | None
    estimated_delivery_at: datetime | None


def rule_clock(card: CardState, clock: str) -> datetime | None:
    state = card.state_since or card.state_event_time
    if clock == CLOCK_STATE:
        return state
    if clock == CLOCK_SHIPMENT:
        return card.last_shipment_update_at or state
    return card.estimated_delivery_at


def _applies(rule: StuckRule, card: CardState) -> bool:
    if rule.shipment_statuses:
        if card.shipment_status is None:
            return rule.with_no_shipment and card.status in rule.statuses
        return card.shipment_status in rule.shipment_statuses and (
            card.status not in FINAL_STATUSES
        )
    return card.status in rule.statuses


def matching_rule(card: CardState, rules: list[StuckRule], now: datetime) -> StuckRule | None:
    """The highest-priority rule `card` breaks at `now`, or None when it is moving along."""
    for rule in sorted(rules, key=lambda r: r.priority):
        since = rule_clock(card, rule.clock)
        if since is not None and _applies(rule, card) and since < now - rule.threshold:
            return rule
    return None


# --------------------------------------------------------------------------- words


def describe_duration(delta: timedelta) -> str:
    """`3 days 4 h`, `5 h`, `40 min`: how long, roughly, for people."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        unit = "day" if days == 1 else "days"
        return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"
    if hours:
        return f"{hours} h"
    return f"{mins} min"


def state_words(status: str | None, shipment_status: str | None) -> str:
    """`Shipped · In transit`: the card's state in words (mrkdwn), unknown codes shown as they
    are, escaped."""
    parts = []
    if status:
        parts.append(PRODUCTION_STATUS_WORDS.get(status) or escape(status))
    if shipment_status:
        parts.append(SHIPMENT_STATUS_WORDS.get(shipment_status) or escape(shipment_status))
    return " · ".join(parts) or "unknown state"


def rule_titles(rules: list[StuckRule]) -> dict[str, str]:
    return {rule.name: rule.title for rule in rules}


def stuck_line(card: StuckCard, titles: dict[str, str], now: datetime) -> str:
    """One mrkdwn line about a stuck card (no personal data: ids and statuses only)."""
    title = titles.get(card.rule) or escape(card.rule)
    if card.rule == "overdue" and card.since is not None:
        how_long = f"due {describe_duration(now - card.since)} ago"
    elif card.since is not None:
        how_long = f"for {describe_duration(now - card.since)}"
    else:
        how_long = ""
    state = state_words(card.status, card.shipment_status)
    return f"`{escape(card.card_id)}` {title} {how_long} ({state})"


def notice_payload(card: StuckCard, titles: dict[str, str], now: datetime) -> dict[str, Any]:
    """The `card_notice` posted in the card's thread (broadcast) when it gets stuck."""
    line = stuck_line(card, titles, now)
    label = escape(card.card_id)
    text = f"Card {label} looks stuck: {titles.get(card.rule) or escape(card.rule)}"
    blocks = [
        section(f":hourglass: *Looks stuck:* {line}"),
        context(
            "No news from D1 or the carrier for longer than expected. "
            f"`/card status {label}` asks D1 now."
        ),
    ]
    payload = message_payload(text, blocks)
    return {"text": payload["text"], "blocks": payload.get("blocks", [])}


__all__ = [
    "UNDELIVERED_SHIPMENT_STATUSES",
    "StuckRule",
    "criteria",
    "default_rules",
    "describe_duration",
    "matching_rule",
    "notice_payload",
    "rule_titles",
    "state_words",
    "stuck_line",
]
