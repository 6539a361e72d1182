"""What one operation means for its card, computed without the database: its dedup key, event
time, lifecycle rank and exception flag, its `events` row, and whether its shipment replaces the
card's snapshot. The recording (`intake.py`) applies these rules inside a transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from d1.models import Operation
from d1.semantics import (
    is_exception,
    lifecycle_rank,
    operation_dedup_key,
    operation_event_time,
    operation_json_for_storage,
)
from storage.columns import JSONText
from storage.repositories.intake_sql import CARD_COLUMNS, EVENT_COLUMNS


@dataclass
class OperationFacts:
    """What the projection needs to know about one operation, computed once."""

    op: Operation
    dedup_key: str
    event_time: datetime
    rank: int
    is_exception: bool
    status: str | None  # details.status as the column holds it
    shipment_status: str | None  # details.shipment.status as the column holds it
    # The stored operation as JSON text.
    payload_json: JSONText
    # The shipment snapshot as the card stores it (wire names), as JSON text.
    shipment_json: JSONText | None


def event_values(
    f: OperationFacts, *, received_at: datetime, becomes_current: bool, source: str
) -> dict[str, Any]:
    """The `events` row of one operation, by column name."""
    op = f.op
    ship = op.details.shipment
    row = (
        f.dedup_key,
        op.card_id,
        op.operation_id,
        op.operation,
        op.status,
        f.status,
        cut(op.details.tracking_type, 32),
        f.shipment_status,
        cut(ship.message if ship else None, 255),
        f.event_time,
        received_at,
        f.is_exception,
        becomes_current,
        source,
        f.payload_json,
    )
    return dict(zip(EVENT_COLUMNS, row, strict=True))


def cut(value: str | None, length: int) -> str | None:
    """Columns hold bounded text; the full value stays in the event's payload."""
    return value if value is None or len(value) <= length else value[:length]


def facts_of(op: Operation, extra_exception_statuses: frozenset[str]) -> OperationFacts:
    ship = op.details.shipment
    ship_status = ship.status if ship else None
    return OperationFacts(
        op=op,
        dedup_key=operation_dedup_key(op),
        event_time=operation_event_time(op),
        rank=lifecycle_rank(op.details.status, ship_status),
        is_exception=is_exception(
            op.details.status, ship_status, op.status, extra_exception_statuses
        ),
        status=cut(op.details.status, 64),
        shipment_status=cut(ship_status, 64),
        payload_json=JSONText(operation_json_for_storage(op)),
        shipment_json=None
        if ship is None
        else JSONText(ship.model_dump_json(by_alias=True, exclude_none=True)),
    )


def newer_snapshot(f: OperationFacts, card: Any) -> bool:
    """Whether the operation's shipment replaces the card's snapshot: the latest update wins,
    ties broken by content so that arrival order never matters."""
    if f.shipment_json is None:
        return False
    if card.shipment is None or card.last_shipment_update_at is None:
        return True
    if f.event_time != card.last_shipment_update_at:
        return bool(f.event_time > card.last_shipment_update_at)
    return _canonical(f.shipment_json) > _canonical(card.shipment)


def _canonical(shipment: str) -> str:
    """The snapshot's JSON with sorted keys: the same content compares the same whatever
    wrote it."""
    return json.dumps(json.loads(shipment), sort_keys=True)


def snapshot_columns(f: OperationFacts) -> dict[str, Any]:
    ship = f.op.details.shipment
    assert ship is not None
    delivered = ship.delivery_date
    if delivered is None and ship.status == "DELIVERED":
        delivered = f.event_time
    return {
        "shipment": f.shipment_json,
        "shipment_status": cut(ship.status, 64),
        "shipment_message": cut(ship.message, 255),
        "carrier": cut(ship.carrier, 64),
        "tracking_number": cut(ship.tracking_number, 64),
        "estimated_delivery_at": ship.estimated_delivery_date,
        "delivered_at": delivered,
        "last_shipment_update_at": f.event_time,
    }


def fresh_card(new_card: dict[str, Any]) -> SimpleNamespace:
    """A card row just inserted, as `_lock_cards` would read it: no event yet."""
    columns = dict.fromkeys(CARD_COLUMNS) | new_card
    return SimpleNamespace(
        **columns,
        current_dedup_key=None,
        current_status=None,
        current_shipment_status=None,
        tied=False,
        followers_all=None,  # not read: asked for when its events are fanned out
        followers_exceptions=None,
        since_known=True,
    )


def new_card_row(f: OperationFacts, received_at: datetime) -> dict[str, Any]:
    return {
        "card_id": f.op.card_id,
        "issuer_id": cut(f.op.issuer_id, 64),
        "state_rank": 0,
        "is_exception": False,
        "first_seen_at": received_at,
        "last_seen_at": received_at,
    }


def project_onto(
    card: SimpleNamespace, f: OperationFacts, received_at: datetime, becomes_current: bool
) -> None:
    """Apply one new event to the card's state in memory (the rules of the module docstring)."""
    op = f.op
    card.last_seen_at = received_at
    if becomes_current:
        # When the state was entered, without asking the history where the answer is sure:
        # a newer event in another state entered it now; a newer event in the same state, with
        # no other event at the current one's time, leaves it as it was. Anything else (a tie,
        # a late event, below) asks the history once the batch is projected.
        newer = card.state_event_time is None or card.state_event_time < f.event_time
        same = (card.current_status, card.current_shipment_status) == (f.status, f.shipment_status)
        if card.state_event_time is None or (newer and not same):
            card.state_since, card.since_known = f.event_time, True
        elif not (newer and same and not card.tied and card.state_since is not None):
            card.since_known = False
        card.tied = not newer
        card.status = f.status
        card.operation = op.operation
        card.operation_status = op.status
        card.production_site = cut(op.details.production_site, 64) or card.production_site
        card.reason = cut(op.details.reason, 255)
        card.state_rank = f.rank
        card.state_event_time = f.event_time
        card.is_exception = f.is_exception
        card.current_dedup_key = f.dedup_key
        card.current_status = f.status
        card.current_shipment_status = f.shipment_status
        if op.issuer_id and not card.issuer_id:
            card.issuer_id = cut(op.issuer_id, 64)
    else:
        card.since_known = False
    request_id = op.details.issuer_request_id or op.issuer_request_id
    if request_id and (becomes_current or not card.issuer_request_id):
        card.issuer_request_id = cut(request_id, 64)
    if newer_snapshot(f, card):
        for name, value in snapshot_columns(f).items():
            setattr(card, name, value)


def card_columns(card: SimpleNamespace) -> dict[str, Any]:
    """The card's stored columns (the state read with it, minus what the join added)."""
    return {name: getattr(card, name) for name in CARD_COLUMNS if name != "card_id"}


__all__ = [
    "OperationFacts",
    "card_columns",
    "cut",
    "event_values",
    "facts_of",
    "fresh_card",
    "new_card_row",
    "newer_snapshot",
    "project_onto",
    "snapshot_columns",
]
