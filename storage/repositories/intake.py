"""Recording notification operations: store each distinct one as an event, project it onto its
card, and owe its notifications (one fan-out marker per new current event that someone wants,
expanded into per-subscription outbox rows by the delivery worker: `fanout.py`), all in the
caller's one transaction.

`record_operations` records one request in its own transaction; `record_requests` records
several in one (one commit, so one fsync, for all of them: intake's batches), and when that
transaction fails records each request again alone, so that a request the database refuses
fails by itself. The statements are built once per dialect (`intake_sql`) and run the same on
SQLite and PostgreSQL (`INSERT ... ON CONFLICT DO NOTHING`, `SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from d1.models import Operation
from storage.repositories.intake_sql import (
    KIND_CARD_EVENT,
    KIND_EXCEPTION_ALERT,
    statements,
)
from storage.repositories.projection import (
    OperationFacts,
    cut,
    event_values,
    facts_of,
    newer_snapshot,
    snapshot_columns,
)
from storage.tables import SOURCE_D1

# How long a PostgreSQL intake transaction waits for a row lock.
LOCK_TIMEOUT = "5s"

# Production steps that come before shipping: a shipment seen without any of them is a gap.
_SHIPPING_STATUSES = frozenset({"CARD_SHIPPED"})


@dataclass
class IntakeResult:
    """What one call recorded. `enqueued`: the outbox rows the new events owe (subscriptions
    that want them, plus exceptions-channel alerts) as counted in the intake transaction; they
    are written when the delivery worker expands the fan-out markers, so the rows that appear
    may differ if a subscription changes in between. `gap_card_ids`: cards whose earlier
    history was never seen."""

    new_event_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    enqueued: int = 0
    exception_event_ids: list[int] = field(default_factory=list)
    gap_card_ids: list[str] = field(default_factory=list)

    def merge(self, other: IntakeResult) -> None:
        self.new_event_ids += other.new_event_ids
        self.duplicates += other.duplicates
        self.enqueued += other.enqueued
        self.exception_event_ids += other.exception_event_ids
        for card_id in other.gap_card_ids:
            if card_id not in self.gap_card_ids:
                self.gap_card_ids.append(card_id)


# --------------------------------------------------------------------------- public API


def record_operations(
    engine: Engine,
    operations: Sequence[Operation],
    *,
    received_at: datetime,
    workspace_id: str,
    exceptions_channel: str | None,
    extra_exception_statuses: frozenset[str] = frozenset(),
    source: str = SOURCE_D1,
) -> IntakeResult:
    """Record `operations` in one transaction of their own; errors are SQLAlchemy's."""
    with _writing(engine) as conn:
        return record_operations_in(
            conn,
            operations,
            received_at=received_at,
            workspace_id=workspace_id,
            exceptions_channel=exceptions_channel,
            extra_exception_statuses=extra_exception_statuses,
            source=source,
        )


@dataclass(frozen=True)
class IntakeRequest:
    """One notification request's operations and when it arrived."""

    operations: Sequence[Operation]
    received_at: datetime


def record_requests(
    engine: Engine,
    requests: Sequence[IntakeRequest],
    *,
    workspace_id: str,
    exceptions_channel: str | None,
    extra_exception_statuses: frozenset[str] = frozenset(),
) -> list[IntakeResult | SQLAlchemyError]:
    """Record every request in one transaction; when it fails, each request alone (see the
    module docstring). Returns each request's result or the database error that refused it."""
    options: dict[str, Any] = {
        "workspace_id": workspace_id,
        "exceptions_channel": exceptions_channel,
        "extra_exception_statuses": extra_exception_statuses,
    }
    try:
        with _writing(engine) as conn:
            return [
                record_operations_in(conn, r.operations, received_at=r.received_at, **options)
                for r in requests
            ]
    except SQLAlchemyError as exc:
        if len(requests) == 1:
            return [exc]
    outcomes: list[IntakeResult | SQLAlchemyError] = []
    for r in requests:
        try:
            outcomes.append(
                record_operations(engine, r.operations, received_at=r.received_at, **options)
            )
        except SQLAlchemyError as exc:
            outcomes.append(exc)
    return outcomes


@contextlib.contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On PostgreSQL a lock is waited for at most `LOCK_TIMEOUT`, so that
    a stuck lock holder costs D1 a retryable 503 instead of a request that never answers."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        yield conn


def record_operations_in(
    conn: Connection,
    operations: Iterable[Operation],
    *,
    received_at: datetime,
    workspace_id: str,
    exceptions_channel: str | None,
    extra_exception_statuses: frozenset[str] = frozenset(),
    source: str = SOURCE_D1,
) -> IntakeResult:
    """Like `record_operations`, inside the caller's open transaction on `conn`."""
    result = IntakeResult()
    for op in operations:
        facts = facts_of(op, extra_exception_statuses)
        _record_one(
            conn,
            facts,
            result,
            received_at=received_at,
            workspace_id=workspace_id,
            exceptions_channel=exceptions_channel,
            source=source,
        )
    return result


