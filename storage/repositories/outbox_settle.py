"""Settling many outbox rows in one transaction (group commit of the delivery worker).

At a thousand channels the worker gets a thousand Slack answers a second; one commit per
answer (a `fsync` each with SQLite `synchronous=FULL`, and a fight for the write lock) was its
bottleneck. The worker queues what each answer means (`Sent`, `Retry`, `Dead`, `Progress`, a
new `Parent`) and this module writes every queued item in ONE transaction.

Guarantees kept (see `storage.repositories.outbox`): a row is settled only while the caller
still holds its claim (the answer for each item says whether it did); a parent's `ts` is
committed before the worker posts anything in its thread (the worker awaits the commit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage.db import sqlite_timestamp
from storage.repositories.outbox import outbox
from storage.repositories.threads import upsert_threads
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT


@dataclass(frozen=True)
class Sent:
    """The row's message is in Slack (with its `ts`)."""

    row_id: int
    slack_ts: str | None


@dataclass(frozen=True)
class Retry:
    """Release the row until `next_attempt_at` (blocking its channel until then)."""

    row_id: int
    next_attempt_at: datetime
    error: str | None
    count_attempt: bool = True


@dataclass(frozen=True)
class Dead:
    """Give up on the row, visibly (a dead letter)."""

    row_id: int
    error: str


@dataclass(frozen=True)
class Progress:
    """What a multi-post row already posted, so that a retry does not post it again."""

    row_id: int
    slack_ts: str | None = None
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Parent:
    """A card's parent message just posted in a channel: its `ts` (not tied to a claim)."""

    workspace_id: str
    channel_id: str
    card_id: str
    parent_ts: str


Settlement = Sent | Retry | Dead | Progress | Parent

_CHUNK = 500
_SENT = (
    sa.update(outbox)
    .where(
        outbox.c.id == sa.bindparam("rid"),
        outbox.c.claimed_by == sa.bindparam("worker"),
        outbox.c.state == OUTBOX_PENDING,
    )
    .values(
        state=OUTBOX_SENT,
        sent_at=sa.bindparam("now"),
        slack_ts=sa.bindparam("ts"),
        claimed_by=None,
        claimed_until=None,
    )
)


# Values bound in order: state, sent_at, the JSON array of [row id, ts], worker, pending state.
# The unary `+` keeps SQLite from reading the rows by the state index (every pending row, for
# each array element); the plan is one primary-key lookup per element
# (tests/test_outbox_batching.py checks it).
SENT_SQLITE = (
    "UPDATE outbox SET state = ?1, sent_at = ?2, slack_ts = json_extract(j.value, '$[1]'),"
    " claimed_by = NULL, claimed_until = NULL"
    " FROM json_each(?3) AS j"
    " WHERE outbox.id = json_extract(j.value, '$[0]')"
    " AND +outbox.claimed_by = ?4 AND +outbox.state = ?5"
    " RETURNING outbox.id"
)


def settle_many(
    engine: Engine, *, worker: str, now: datetime, items: Sequence[Settlement]
) -> list[bool]:
    """Write every item in one transaction. Returns, per item, whether it took effect: False
    for a row whose claim `worker` no longer held (its lease expired and someone else has it,
    or it was settled already). `Parent` items always take effect."""
    sent = [i for i in items if isinstance(i, Sent)]
    others = [i for i in items if isinstance(i, Retry | Dead | Progress)]
    with engine.begin() as conn:
        held = _held(conn, worker=worker, row_ids=[i.row_id for i in others]) if others else set()
        upsert_threads(
            conn,
            parents=[
                (i.workspace_id, i.channel_id, i.card_id, i.parent_ts)
                for i in items
                if isinstance(i, Parent)
            ],
            now=now,
        )
        for item in others:
            if item.row_id in held:
                conn.execute(_single(item, worker=worker))
        if sent:
            held |= _mark_sent(conn, worker=worker, now=now, items=sent)
    return [isinstance(i, Parent) or i.row_id in held for i in items]


def _mark_sent(conn: Connection, *, worker: str, now: datetime, items: list[Sent]) -> set[int]:
    """Mark the `items` rows still claimed by `worker` sent; returns those rows' ids. SQLite:
    one UPDATE ... FROM over a JSON array, RETURNING the rows it changed (at a thousand answers
    a second, SQLAlchemy's per-row work of an executemany plus the claim check cost the worker
    thread ~35 us a message, and that thread shares the GIL with the event loop). PostgreSQL:
    the claim check (rows locked until the commit), then one executemany."""
    if conn.dialect.name != "sqlite":
        held = _held(conn, worker=worker, row_ids=[i.row_id for i in items])
        rows = [
            {"rid": i.row_id, "worker": worker, "now": now, "ts": i.slack_ts}
            for i in items
            if i.row_id in held
        ]
        if rows:
            conn.execute(_SENT, rows)  # executemany: one statement, many rows
        return held
    pairs = json.dumps([(i.row_id, i.slack_ts) for i in items])
    result = conn.exec_driver_sql(
        SENT_SQLITE, (OUTBOX_SENT, sqlite_timestamp(now), pairs, worker, OUTBOX_PENDING)
    )
    return {row[0] for row in result}


def _held(conn: Connection, *, worker: str, row_ids: Sequence[int]) -> set[int]:
    """The rows among `row_ids` still pending and claimed by `worker` (locked on PostgreSQL
    until the commit, so a lease cannot change hands in between)."""
    held: set[int] = set()
    unique = sorted(set(row_ids))
    for start in range(0, len(unique), _CHUNK):
        query = sa.select(outbox.c.id).where(
            outbox.c.id.in_(unique[start : start + _CHUNK]),
            outbox.c.claimed_by == worker,
            outbox.c.state == OUTBOX_PENDING,
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        held.update(conn.execute(query).scalars())
    return held


def _single(item: Retry | Dead | Progress, *, worker: str) -> sa.Update:
    values: dict[str, Any]
    if isinstance(item, Retry):
        values = {
            "next_attempt_at": item.next_attempt_at,
            "claimed_by": None,
            "claimed_until": None,
        }
        if item.error is not None:
            values["last_error"] = item.error[:255]
        if item.count_attempt:
            values["attempts"] = outbox.c.attempts + 1
    elif isinstance(item, Dead):
        values = {
            "state": OUTBOX_DEAD,
            "last_error": item.error[:255],
            "attempts": outbox.c.attempts + 1,
            "sent_at": None,
            "claimed_by": None,
            "claimed_until": None,
        }
    else:
        values = {}
        if item.slack_ts is not None:
            values["slack_ts"] = item.slack_ts
        if item.payload is not None:
            values["payload"] = item.payload
        if not values:
            values["claimed_by"] = worker  # nothing to write: a no-op that keeps the claim
    return (
        sa.update(outbox)
        .where(
            outbox.c.id == item.row_id,
            outbox.c.claimed_by == worker,
            outbox.c.state == OUTBOX_PENDING,
        )
        .values(**values)
    )


__all__ = ["Dead", "Parent", "Progress", "Retry", "Sent", "Settlement", "settle_many"]
