"""The outbox: messages waiting for Slack, claimed and settled by the delivery worker.

Card events arrive as fan-out markers written by intake; the worker expands them into rows here
before it claims (`storage.repositories.fanout`).

Claiming rules (what makes delivery exactly-once per row and ordered per channel):
- only the oldest pending row of each channel (its *head*) can be claimed, so a channel has at
  most one message in flight and its messages leave in the order they were enqueued;
- a claim is a lease (`claimed_by`, `claimed_until`): a row claimed by a worker that died is
  claimed again once the lease has expired;
- on PostgreSQL the candidate heads are selected `FOR UPDATE SKIP LOCKED`, and every claim is a
  conditional UPDATE (still pending, lease free), so two replicas never hold the same row;
- settling a row (sent, retry, dead) only happens while the caller still holds its claim.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from storage.repositories.fanout import expand_in
from storage.tables import (
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    CardRecord,
    EventRecord,
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


def _insert_row(conn: Connection, *, now: datetime, **values: Any) -> int:
    # Owed card events first: a row enqueued after an event must not overtake its messages.
    expand_in(conn, limit=None, wait=True)
    return conn.execute(
        sa.insert(outbox)
        .values(state=OUTBOX_PENDING, attempts=0, next_attempt_at=now, created_at=now, **values)
        .returning(outbox.c.id)
    ).scalar_one()


# --------------------------------------------------------------------------- claim and settle


@dataclass(slots=True)
class ClaimedRow:
    """An outbox row as claimed: the `outbox` columns, read through Core (a thousand ORM
    objects per claim cost ~50 us each, with the GIL held, beside the worker's event loop)."""

    id: int
    workspace_id: str
    channel_id: str
    kind: str
    card_id: str | None
    event_id: int | None
    subscription_id: int | None
    thread_key: str | None
    payload: dict[str, Any] | None
    state: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    slack_ts: str | None


_CLAIM_SQLITE = (
    sa.update(outbox)
    .where(
        outbox.c.id.in_(
            sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.bindparam("ids", type_=sa.String))
            )
        ),
        # Unary plus: no index on state, so SQLite looks the ids up by primary key instead of
        # reading every pending row (tests/test_outbox_batching.py checks the plan).
        sa.text(f"+outbox.state = '{OUTBOX_PENDING}'"),
        sa.or_(
            outbox.c.claimed_until.is_(None),
            outbox.c.claimed_until < sa.bindparam("now", type_=outbox.c.claimed_until.type),
        ),
    )
    .values(
        claimed_by=sa.bindparam("worker"),
        claimed_until=sa.bindparam("until", type_=outbox.c.claimed_until.type),
    )
    .returning(*outbox.c)
)


# ClaimedRow is built positionally from `outbox` rows: its fields must be the table's columns.
if [f.name for f in fields(ClaimedRow)] != [c.name for c in outbox.columns]:
    raise RuntimeError("ClaimedRow must list the outbox columns in table order")


def claim_due(
    engine: Engine, *, worker: str, now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedRow]:
    """Expand the oldest fan-out markers, then claim up to `limit` due heads (one per
    channel), oldest first, in one transaction (see module docstring)."""
    heads = (
        sa.select(sa.func.min(outbox.c.id))
        .where(outbox.c.state == OUTBOX_PENDING)
        .group_by(outbox.c.workspace_id, outbox.c.channel_id)
    )
    candidates = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.next_attempt_at <= now,
            _lease_free(now),
            outbox.c.id.in_(heads),
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    with engine.begin() as conn:
        expand_in(conn)  # the oldest owed card events become rows first (skipped if busy)
        if conn.dialect.name == "postgresql":
            ids = _postgres_candidates(conn, heads=heads, now=now, limit=limit)
        else:
            ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        if conn.dialect.name == "sqlite":
            # One statement, the ids as one JSON array (not a thousand bound parameters).
            claimed = conn.execute(
                _CLAIM_SQLITE,
                {"ids": json.dumps(ids), "worker": worker, "until": lease_until, "now": now},
            ).all()
            claimed.sort(key=lambda row: row[0])  # RETURNING comes in no promised order
        else:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.state == OUTBOX_PENDING, _lease_free(now))
                .values(claimed_by=worker, claimed_until=lease_until)
            )
            claimed = conn.execute(
                sa.select(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.claimed_by == worker)
                .order_by(outbox.c.id)
            ).all()
        return [ClaimedRow(*row) for row in claimed]  # columns in ClaimedRow's field order


