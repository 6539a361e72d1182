"""Recording notification operations: store each distinct one as an event, project it onto its
card, and owe its notifications (one fan-out marker per new current event that someone wants,
expanded into per-subscription outbox rows by the delivery worker: `fanout.py`), all in the
caller's one transaction.

`record_operations` records one request in its own transaction; `record_requests` records
several in one (one commit, so one fsync, for all of them: intake's batches). When that
transaction fails for something a request carried, each request is recorded again alone, so that
a request the database refuses fails by itself; a busy or unreachable database fails them all at
once (D1 retries them). `record_batch` is the one projection path: every operation is projected
in arrival order as if recorded alone, with the statements shared by the batch. The statements
are built once per dialect (`intake_sql`) and run the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from d1.models import Operation
from storage.columns import JSONText
from storage.repositories.intake_sql import (
    KIND_CARD_EVENT,
    KIND_EXCEPTION_ALERT,
    statements,
)
from storage.repositories.projection import (
    OperationFacts,
    card_columns,
    event_values,
    facts_of,
    fresh_card,
    new_card_row,
    project_onto,
)
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS, SOURCE_D1

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
    quarantined: Sequence[QuarantinedOperation] = (),
) -> IntakeResult:
    """Record `operations` (and those refused) in one transaction of their own; errors are
    SQLAlchemy's."""
    with _writing(engine) as conn:
        (result,) = record_batch(
            conn,
            [IntakeRequest(operations, received_at, quarantined)],
            workspace_id=workspace_id,
            exceptions_channel=exceptions_channel,
            extra_exception_statuses=extra_exception_statuses,
            source=source,
        )
        return result


@dataclass(frozen=True)
class QuarantinedOperation:
    """An operation of a request that could not be accepted (`d1.notifications` judged it): kept
    with the reason, in the same transaction as the request's valid operations."""

    index: int
    operation_id: str | None
    field: str
    error_code: str
    payload: Any  # made storable, PANs masked


@dataclass(frozen=True)
class IntakeRequest:
    """One notification request's operations, those refused, and when it arrived."""

    operations: Sequence[Operation]
    received_at: datetime
    quarantined: Sequence[QuarantinedOperation] = ()


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
            return list(record_batch(conn, requests, **options))
    except OperationalError as exc:  # busy, locked, unreachable: alone, each would wait again
        return [exc] * len(requests)
    except SQLAlchemyError as exc:
        if len(requests) == 1:
            return [exc]
    outcomes: list[IntakeResult | SQLAlchemyError] = []
    for r in requests:
        try:
            outcomes.append(
                record_operations(
                    engine,
                    r.operations,
                    received_at=r.received_at,
                    quarantined=r.quarantined,
                    **options,
                )
            )
        except OperationalError as exc:  # busy now: the rest would wait for it again
            return outcomes + [exc] * (len(requests) - len(outcomes))
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


# --------------------------------------------------------------------------- one batch


@dataclass
class _Pending:
    """A new event of the batch, until the database has given it an id."""

    request: int
    facts: OperationFacts
    received_at: datetime
    becomes_current: bool
    event_id: int = 0


def record_batch(
    conn: Connection,
    requests: Sequence[IntakeRequest],
    *,
    workspace_id: str,
    exceptions_channel: str | None,
    extra_exception_statuses: frozenset[str] = frozenset(),
    source: str = SOURCE_D1,
) -> list[IntakeResult]:
    """Record `requests` in the open transaction, one result per request. The operations are
    projected one by one in arrival order, as if recorded alone, onto the batch's cards read
    (and locked) once; the statements run once per batch with every card or event in them."""
    sql = statements(conn.dialect.name)
    results = [IntakeResult() for _ in requests]
    quarantined = [
        {
            "received_at": r.received_at,
            "operation_index": q.index,
            "operation_id": q.operation_id,
            "field": q.field[:255],
            "error_code": q.error_code,
            "payload": q.payload,
        }
        for r in requests
        for q in r.quarantined
    ]
    if quarantined:
        conn.execute(sql.quarantine, quarantined)
    batch = [
        (i, facts_of(op, extra_exception_statuses), r.received_at)
        for i, r in enumerate(requests)
        for op in r.operations
    ]
    if not batch:
        return results
    first: dict[str, tuple[OperationFacts, datetime]] = {}
    for _, f, received_at in batch:
        first.setdefault(f.op.card_id, (f, received_at))
    cards = _lock_cards(conn, sorted(first))
    missing = sorted(set(first) - set(cards))
    if missing:
        new_cards = [new_card_row(*first[card_id]) for card_id in missing]
        conn.execute(sql.ensure_cards, new_cards)
        if conn.dialect.name == "sqlite":  # the write lock is ours: every row is as inserted
            cards.update((c["card_id"], fresh_card(c)) for c in new_cards)
        else:  # another writer may have inserted one first: read what is there, locked
            cards.update(_lock_cards(conn, missing))
    known = set(
        conn.execute(sql.known_keys, {"keys": sorted({f.dedup_key for _, f, _ in batch})}).scalars()
    )
    pending: list[_Pending] = []
    for i, f, received_at in batch:
        if f.dedup_key in known:
            results[i].duplicates += 1
            continue
        known.add(f.dedup_key)
        card = cards[f.op.card_id]
        becomes_current = card.state_event_time is None or (f.event_time, f.rank, f.dedup_key) > (
            card.state_event_time,
            card.state_rank,
            card.current_dedup_key or "",
        )
        pending.append(_Pending(i, f, received_at, becomes_current))
        project_onto(card, f, received_at, becomes_current)
    if not pending:
        return results
    values = [
        event_values(p.facts, received_at=p.received_at, becomes_current=p.becomes_current,
                     source=source)
        for p in pending
    ]  # fmt: skip
    event_ids = dict(conn.execute(sql.insert_events, values).tuples().all())
    for p in pending:
        p.event_id = event_id = event_ids[p.facts.dedup_key]
        results[p.request].new_event_ids.append(event_id)
        if p.facts.is_exception:
            results[p.request].exception_event_ids.append(event_id)
        if p.becomes_current:
            cards[p.facts.op.card_id].last_event_id = event_id
        gap = source == SOURCE_D1 and _is_gap(conn, p.facts, event_id)
        if gap and p.facts.op.card_id not in results[p.request].gap_card_ids:
            results[p.request].gap_card_ids.append(p.facts.op.card_id)
    touched = {p.facts.op.card_id: cards[p.facts.op.card_id] for p in pending}
    for card in touched.values():
        if not card.since_known:
            card.state_since = _state_since(conn, card)
    conn.execute(
        sql.update_cards,
        [
            {"key_card_id": card_id, **card_columns(card)}
            for card_id, card in sorted(touched.items())
        ],
    )
    _fan_out(
        conn,
        [p for p in pending if p.becomes_current],
        results,
        cards,
        workspace_id=workspace_id,
        exceptions_channel=exceptions_channel,
    )
    return results


