"""What one operation means for its card, computed without the database: its dedup key, event
time, lifecycle rank and exception flag, its `events` row, and whether its shipment replaces the
card's snapshot. The recording (`intake.py`) applies these rules inside a transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from d1.models import Operation
from d1.semantics import (
    is_exception,
    lifecycle_rank,
    operation_dedup_key,
    operation_event_time,
    operation_json_for_storage,
)
from storage.repositories.intake_sql import EVENT_COLUMNS


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
    payload_json: str
    # The shipment snapshot as the card stores it (wire names), as JSON text.
    shipment_json: str | None

    @cached_property
    def shipment(self) -> dict[str, Any] | None:
        """`shipment_json` as a dict."""
        return None if self.shipment_json is None else json.loads(self.shipment_json)


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
        json.loads(f.payload_json),
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
        payload_json=operation_json_for_storage(op),
        shipment_json=None
        if ship is None
        else ship.model_dump_json(by_alias=True, exclude_none=True),
    )


def newer_snapshot(f: OperationFacts, card: Any) -> bool:
    """Whether the operation's shipment replaces the card's snapshot: the latest update wins,
    ties broken by content so that arrival order never matters."""
    if f.shipment is None:
        return False
    if card.shipment is None or card.last_shipment_update_at is None:
        return True
    if f.event_time != card.last_shipment_update_at:
        return bool(f.event_time > card.last_shipment_update_at)
    return json.dumps(f.shipment, sort_keys=True) > json.dumps(card.shipment, sort_keys=True)


def snapshot_columns(f: OperationFacts) -> dict[str, Any]:
    ship = f.op.details.shipment
    assert ship is not None
    delivered = ship.delivery_date
    if delivered is None and ship.status == "DELIVERED":
        delivered = f.event_time
    return {
        "shipment": f.shipment,
        "shipment_status": cut(ship.status, 64),
        "shipment_message": cut(ship.message, 255),
        "carrier": cut(ship.carrier, 64),
        "tracking_number": cut(ship.tracking_number, 64),
        "estimated_delivery_at": ship.estimated_delivery_date,
        "delivered_at": delivered,
        "last_shipment_update_at": f.event_time,
    }


__all__ = [
    "OperationFacts",
    "cut",
    "event_values",
    "facts_of",
    "newer_snapshot",
    "snapshot_columns",
]
