"""Retention: the outbox and the job-run claims would otherwise grow forever.

Kept: every event (the cards' history), dead letters (operators look at them), pending
messages, and the latest claimed run of every job (the digest's catch-up reads it). Deleted:
messages sent before the cut-off, older job runs, quarantined operations received before the
cut-off, audit rows older than their own cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.tables import OUTBOX_SENT, AuditRecord, JobRunRecord, OutboxRecord, QuarantineRecord

OUTBOX = OutboxRecord.__table__  # type: ignore[attr-defined]
JOB_RUNS = JobRunRecord.__table__  # type: ignore[attr-defined]
AUDIT = AuditRecord.__table__  # type: ignore[attr-defined]
QUARANTINE = QuarantineRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PruneReport:
    sent_messages: int
    job_runs: int
    audit_rows: int
    quarantined: int = 0


def prune(engine: Engine, *, sent_before: datetime, audit_before: datetime) -> PruneReport:
    """Delete what is past retention, in one transaction."""
    latest_per_job = (
        sa.select(sa.func.max(JOB_RUNS.c.id)).group_by(JOB_RUNS.c.job_name).scalar_subquery()
    )
    with engine.begin() as conn:
        sent = conn.execute(
            sa.delete(OUTBOX).where(
                OUTBOX.c.state == OUTBOX_SENT, OUTBOX.c.created_at < sent_before
            )
        ).rowcount
        runs = conn.execute(
            sa.delete(JOB_RUNS).where(
                JOB_RUNS.c.scheduled_for < sent_before, JOB_RUNS.c.id.not_in(latest_per_job)
            )
        ).rowcount
        audit = conn.execute(sa.delete(AUDIT).where(AUDIT.c.at < audit_before)).rowcount
        quarantined = conn.execute(
            sa.delete(QUARANTINE).where(QUARANTINE.c.received_at < sent_before)
        ).rowcount
    return PruneReport(sent_messages=sent, job_runs=runs, audit_rows=audit, quarantined=quarantined)


__all__ = ["PruneReport", "prune"]