def _lock_cards(conn: Connection, card_ids: list[str]) -> dict[str, SimpleNamespace]:
    """The cards' rows with their current event's state, locked for the transaction (on
    SQLite, the transaction's write lock covers them already)."""
    sql = statements(conn.dialect.name)
    if conn.dialect.name != "sqlite":
        conn.execute(sql.lock_cards, {"card_ids": card_ids}).all()
    cards = {}
    for row in conn.execute(sql.read_cards, {"card_ids": card_ids}):
        card = cards[row.card_id] = SimpleNamespace(**row._mapping, since_known=True)
        if card.shipment is not None:  # JSON text, written back as it is ('null': none)
            card.shipment = None if card.shipment == "null" else JSONText(card.shipment)
    return cards


def _state_since(conn: Connection, card: SimpleNamespace) -> datetime | None:
    if card.state_event_time is None:
        return card.state_since
    since = conn.execute(
        statements(conn.dialect.name).state_since,
        {
            "card_id": card.card_id,
            "status": card.current_status,
            "ship_status": card.current_shipment_status,
            "at": card.state_event_time,
        },
    ).scalar_one_or_none()
    return since or card.state_event_time


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
    current: list[_Pending],
    results: list[IntakeResult],
    cards: dict[str, SimpleNamespace],
    *,
    workspace_id: str,
    exceptions_channel: str | None,
) -> None:
    """For each event that became its card's current state: count the subscriptions that want
    it (read with the card, or now for a card new to the batch) and write its fan-out marker
    (`fanouts`), which the delivery worker expands into their outbox rows, plus the
    exceptions-channel alert (`storage.repositories.fanout`)."""
    if not current:
        return
    sql = statements(conn.dialect.name)
    counts: dict[tuple[str, str], int] = {}
    unread = []
    for card_id in sorted({p.facts.op.card_id for p in current}):
        card = cards[card_id]
        if card.followers_all is None:
            unread.append(card_id)
        else:
            counts[(card_id, FILTER_ALL)] = card.followers_all
            counts[(card_id, FILTER_EXCEPTIONS)] = card.followers_exceptions
    if unread:
        for card_id, filter_, count in conn.execute(sql.subscriber_counts, {"card_ids": unread}):
            counts[(card_id, filter_)] = int(count)
    markers = []
    for p in current:
        card_id, exception = p.facts.op.card_id, p.facts.is_exception
        subscribed = counts.get((card_id, FILTER_ALL), 0)
        if exception:
            subscribed += counts.get((card_id, FILTER_EXCEPTIONS), 0)
        alert = exceptions_channel if exception and exceptions_channel else None
        results[p.request].enqueued += subscribed + (1 if alert else 0)
        if subscribed or alert:  # an event nobody wants needs no marker
            markers.append(
                {
                    "card_id": card_id,
                    "event_id": p.event_id,
                    "is_exception": exception,
                    "workspace_id": workspace_id,
                    "alert_channel": alert,
                    "received_at": p.received_at,
                }
            )
    if markers:
        conn.execute(sql.fanout_markers, markers)


__all__ = [
    "KIND_CARD_EVENT",
    "KIND_EXCEPTION_ALERT",
    "IntakeRequest",
    "IntakeResult",
    "QuarantinedOperation",
    "record_batch",
    "record_operations",
    "record_requests",
]
