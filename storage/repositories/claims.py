"""The delivery worker's lease on outbox rows: claim the due heads, settle what Slack answered.

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

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from storage.repositories.fanout import expand_in
from storage.repositories.outbox import _lease_free, outbox
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT


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


__all__ = ["ClaimedRow", "claim_due", "mark_dead", "mark_sent", "retry_later", "save_progress"]
