"""The outbox: messages waiting for Slack, enqueued here and read back for monitoring.

Card events arrive as fan-out markers written by intake; the worker expands them into rows here
before it claims (`storage.repositories.fanout`). Claiming and settling rows is
`storage.repositories.claims`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from storage.repositories.fanout import expand_in
from storage.repositories.intake_sql import KIND_ALERT_UPDATE
from storage.tables import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    CardRecord,
    FanoutRecord,
    OutboxRecord,
    SubscriptionRecord,
)

outbox = OutboxRecord.__table__  # type: ignore[attr-defined]
cards = CardRecord.__table__  # type: ignore[attr-defined]
fanouts = FanoutRecord.__table__  # type: ignore[attr-defined]
subscriptions = SubscriptionRecord.__table__  # type: ignore[attr-defined]

KIND_CARD_EVENT = "card_event"
KIND_EXCEPTION_ALERT = "exception_alert"
KIND_CARD_NOTICE = "card_notice"
KIND_MESSAGE = "message"
KIND_DIRECT_MESSAGE = "direct_message"  # payload {"user", "text", "blocks"}: opens a DM first
KIND_CARD_BURST = "card_burst"  # payload {"card_ids": [...]}: one summary of many cards
COALESCED = "coalesced"  # last_error of card_event rows folded into a burst summary


def _lease_free(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)


def _reading(conn: Connection) -> Connection:
    return conn.execution_options(sqlite_begin="DEFERRED")


# --------------------------------------------------------------------------- enqueue


def enqueue_message(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    kind: str,
    payload: dict[str, Any] | None,
    now: datetime,
    card_id: str | None = None,
    event_id: int | None = None,
    subscription_id: int | None = None,
    thread_key: str | None = None,
) -> int:
    """Add one message to the outbox; returns its id."""
    with engine.begin() as conn:
        return _insert_row(
            conn,
            workspace_id=workspace_id,
            channel_id=channel_id,
            kind=kind,
            payload=payload,
            now=now,
            card_id=card_id,
            event_id=event_id,
            subscription_id=subscription_id,
            thread_key=thread_key,
        )


def enqueue_once(
    engine: Engine,
    *,
    once_key: str,
    workspace_id: str,
    channel_id: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> int | None:
    """Add a message unless one with the same `once_key` (kept in `thread_key`) was ever
    enqueued: for notices that must reach someone once. Returns the new id, or None."""
    with engine.begin() as conn:
        seen = conn.execute(
            sa.select(outbox.c.id).where(outbox.c.thread_key == once_key).limit(1)
        ).first()
        if seen is not None:
            return None
        return _insert_row(
            conn,
            workspace_id=workspace_id,
            channel_id=channel_id,
            kind=kind,
            payload=payload,
            now=now,
            thread_key=once_key,
        )


def enqueue_in(conn: Connection, *, now: datetime, **values: Any) -> int:
    """`enqueue_message` inside the caller's write transaction (a change and the messages
    that announce it commit together)."""
    return _insert_row(conn, now=now, **values)


def _insert_row(conn: Connection, *, now: datetime, **values: Any) -> int:
    # Owed card events first: a row enqueued after an event must not overtake its messages.
    expand_in(conn, limit=None, wait=True)
    return conn.execute(
        sa.insert(outbox)
        .values(state=OUTBOX_PENDING, attempts=0, next_attempt_at=now, created_at=now, **values)
        .returning(outbox.c.id)
    ).scalar_one()


# --------------------------------------------------------------------------- reads


def rows_of_channel(engine: Engine, *, channel_id: str) -> list[OutboxRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(OutboxRecord)
                .where(OutboxRecord.channel_id == channel_id)
                .order_by(col(OutboxRecord.id))
            )
        )


def pending_count(engine: Engine, *, channel_id: str | None = None) -> int:
    """Pending rows, counting each fan-out marker not yet expanded as one more (for a channel:
    the markers of cards it follows), so that zero means nothing is on its way."""
    query = sa.select(sa.func.count()).where(outbox.c.state == OUTBOX_PENDING)
    markers = sa.select(sa.func.count()).select_from(fanouts)
    if channel_id is not None:
        query = query.where(outbox.c.channel_id == channel_id)
        markers = markers.where(
            sa.exists().where(
                subscriptions.c.card_id == fanouts.c.card_id,
                subscriptions.c.channel_id == channel_id,
            )
            | (fanouts.c.alert_channel == channel_id)
        )
    # ONE statement, so one snapshot: read separately, an expansion committing in between
    # (markers gone, their rows not yet seen) would make the total look like zero.
    both = sa.select(query.scalar_subquery() + markers.scalar_subquery())
    with engine.connect() as conn:
        return int(_reading(conn).execute(both).scalar_one())


def count_dead_letters(engine: Engine, *, channel_id: str | None = None) -> int:
    query = sa.select(sa.func.count()).where(outbox.c.state == OUTBOX_DEAD)
    if channel_id is not None:
        query = query.where(outbox.c.channel_id == channel_id)
    with engine.connect() as conn:
        return int(_reading(conn).execute(query).scalar_one())


def dead_letters(
    engine: Engine, *, limit: int = 50, channel_id: str | None = None
) -> list[OutboxRecord]:
    """The most recent dead letters first."""
    query = select(OutboxRecord).where(OutboxRecord.state == OUTBOX_DEAD)
    if channel_id is not None:
        query = query.where(OutboxRecord.channel_id == channel_id)
    with Session(engine) as session:
        return list(session.exec(query.order_by(col(OutboxRecord.id).desc()).limit(limit)))


def next_due_at(engine: Engine) -> datetime | None:
    """When the earliest pending row becomes due (None when nothing is pending); a fan-out
    marker not yet expanded is due at once."""
    query = sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.state == OUTBOX_PENDING)
    marker = sa.select(sa.func.min(fanouts.c.received_at))
    with engine.connect() as conn:
        reading = _reading(conn)
        value = reading.execute(query).scalar_one_or_none()
        owed = reading.execute(marker).scalar_one_or_none()
    due = [
        outbox.c.next_attempt_at.type.process_result_value(v, engine.dialect)
        for v in (value, owed)
        if v is not None
    ]
    return min(due) if due else None


def has_pending_card_event(
    engine: Engine, *, card_id: str, before_id: int, workspace_id: str
) -> bool:
    """Whether an older card event of this card is still on its way to some channel (the
    exception alert waits for it, to link to the thread it creates)."""
    query = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.card_id == card_id,
            outbox.c.workspace_id == workspace_id,
            outbox.c.kind == KIND_CARD_EVENT,
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.id < before_id,
        )
        .limit(1)
    )
    with engine.connect() as conn:
        return _reading(conn).execute(query).first() is not None


__all__ = [
    "COALESCED",
    "KIND_ALERT_UPDATE",
    "KIND_CARD_BURST",
    "KIND_CARD_EVENT",
    "KIND_CARD_NOTICE",
    "KIND_DIRECT_MESSAGE",
    "KIND_EXCEPTION_ALERT",
    "KIND_MESSAGE",
    "count_dead_letters",
    "dead_letters",
    "enqueue_in",
    "enqueue_message",
    "enqueue_once",
    "has_pending_card_event",
    "next_due_at",
    "pending_count",
    "rows_of_channel",
]
