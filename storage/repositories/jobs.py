"""Claims of scheduled job runs: with several replicas, each run of a job happens once.

A run is identified by its job name and the time it was scheduled for. Claiming inserts the
unique `JobRunRecord`; when the row already exists another replica has the run and the caller
does nothing. `claim_run_in` takes an open connection so that a job can claim its run and write
its result (e.g. the digest's outbox row) in one transaction: either both happen or neither.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from storage.tables import JobRunRecord

JOB_RUNS = JobRunRecord.__table__  # type: ignore[attr-defined]


def insert_ignoring_conflict(
    conn: Connection, table: sa.Table, values: dict[str, Any], *, conflict_on: list[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; True when a row went in."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict_on)
        .returning(table.c.id)  # rowcount is not reliable here across drivers
    )
    return conn.execute(stmt).first() is not None


def claim_run_in(
    conn: Connection, *, job_name: str, scheduled_for: datetime, instance: str, now: datetime
) -> bool:
    """Claim a run inside the caller's transaction; False when another replica has it."""
    return insert_ignoring_conflict(
        conn,
        JOB_RUNS,
        {
            "job_name": job_name,
            "scheduled_for": scheduled_for,
            "claimed_by": instance[:64],
            "claimed_at": now,
        },
        conflict_on=["job_name", "scheduled_for"],
    )


def claim_run(
    engine: Engine, *, job_name: str, scheduled_for: datetime, instance: str, now: datetime
) -> bool:
    """Claim a run in its own transaction; False when another replica has it."""
    with engine.begin() as conn:
        return claim_run_in(
            conn, job_name=job_name, scheduled_for=scheduled_for, instance=instance, now=now
        )


def finish_run_in(
    conn: Connection,
    *,
    job_name: str,
    scheduled_for: datetime,
    outcome: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    conn.execute(
        sa.update(JOB_RUNS)
        .where(JOB_RUNS.c.job_name == job_name, JOB_RUNS.c.scheduled_for == scheduled_for)
        .values(finished_at=now, outcome=outcome[:32], detail=(detail or None) and detail[:255])
    )


def finish_run(
    engine: Engine,
    *,
    job_name: str,
    scheduled_for: datetime,
    outcome: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Record how a claimed run ended ("ok", "failed", ...)."""
    with engine.begin() as conn:
        finish_run_in(
            conn,
            job_name=job_name,
            scheduled_for=scheduled_for,
            outcome=outcome,
            now=now,
            detail=detail,
        )


def last_claimed_run(engine: Engine, *, job_name: str) -> datetime | None:
    """The latest scheduled time of a claimed run of `job_name` (any replica), or None."""
    with engine.connect() as conn:
        # max() keeps the column's type, so the value comes back as an aware UTC datetime.
        return conn.execute(
            sa.select(sa.func.max(JOB_RUNS.c.scheduled_for)).where(JOB_RUNS.c.job_name == job_name)
        ).scalar()


def runs_of(engine: Engine, *, job_name: str) -> list[dict[str, Any]]:
    """Every claimed run of a job, oldest first (operations and tests)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(JOB_RUNS)
            .where(JOB_RUNS.c.job_name == job_name)
            .order_by(JOB_RUNS.c.scheduled_for)
        )
        return [dict(row._mapping) for row in rows]


__all__ = [
    "claim_run",
    "claim_run_in",
    "finish_run",
    "finish_run_in",
    "insert_ignoring_conflict",
    "last_claimed_run",
    "runs_of",
]
