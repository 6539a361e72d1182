"""Read-only queries for operations: is the database answering, how deep is the outbox.

Reads begin DEFERRED on SQLite so that a health probe or a scrape never takes the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.tables import OUTBOX_PENDING, FanoutRecord, OutboxRecord


@dataclass(frozen=True)
class OutboxBacklog:
    """Pending outbox messages and when the oldest of them was created."""

    pending: int
    oldest_created_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float:
        if self.oldest_created_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_created_at).total_seconds())


def ping(*, engine: Engine) -> None:
    """Raises when the database does not answer a trivial query."""
    with engine.connect() as conn:
        conn.execution_options(sqlite_begin="DEFERRED").execute(sa.text("SELECT 1")).scalar_one()


def outbox_backlog(*, engine: Engine) -> OutboxBacklog:
    """Pending messages, counting each fan-out marker not yet expanded as one: a dead worker
    shows as a growing backlog even before its markers become outbox rows."""
    table = OutboxRecord.__table__  # type: ignore[attr-defined]
    markers = FanoutRecord.__table__  # type: ignore[attr-defined]
    pending = sa.select(sa.func.count(), sa.func.min(table.c.created_at)).where(
        table.c.state == OUTBOX_PENDING
    )
    unexpanded = sa.select(sa.func.count(), sa.func.min(markers.c.received_at))
    with engine.connect() as conn:
        reader = conn.execution_options(sqlite_begin="DEFERRED")
        count, oldest = reader.execute(pending).one()
        marker_count, oldest_marker = reader.execute(unexpanded).one()
    candidates = [t for t in (oldest, oldest_marker) if t is not None]
    return OutboxBacklog(
        pending=int(count or 0) + int(marker_count or 0),
        oldest_created_at=min(candidates) if candidates else None,
    )