def _postgres_candidates(
    conn: Connection, *, heads: sa.Select[Any], now: datetime, limit: int
) -> list[int]:
    """The due, free heads, locked `FOR UPDATE SKIP LOCKED`, in two steps: the heads (one
    aggregate over the pending rows), then those rows by primary key. As one query with
    `id IN (heads)` PostgreSQL planned a nested loop that re-ran the aggregate for every
    pending row whenever the statistics were stale, as they always are for a table that
    fills in bursts: 2-5 s to claim 1,000 heads among 3,000 rows, against ~50 ms here."""
    head_ids = list(conn.execute(heads).scalars())
    if not head_ids:
        return []
    locked = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.id == sa.any_(sa.cast(sa.literal(head_ids), ARRAY(sa.BigInteger))),
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.next_attempt_at <= now,
            _lease_free(now),
        )
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(locked).scalars())


def _settle(engine: Engine, *, row_id: int, worker: str, **values: Any) -> bool:
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.id == row_id,
                    outbox.c.claimed_by == worker,
                    outbox.c.state == OUTBOX_PENDING,
                )
                .values(**values)
            ).rowcount
        )


def mark_sent(
    engine: Engine, *, row_id: int, worker: str, now: datetime, slack_ts: str | None
) -> bool:
    """The message is in Slack; returns False if the claim was lost (lease expired)."""
    return _settle(
        engine,
        row_id=row_id,
        worker=worker,
        state=OUTBOX_SENT,
        sent_at=now,
        slack_ts=slack_ts,
        claimed_by=None,
        claimed_until=None,
    )