# --------------------------------------------------------------------------- one operation


def _record_one(
    conn: Connection,
    f: OperationFacts,
    result: IntakeResult,
    *,
    received_at: datetime,
    workspace_id: str,
    exceptions_channel: str | None,
    source: str,
) -> None:
    sql = statements(conn.dialect.name)
    op = f.op
    card_id = op.card_id
    conn.execute(
        sql.ensure_card,
        {
            "card_id": card_id,
            "issuer_id": cut(op.issuer_id, 64),
            "state_rank": 0,
            "is_exception": False,
            "first_seen_at": received_at,
            "last_seen_at": received_at,
        },
    )
    card = conn.execute(sql.lock_card, {"card_id": card_id}).one()

    becomes_current = card.state_event_time is None or (f.event_time, f.rank, f.dedup_key) > (
        card.state_event_time,
        card.state_rank,
        card.current_dedup_key or "",
    )
    event_id = conn.execute(
        sql.insert_event,
        event_values(
            f,
            received_at=received_at,
            becomes_current=becomes_current,
            source=source,
        ),
    ).scalar_one_or_none()
    if event_id is None:
        result.duplicates += 1
        return
    result.new_event_ids.append(event_id)
    if f.is_exception:
        result.exception_event_ids.append(event_id)

    changes: dict[str, Any] = {"last_seen_at": received_at}
    if becomes_current:
        changes.update(
            status=f.status,
            operation=op.operation,
            operation_status=op.status,
            production_site=cut(op.details.production_site, 64) or card.production_site,
            reason=cut(op.details.reason, 255),
            state_rank=f.rank,
            state_event_time=f.event_time,
            last_event_id=event_id,
            is_exception=f.is_exception,
        )
        if op.issuer_id and not card.issuer_id:
            changes["issuer_id"] = cut(op.issuer_id, 64)
    if newer_snapshot(f, card):
        changes.update(snapshot_columns(f))
    if becomes_current:
        state: tuple[str | None, str | None, datetime] | None = (
            f.status,
            f.shipment_status,
            f.event_time,
        )
    else:
        row = conn.execute(sql.current_state, {"event_id": card.last_event_id}).one_or_none()
        state = None if row is None else (row[0], row[1], row[2])
    if state is not None:
        since = conn.execute(
            sql.state_since,
            {"card_id": card_id, "status": state[0], "ship_status": state[1], "at": state[2]},
        ).scalar_one_or_none()
        changes["state_since"] = since or state[2]
    conn.execute(sql.update_card, {"key_card_id": card_id, **changes})

    gap = source == SOURCE_D1 and _is_gap(conn, f, event_id)
    if gap and card_id not in result.gap_card_ids:
        result.gap_card_ids.append(card_id)
    if becomes_current:
        result.enqueued += _fan_out(
            conn,
            card_id=card_id,
            event_id=event_id,
            exception=f.is_exception,
            received_at=received_at,
            workspace_id=workspace_id,
            exceptions_channel=exceptions_channel,
        )


def _is_gap(conn: Connection, f: OperationFacts, event_id: int) -> bool:
    """A PRODUCE shipment seen as the card's first PRODUCE event: production steps are missing."""
    op = f.op
    if op.operation != "PRODUCE":
        return False
    if op.details.status not in _SHIPPING_STATUSES and op.details.shipment is None:
        return False
    earlier = conn.execute(
        statements(conn.dialect.name).earlier_produce,
        {"card_id": op.card_id, "event_id": event_id},
    ).first()
    return earlier is None


def _fan_out(
    conn: Connection,
    *,
    card_id: str,
    event_id: int,
    exception: bool,
    received_at: datetime,
    workspace_id: str,
    exceptions_channel: str | None,
) -> int:
    """Count the subscriptions that want the event and write its fan-out marker (`fanouts`),
    which the delivery worker expands into their outbox rows, plus the exceptions-channel
    alert (`storage.repositories.fanout`). Returns the number of outbox rows owed."""
    sql = statements(conn.dialect.name)
    query = sql.subscribers_exceptions if exception else sql.subscribers
    subscribed = int(conn.execute(query, {"card_id": card_id}).scalar_one())
    alert = exceptions_channel if exception and exceptions_channel else None
    if subscribed or alert:  # an event nobody wants needs no marker
        conn.execute(
            sql.fanout_marker,
            {
                "card_id": card_id,
                "event_id": event_id,
                "is_exception": exception,
                "workspace_id": workspace_id,
                "alert_channel": alert,
                "received_at": received_at,
            },
        )
    return subscribed + (1 if alert else 0)


__all__ = [
    "KIND_CARD_EVENT",
    "KIND_EXCEPTION_ALERT",
    "IntakeRequest",
    "IntakeResult",
    "record_operations",
    "record_operations_in",
    "record_requests",
]
