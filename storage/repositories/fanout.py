"""Expanding fan-out markers into outbox rows: the per-subscription half of intake, done by the
delivery worker before it claims.

Intake writes one `fanouts` row per new current event that someone wants (an outbox row per
subscribed channel cost ~7.5 us each inside the intake transaction, mostly the three outbox
indexes: at 100 channels most of intake's time). Here the oldest markers become, in ONE
`INSERT ... SELECT` (index ix_subscriptions_card), the `card_event` row of every subscription
that wants the event and the exceptions-channel alert, ordered by marker id, then card events
before the alert, then subscription id (the order intake used to write them in), and the markers
are deleted in the same transaction. Expansions never overlap: on SQLite the write lock
serialises them; on PostgreSQL a transaction-scoped advisory lock does (a replica that does not
get it skips expanding this round), and the markers are also locked `FOR UPDATE SKIP LOCKED`.
Serialising matters beyond "never twice": two replicas expanding disjoint sets of markers at once
could commit the newer events' rows first, and a channel's messages leave in outbox id order.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage.repositories.cases import note_failures
from storage.repositories.intake_sql import KIND_CARD_EVENT, KIND_EXCEPTION_ALERT
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS, OUTBOX_PENDING, FanoutRecord

fanouts: sa.Table = FanoutRecord.__table__  # type: ignore[attr-defined]

# Markers per expansion transaction: at 100 channels each, ~10,000 outbox rows, a short hold of
# SQLite's write lock (intake waits behind it).
DEFAULT_MARKERS = 100
# An arbitrary constant identifying "d1bot fan-out expansion" among PostgreSQL advisory locks.
_PG_LOCK_ID = 0x0D1BFA


@functools.cache
def _expand_sql() -> Any:
    """Every outbox row the given markers owe, in delivery order, as one INSERT ... SELECT."""
    columns = (
        "workspace_id, channel_id, kind, card_id, event_id, subscription_id, thread_key, state,"
        " attempts, next_attempt_at, created_at"
    )
    sql = (
        f"INSERT INTO outbox ({columns}) SELECT {columns} FROM ("
        f" SELECT f.id AS fid, 0 AS part, s.id AS sid, s.workspace_id, s.channel_id,"
        f" '{KIND_CARD_EVENT}' AS kind, f.card_id, f.event_id, s.id AS subscription_id,"
        " s.workspace_id || ':' || s.channel_id || ':' || f.card_id AS thread_key,"
        f" '{OUTBOX_PENDING}' AS state, 0 AS attempts, f.received_at AS next_attempt_at,"
        " f.received_at AS created_at"
        " FROM fanouts f JOIN subscriptions s ON s.card_id = f.card_id"
        f" AND (s.filter = '{FILTER_ALL}' OR (f.is_exception AND s.filter = '{FILTER_EXCEPTIONS}'))"
        " WHERE f.id IN :ids"
        " UNION ALL"
        " SELECT f.id, 1, 0, f.workspace_id, f.alert_channel,"
        f" '{KIND_EXCEPTION_ALERT}', f.card_id, f.event_id, NULL, NULL,"
        f" '{OUTBOX_PENDING}', 0, f.received_at, f.received_at"
        " FROM fanouts f WHERE f.id IN :ids AND f.alert_channel IS NOT NULL"
        ") owed ORDER BY fid, part, sid"
    )
    return sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))


def _oldest(conn: Connection, limit: int) -> list[int]:
    query = sa.select(fanouts.c.id).order_by(fanouts.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).scalars())


def _serialise(conn: Connection, *, wait: bool) -> bool:
    """On PostgreSQL, the expansion lock for this transaction (False: another transaction
    holds it and `wait` is off). SQLite's write lock already serialises writers."""
    if conn.dialect.name != "postgresql":
        return True
    if wait:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        return True
    locked = conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    return bool(locked.scalar_one())


def expand_in(conn: Connection, *, limit: int | None = DEFAULT_MARKERS, wait: bool = False) -> int:
    """Expand the oldest markers (up to `limit`, or all with None) inside the caller's open
    write transaction; returns how many. Without `wait`, returns 0 at once on PostgreSQL when
    another transaction is expanding. Call it first in a transaction that writes outbox rows
    (`wait=True`, `limit=None`), so that a row enqueued after an event never overtakes it."""
    if not _serialise(conn, wait=wait):
        return 0
    total = 0
    while limit is None or total < limit:
        step = DEFAULT_MARKERS if limit is None else min(DEFAULT_MARKERS, limit - total)
        ids = _oldest(conn, step)
        if ids:
            conn.execute(_expand_sql(), {"ids": ids})
            note_failures(conn, ids)  # exception cases, and alerts of reopened ones after
            conn.execute(sa.delete(fanouts).where(fanouts.c.id.in_(ids)))
            total += len(ids)
        if len(ids) < step:
            break
    return total


def expand_pending(engine: Engine, *, limit: int = DEFAULT_MARKERS) -> int:
    """Expand up to `limit` of the oldest markers in one transaction; returns how many."""
    with engine.begin() as conn:
        return expand_in(conn, limit=limit)


def expand_all(engine: Engine, *, limit: int = DEFAULT_MARKERS, rounds: int = 50) -> int:
    """Expand markers, `limit` per transaction, until none is left (or `rounds` transactions,
    so that one caller never holds on for long); returns how many. Takes no write lock when
    nothing is pending (the common case)."""
    total = 0
    for _ in range(rounds):
        if not has_pending(engine):
            break
        done = expand_pending(engine, limit=limit)
        total += done
        if done < limit:
            break
    return total


def has_pending(engine: Engine) -> bool:
    """Whether some marker waits to be expanded (reads never take SQLite's write lock)."""
    with engine.connect() as conn:
        reading = conn.execution_options(sqlite_begin="DEFERRED")
        return reading.execute(sa.select(fanouts.c.id).limit(1)).first() is not None


def pending_markers(engine: Engine) -> int:
    with engine.connect() as conn:
        reading = conn.execution_options(sqlite_begin="DEFERRED")
        return int(reading.execute(sa.select(sa.func.count()).select_from(fanouts)).scalar_one())


__all__ = [
    "DEFAULT_MARKERS",
    "expand_all",
    "expand_in",
    "expand_pending",
    "has_pending",
    "pending_markers",
]