def save_progress(
    engine: Engine,
    *,
    row_id: int,
    worker: str,
    slack_ts: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Record what a multi-post row already posted, so a retry does not post it again."""
    values: dict[str, Any] = {}
    if slack_ts is not None:
        values["slack_ts"] = slack_ts
    if payload is not None:
        values["payload"] = payload
    return _settle(engine, row_id=row_id, worker=worker, **values) if values else True


def retry_later(
    engine: Engine,
    *,
    row_id: int,
    worker: str,
    next_attempt_at: datetime,
    error: str | None,
    count_attempt: bool = True,
) -> bool:
    """Release the row to be tried again at `next_attempt_at` (blocking its channel until then,
    which keeps the channel's order)."""
    values: dict[str, Any] = {
        "next_attempt_at": next_attempt_at,
        "claimed_by": None,
        "claimed_until": None,
    }
    if error is not None:
        values["last_error"] = error[:255]
    if count_attempt:
        values["attempts"] = outbox.c.attempts + 1
    return _settle(engine, row_id=row_id, worker=worker, **values)


def mark_dead(engine: Engine, *, row_id: int, worker: str, now: datetime, error: str) -> bool:
    """Give up on the row, visibly: it stays in the table as a dead letter."""
    return _settle(
        engine,
        row_id=row_id,
        worker=worker,
        state=OUTBOX_DEAD,
        last_error=error[:255],
        attempts=outbox.c.attempts + 1,
        sent_at=None,
        claimed_by=None,
        claimed_until=None,
    )


# --------------------------------------------------------------------------- burst coalescing


@dataclass(frozen=True)
class Burst:
    """Many distinct cards pending for one channel at once."""

    workspace_id: str
    channel_id: str
    cards: int


def find_bursts(engine: Engine, *, threshold: int, now: datetime) -> list[Burst]:
    """Channels with more than `threshold` distinct cards in unclaimed pending card events."""
    query = (
        sa.select(
            outbox.c.workspace_id,
            outbox.c.channel_id,
            sa.func.count(sa.distinct(outbox.c.card_id)),
        )
        .where(
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.kind == KIND_CARD_EVENT,
            _lease_free(now),
        )
        .group_by(outbox.c.workspace_id, outbox.c.channel_id)
        .having(sa.func.count(sa.distinct(outbox.c.card_id)) > threshold)
    )
    with engine.connect() as conn:
        rows = _reading(conn).execute(query).all()
    return [Burst(r[0], r[1], int(r[2])) for r in rows]


def coalesce_burst(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    threshold: int,
    now: datetime,
    render: Callable[[Sequence[CardRecord]], dict[str, Any]],
) -> int | None:
    """In one transaction: mark the channel's unclaimed pending card events sent as coalesced,
    and enqueue one summary message (`render(cards)` gives its payload). Returns the summary's
    id, or None when the burst had already shrunk below the threshold."""
    rows_query = (
        sa.select(outbox.c.id, outbox.c.card_id)
        .where(
            outbox.c.workspace_id == workspace_id,
            outbox.c.channel_id == channel_id,
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.kind == KIND_CARD_EVENT,
            _lease_free(now),
        )
        .order_by(outbox.c.id)
    )
    with engine.begin() as conn:
        expand_in(conn, limit=None, wait=True)  # owed card events join the burst
        if conn.dialect.name == "postgresql":
            rows_query = rows_query.with_for_update(skip_locked=True)
        rows = conn.execute(rows_query).all()
        card_ids = list(dict.fromkeys(r.card_id for r in rows if r.card_id))
        if len(card_ids) <= threshold:
            return None
        with Session(bind=conn) as session:
            records = session.exec(
                select(CardRecord).where(col(CardRecord.card_id).in_(card_ids))
            ).all()
            payload = render(records)
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_([r.id for r in rows]))
            .values(state=OUTBOX_SENT, sent_at=now, last_error=COALESCED)
        )
        return _insert_row(
            conn,
            workspace_id=workspace_id,
            channel_id=channel_id,
            kind=KIND_MESSAGE,
            payload=payload,
            now=now,
        )


# --------------------------------------------------------------------------- reads


def get_row(engine: Engine, *, row_id: int) -> OutboxRecord | None:
    with Session(engine) as session:
        return session.get(OutboxRecord, row_id)


def rows_of_channel(engine: Engine, *, channel_id: str) -> list[OutboxRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(OutboxRecord)
                .where(OutboxRecord.channel_id == channel_id)
                .order_by(col(OutboxRecord.id))
            )
        )


def events_by_ids(engine: Engine, *, ids: list[int]) -> dict[int, EventRecord]:
    """Many events at once (the rows of one delivery round often share a few events)."""
    unique = sorted(set(ids))
    found: dict[int, EventRecord] = {}
    with Session(engine) as session:
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for event in session.exec(select(EventRecord).where(col(EventRecord.id).in_(chunk))):
                assert event.id is not None
                found[event.id] = event
    return found


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
    "KIND_CARD_EVENT",
    "KIND_CARD_NOTICE",
    "KIND_DIRECT_MESSAGE",
    "KIND_EXCEPTION_ALERT",
    "KIND_MESSAGE",
    "Burst",
    "ClaimedRow",
    "claim_due",
    "coalesce_burst",
    "count_dead_letters",
    "dead_letters",
    "enqueue_message",
    "enqueue_once",
    "events_by_ids",
    "find_bursts",
    "get_row",
    "has_pending_card_event",
    "mark_dead",
    "mark_sent",
    "next_due_at",
    "pending_count",
    "retry_later",
    "rows_of_channel",
    "save_progress",
]
