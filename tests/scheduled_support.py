"""Helpers for the scheduled-work tests: operations built tersely, recorded through intake,
subscriptions, a runtime with a fixed clock, and outbox reads."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.runtime import Runtime
from bot.settings import load_settings
from d1.models import Operation
from storage.repositories.fanout import expand_all
from storage.repositories.intake import record_operations
from storage.tables import OutboxRecord, SubscriptionRecord

_ids = itertools.count(1)


def op(
    card_id: str,
    status: str,
    at: datetime,
    *,
    shipment_status: str | None = None,
    message: str | None = None,
    eta: datetime | None = None,
    reason: str | None = None,
    operation_status: str = "SUCCESSFUL",
) -> Operation:
    details: dict[str, Any] = {"status": status}
    if reason:
        details["reason"] = reason
    if shipment_status:
        details["shipment"] = {
            "carrier": "fedex",
            "trackingNumber": "TRK" + card_id,
            "status": shipment_status,
            "message": message,
            "lastUpdatedAt": at.isoformat(),
            "estimatedDeliveryDate": eta.isoformat() if eta else None,
        }
    return Operation.model_validate(
        {
            "operationId": f"op-{card_id}-{next(_ids)}",
            "operation": "PRODUCE",
            "status": operation_status,
            "cardId": card_id,
            "startTime": at.isoformat(),
            "endTime": at.isoformat(),
            "details": details,
        }
    )


def record(engine: Engine, operation: Operation, *, received_at: datetime | None = None) -> None:
    """Record one operation as intake would, received when it happened unless told."""
    end = operation.end_time
    assert end is not None
    record_operations(
        engine,
        [operation],
        received_at=received_at or end,
        workspace_id="T1",
        exceptions_channel=None,
    )


def subscribe(engine: Engine, card_id: str, channel_id: str, *, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(SubscriptionRecord.__table__),  # type: ignore[attr-defined]
            [
                {
                    "workspace_id": "T1",
                    "channel_id": channel_id,
                    "card_id": card_id,
                    "filter": "all",
                    "created_by": "U1",
                    "created_at": at,
                }
            ],
        )


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_runtime(engine: Engine, clock: FixedClock, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "d1bot_workspace_id": "T1",
        "d1bot_exceptions_channel": "CEXC",
        "_env_file": None,
    }
    values.update(overrides)
    return Runtime(settings=load_settings(**values), engine=engine, clock=clock)


def outbox_rows(engine: Engine, **where: Any) -> list[dict[str, Any]]:
    """The outbox once the delivery worker has expanded intake's fan-out markers."""
    expand_all(engine)
    table = OutboxRecord.__table__  # type: ignore[attr-defined]
    query = sa.select(table).order_by(table.c.id)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
