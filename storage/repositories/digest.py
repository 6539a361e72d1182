"""What the daily digest reports, computed in SQL (GROUP BY over indexed ranges, never a Python
loop over rows), and the outbox rows that carry it to Slack.

Windows are half-open `[start, end)` over `events.received_at` (indexed): "what we heard in the
window". Counts are distinct cards per status, so a card reported twice counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage.repositories.jobs import claim_run_in, finish_run_in
from storage.repositories.stuck import StuckCard, StuckCriterion, outbox_row, stuck_cards_in
from storage.tables import OUTBOX_DEAD, EventRecord, OutboxRecord, ThreadRecord

EVENTS = EventRecord.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxRecord.__table__  # type: ignore[attr-defined]
THREADS = ThreadRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StatusCount:
    """Distinct cards reported in a status in the window and in the window before."""

    status: str
    current: int
    previous: int

    @property
    def change(self) -> int:
        return self.current - self.previous


@dataclass(frozen=True)
class ExceptionEvent:
    """One exception event of the window (no personal data: statuses and carrier text)."""

    event_id: int
    card_id: str
    status: str | None
    shipment_status: str | None
    shipment_message: str | None
    operation_status: str | None
    reason: str | None
    received_at: datetime
    thread_channel_id: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True)
class DigestData:
    """Everything a digest shows; rendering is `bot/scheduled/digest.py`'s business."""

    window_start: datetime
    window_end: datetime
    previous_start: datetime
    production: list[StatusCount] = field(default_factory=list)
    shipment: list[StatusCount] = field(default_factory=list)
    exceptions_total: int = 0
    exceptions: list[ExceptionEvent] = field(default_factory=list)
    top_reasons: list[ReasonCount] = field(default_factory=list)
    stuck_total: int = 0
    stuck: list[StuckCard] = field(default_factory=list)
    dead_letters: int = 0

    @property
    def delivered(self) -> StatusCount:
        for count in self.shipment:
            if count.status == "DELIVERED":
                return count
        return StatusCount("DELIVERED", 0, 0)


def _status_counts(
    conn: Connection, *, previous_start: datetime, start: datetime, end: datetime
) -> tuple[list[StatusCount], list[StatusCount]]:
    """(production counts, shipment counts): one range scan of the events of both days,
    materialised once, then grouped by each status."""
    window = (
        sa.select(
            EVENTS.c.card_id,
            EVENTS.c.details_status,
            EVENTS.c.shipment_status,
            sa.case((EVENTS.c.received_at >= start, 1), else_=0).label("cur"),
        )
        .where(EVENTS.c.received_at >= previous_start, EVENTS.c.received_at < end)
        .cte("day_events")
        .prefix_with("MATERIALIZED")
    )

    def grouped(kind: str, column: Any) -> Any:
        return (
            sa.select(
                sa.literal(kind).label("kind"),
                column.label("status"),
                sa.func.count(sa.distinct(sa.case((window.c.cur == 1, window.c.card_id)))),
                sa.func.count(sa.distinct(sa.case((window.c.cur == 0, window.c.card_id)))),
            )
            .where(column.is_not(None))
            .group_by(column)
        )

    rows = conn.execute(
        sa.union_all(
            grouped("production", window.c.details_status),
            grouped("shipment", window.c.shipment_status),
        )
    ).all()
    production = [StatusCount(r[1], int(r[2]), int(r[3])) for r in rows if r[0] == "production"]
    shipment = [StatusCount(r[1], int(r[2]), int(r[3])) for r in rows if r[0] == "shipment"]
    return production, shipment


def _reason_expr() -> Any:
    """Why an exception happened, in the most specific words we have."""
    return sa.func.coalesce(
        EVENTS.c.shipment_message,
        EVENTS.c.payload[("details", "reason")].as_string(),
        EVENTS.c.payload[("errorCode",)].as_string(),
        EVENTS.c.shipment_status,
        EVENTS.c.details_status,
        EVENTS.c.operation_status,
    )


