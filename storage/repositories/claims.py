"""The delivery worker's lease on outbox rows: claim the due heads, settle what Slack answered.

Claiming rules (what makes delivery exactly-once per row and ordered per channel):
- only the oldest pending row of each card in each channel (its *head*) can be claimed, so the
  messages about one card leave in the order they were enqueued, and a row that waits (backoff,
  `Retry-After`) never holds back other cards; of those, one per channel is claimed while the
  channel has nothing in flight, and none in a paused channel (`storage.repositories.pauses`);
- a claim is a lease (`claimed_by`, `claimed_until`) that the worker renews while it holds the
  row: a row claimed by a worker that died is claimed again once the short lease has expired;
- on PostgreSQL the candidate heads are selected `FOR UPDATE SKIP LOCKED`, and every claim is a
  conditional UPDATE (still pending, lease free), so two replicas never hold the same row;
- settling a row (sent, retry, dead) only happens while the caller still holds its claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from storage.repositories.fanout import expand_in
from storage.repositories.outbox import KIND_CARD_EVENT, KIND_EXCEPTION_ALERT, _lease_free, outbox
from storage.repositories.pauses import pauses
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT, ThreadRecord

threads = ThreadRecord.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class ClaimedRow:
    """An outbox row as claimed: the `outbox` columns, read through Core (a claim reads up to
    a few hundred rows; plain objects, no ORM session to keep)."""

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


def claim_due(
    engine: Engine, *, worker: str, now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedRow]:
    """Expand the oldest fan-out markers, then claim up to `limit` due heads (at most one per
    channel, none in a paused or busy channel), oldest first, in one transaction (see the
    module docstring)."""
    with engine.begin() as conn:
        expand_in(conn)  # the oldest owed card events become rows first (skipped if busy)
        if conn.dialect.name == "postgresql":
            # The card heads first (one aggregate), then the rest by primary key: as one query
            # with `id IN (heads)` PostgreSQL planned a nested loop that re-ran the aggregate
            # for every pending row whenever the statistics were stale, as they always are for
            # a table that fills in bursts.
            head_ids = list(conn.execute(_card_heads()).scalars())
            heads: Any = sa.cast(sa.literal(head_ids), ARRAY(sa.BigInteger))
            is_head = outbox.c.id == sa.any_(heads)
            # Every channel's head, in order, then the first `limit` that no other replica
            # is claiming at this moment (limited after skipping, so replicas share the work).
            ids = _channel_heads(conn, is_head, now=now, limit=None) if head_ids else []
            ids = _postgres_locked(conn, ids, now=now, limit=limit)
        else:
            ids = _channel_heads(conn, outbox.c.id.in_(_card_heads()), now=now, limit=limit)
        if not ids:
            return []
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_(ids), outbox.c.state == OUTBOX_PENDING, _lease_free(now))
            .values(claimed_by=worker, claimed_until=lease_until)
        )
        claimed = conn.execute(
            sa.select(outbox)
            .where(outbox.c.id.in_(ids), outbox.c.claimed_by == worker)
            .order_by(outbox.c.id)
        )
        return [ClaimedRow(**row._mapping) for row in claimed]


def _card_heads() -> sa.Select[Any]:
    """The oldest pending row of each card in each channel (rows about no card, such as
    digests, form one sequence per channel): order is kept per card per channel only, so a row
    that waits never holds back another card's messages."""
    return (
        sa.select(sa.func.min(outbox.c.id))
        .where(outbox.c.state == OUTBOX_PENDING)
        .group_by(
            outbox.c.workspace_id, outbox.c.channel_id, sa.func.coalesce(outbox.c.card_id, "")
        )
    )


def _channel_heads(
    conn: Connection, is_head: sa.ColumnElement[bool], *, now: datetime, limit: int | None
) -> list[int]:
    """Of the due, free card heads, the oldest of each channel that has no row in flight and
    is not paused: one message in flight per channel, as the channel pacer expects."""
    other = outbox.alias("in_flight")
    busy = sa.exists().where(
        other.c.workspace_id == outbox.c.workspace_id,
        other.c.channel_id == outbox.c.channel_id,
        other.c.state == OUTBOX_PENDING,
        other.c.claimed_until >= now,
    )
    paused = sa.exists().where(
        pauses.c.workspace_id == outbox.c.workspace_id, pauses.c.channel_id == outbox.c.channel_id
    )
    # When the budget is short, exception alerts go first, then a card's first post in a
    # channel (no parent there yet), then routine thread updates; oldest first within each.
    first_post = sa.and_(
        outbox.c.kind == KIND_CARD_EVENT,
        ~sa.exists().where(
            threads.c.workspace_id == outbox.c.workspace_id,
            threads.c.channel_id == outbox.c.channel_id,
            threads.c.card_id == outbox.c.card_id,
        ),
    )
    priority = sa.case((outbox.c.kind == KIND_EXCEPTION_ALERT, 0), (first_post, 1), else_=2).label(
        "priority"
    )
    candidates = (
        sa.select(outbox.c.id, outbox.c.workspace_id, outbox.c.channel_id, priority)
        .where(
            is_head,
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.next_attempt_at <= now,
            _lease_free(now),
            ~busy,
            ~paused,
        )
        .subquery()
    )
    first = sa.func.min(candidates.c.id)
    query = (
        sa.select(first)
        .group_by(candidates.c.workspace_id, candidates.c.channel_id)
        .order_by(sa.func.min(candidates.c.priority), first)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def _postgres_locked(conn: Connection, ids: list[int], *, now: datetime, limit: int) -> list[int]:
    """The first `limit` of `ids` (in their order) no other replica is claiming, locked
    `FOR UPDATE SKIP LOCKED`."""
    if not ids:
        return []
    wanted: Any = sa.cast(sa.literal(ids), ARRAY(sa.BigInteger))
    locked = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.id == sa.any_(wanted),
            outbox.c.state == OUTBOX_PENDING,
            _lease_free(now),
        )
        .order_by(sa.func.array_position(wanted, outbox.c.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(locked).scalars())


def renew_leases(
    engine: Engine, *, worker: str, row_ids: Sequence[int], lease_until: datetime
) -> int:
    """Extend the lease on the rows `worker` still holds (its heartbeat): a short lease that
    a live worker keeps renewing lets a crashed worker's rows be claimed again within seconds."""
    if not row_ids:
        return 0
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.id.in_(list(row_ids)),
                    outbox.c.claimed_by == worker,
                    outbox.c.state == OUTBOX_PENDING,
                )
                .values(claimed_until=lease_until)
            ).rowcount
        )


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


__all__ = [
    "ClaimedRow",
    "claim_due",
    "mark_dead",
    "mark_sent",
    "renew_leases",
    "retry_later",
    "save_progress",
]
