"""Retention: old sent messages, job runs and audit rows go; history, pending work, dead
letters and each job's latest claim stay; the daily run happens once across replicas."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.runtime import Runtime
from bot.scheduled.jobs import prune_old_rows
from bot.settings import Settings
from storage.tables import AuditRecord, JobRunRecord, OutboxRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


def _seed(engine: Engine) -> None:
    outbox = OutboxRecord.__table__  # type: ignore[attr-defined]
    runs = JobRunRecord.__table__  # type: ignore[attr-defined]
    audit = AuditRecord.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for name, state, created in [
            ("old-sent", "sent", OLD), ("old-dead", "dead", OLD), ("old-pending", "pending", OLD),
            ("new-sent", "sent", RECENT),
        ]:  # fmt: skip
            conn.execute(
                outbox.insert().values(
                    channel_id="C1",
                    kind="message",
                    state=state,
                    created_at=created,
                    next_attempt_at=created,
                    last_error=name,
                )
            )
        for job, when in [("digest:C1", OLD - timedelta(days=1)), ("digest:C1", OLD),
                          ("digest:C2", OLD), ("stuck-cards", RECENT)]:  # fmt: skip
            conn.execute(
                runs.insert().values(
                    job_name=job, scheduled_for=when, claimed_by="x", claimed_at=when
                )
            )
        for at in (NOW - timedelta(days=400), RECENT):
            conn.execute(audit.insert().values(at=at, action="status", outcome="ok"))


def _runtime(engine: Engine, instance: str) -> Runtime:
    return Runtime(settings=Settings(), engine=engine, clock=lambda: NOW, instance=instance)


def test_prune_keeps_history_pending_dead_and_latest_claims(any_engine: Engine) -> None:
    _seed(any_engine)
    report = prune_old_rows(_runtime(any_engine, "a"))
    assert report is not None
    assert (report.sent_messages, report.job_runs, report.audit_rows) == (1, 1, 1)
    with any_engine.connect() as conn:
        kept = set(conn.execute(sa.text("SELECT last_error FROM outbox")).scalars())
        claims = conn.execute(
            sa.text("SELECT job_name, scheduled_for FROM job_runs WHERE job_name LIKE 'digest%'")
        ).all()
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar()
    assert kept == {"old-dead", "old-pending", "new-sent"}
    assert sorted(name for name, _ in claims) == ["digest:C1", "digest:C2"]
    assert audit == 1


def test_the_daily_run_happens_once_across_replicas(engine: Engine) -> None:
    _seed(engine)
    assert prune_old_rows(_runtime(engine, "a")) is not None
    assert prune_old_rows(_runtime(engine, "b")) is None
