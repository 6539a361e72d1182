"""Read-only queries for operations: is the database answering, is its schema current, how
deep is the outbox.

Reads begin DEFERRED on SQLite so that a health probe or a scrape never takes the write lock.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.columns import UTCDateTime
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


def _aware(value: datetime | str | None) -> datetime | None:
    """min() over a UNION loses the column type on SQLite (a naive UTC string comes back)."""
    if value is None or isinstance(value, datetime):
        return UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


VERSIONS_DIR = Path(__file__).resolve().parents[1] / "migrations" / "versions"
_REVISION = re.compile(r'^(down_)?revision\b[^=]*=\s*"([^"]*)"', re.MULTILINE)


def ping(*, engine: Engine) -> None:
    """Raises when the database does not answer a trivial query."""
    with engine.connect() as conn:
        conn.execution_options(sqlite_begin="DEFERRED").execute(sa.text("SELECT 1")).scalar_one()


@functools.cache
def schema_head() -> str | None:
    """The newest migration's revision, read from the revision files: the server checks the
    schema without loading Alembic (`storage.migrate.head_revision` says the same)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        for down, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (parents if down else revisions).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def schema_revision(*, engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        reader = conn.execution_options(sqlite_begin="DEFERRED")
        if not sa.inspect(reader).has_table("alembic_version"):
            return None
        return reader.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def outbox_backlog(*, engine: Engine) -> OutboxBacklog:
    """Pending messages, counting each fan-out marker not yet expanded as one: a dead worker
    shows as a growing backlog even before its markers become outbox rows."""
    table = OutboxRecord.__table__  # type: ignore[attr-defined]
    markers = FanoutRecord.__table__  # type: ignore[attr-defined]
    pending = sa.select(table.c.created_at).where(table.c.state == OUTBOX_PENDING)
    unexpanded = sa.select(markers.c.received_at.label("created_at"))
    # ONE statement, so one snapshot: an expansion committing between two reads would hide
    # its rows from both.
    owed = sa.union_all(pending, unexpanded).subquery()
    query = sa.select(sa.func.count(), sa.func.min(owed.c.created_at))
    with engine.connect() as conn:
        reader = conn.execution_options(sqlite_begin="DEFERRED")
        count, oldest = reader.execute(query).one()
    return OutboxBacklog(pending=int(count or 0), oldest_created_at=_aware(oldest))