def _exceptions(
    conn: Connection, *, start: datetime, end: datetime, limit: int, channel_id: str | None
) -> tuple[int, list[ExceptionEvent], list[ReasonCount]]:
    in_window = (
        EVENTS.c.is_exception.is_(True),
        EVENTS.c.received_at >= start,
        EVENTS.c.received_at < end,
    )
    total = conn.execute(sa.select(sa.func.count()).where(*in_window)).scalar_one()
    if not total:
        return 0, [], []
    reason = _reason_expr().label("reason")
    rows = conn.execute(
        sa.select(
            EVENTS.c.id,
            EVENTS.c.card_id,
            EVENTS.c.details_status,
            EVENTS.c.shipment_status,
            EVENTS.c.shipment_message,
            EVENTS.c.operation_status,
            reason,
            EVENTS.c.received_at,
        )
        .where(*in_window)
        .order_by(EVENTS.c.received_at.desc(), EVENTS.c.id.desc())
        .limit(limit)
    ).all()
    threads = _threads(conn, {r.card_id for r in rows}, channel_id=channel_id)
    events = [
        ExceptionEvent(
            event_id=r.id,
            card_id=r.card_id,
            status=r.details_status,
            shipment_status=r.shipment_status,
            shipment_message=r.shipment_message,
            operation_status=r.operation_status,
            reason=r.reason,
            received_at=r.received_at,
            thread_channel_id=threads.get(r.card_id, (None, None))[0],
            thread_ts=threads.get(r.card_id, (None, None))[1],
        )
        for r in rows
    ]
    group_reason = _reason_expr()
    reasons = conn.execute(
        sa.select(group_reason.label("reason"), sa.func.count().label("n"))
        .where(*in_window)
        .group_by(group_reason)
        .order_by(sa.desc("n"), sa.asc("reason"))
        .limit(5)
    ).all()
    return (
        int(total),
        events,
        [ReasonCount(reason=r.reason or "unknown", count=int(r.n)) for r in reasons],
    )


def _threads(
    conn: Connection, card_ids: set[str], *, channel_id: str | None
) -> dict[str, tuple[str, str]]:
    """Each card's thread: in `channel_id` when it has one there, else its oldest one."""
    if not card_ids:
        return {}
    rows = conn.execute(
        sa.select(THREADS.c.card_id, THREADS.c.channel_id, THREADS.c.parent_ts)
        .where(THREADS.c.card_id.in_(sorted(card_ids)))
        .order_by(THREADS.c.id)
    ).all()
    found: dict[str, tuple[str, str]] = {}
    for row in rows:
        if row.card_id not in found or row.channel_id == channel_id:
            found[row.card_id] = (row.channel_id, row.parent_ts)
    return found


def digest_data(
    engine: Engine,
    *,
    previous_start: datetime,
    window_start: datetime,
    window_end: datetime,
    stuck_criteria: Sequence[StuckCriterion],
    channel_id: str | None = None,
    exceptions_limit: int = 20,
    stuck_limit: int = 30,
) -> DigestData:
    """The digest's numbers for `[window_start, window_end)` against
    `[previous_start, window_start)`, read in one transaction so they agree with each other."""
    window = {"previous_start": previous_start, "start": window_start, "end": window_end}
    with engine.connect() as conn, conn.begin():
        production, shipment = _status_counts(conn, **window)
        total, exceptions, reasons = _exceptions(
            conn,
            start=window_start,
            end=window_end,
            limit=exceptions_limit,
            channel_id=channel_id,
        )
        stuck_total, stuck = stuck_cards_in(conn, stuck_criteria, limit=stuck_limit)
        dead = conn.execute(
            sa.select(sa.func.count()).where(OUTBOX.c.state == OUTBOX_DEAD)
        ).scalar_one()
    return DigestData(
        window_start=window_start,
        window_end=window_end,
        previous_start=previous_start,
        production=production,
        shipment=shipment,
        exceptions_total=total,
        exceptions=exceptions,
        top_reasons=reasons,
        stuck_total=stuck_total,
        stuck=stuck,
        dead_letters=int(dead),
    )


def enqueue_scheduled_digest(
    engine: Engine,
    *,
    job_name: str,
    scheduled_for: datetime,
    instance: str,
    workspace_id: str,
    channel_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Claim the run and queue its digest in ONE transaction: exactly one replica does both.
    False when the run was already claimed (nothing is queued)."""
    with engine.begin() as conn:
        if not claim_run_in(
            conn, job_name=job_name, scheduled_for=scheduled_for, instance=instance, now=now
        ):
            return False
        conn.execute(
            sa.insert(OUTBOX),
            [
                outbox_row(
                    now=now,
                    workspace_id=workspace_id,
                    channel_id=channel_id,
                    kind="message",
                    payload=payload,
                )
            ],
        )
        finish_run_in(conn, job_name=job_name, scheduled_for=scheduled_for, outcome="ok", now=now)
    return True


__all__ = [
    "DigestData",
    "ExceptionEvent",
    "ReasonCount",
    "StatusCount",
    "digest_data",
    "enqueue_scheduled_digest",
]
