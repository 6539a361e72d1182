"""The audit log: every command and button press, who, where, what card, outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.columns import utcnow
from storage.tables import AuditRecord


def record(
    engine: Engine,
    *,
    action: str,
    outcome: str,
    workspace_id: str | None = None,
    channel_id: str | None = None,
    user_id: str | None = None,
    card_id: str | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> AuditRecord:
    """Write one audit row. `detail` must hold nothing sensitive (callers pass fixed words)."""
    row = AuditRecord(
        at=at or utcnow(),
        workspace_id=workspace_id,
        channel_id=channel_id,
        user_id=user_id,
        action=action[:64],
        card_id=card_id[:64] if card_id else None,
        outcome=outcome[:64],
        detail=detail[:255] if detail else None,
    )
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(row)
        session.flush()
    return row


def recent(
    engine: Engine,
    *,
    limit: int = 100,
    card_id: str | None = None,
    user_id: str | None = None,
) -> list[AuditRecord]:
    """The latest audit rows, newest first."""
    query = select(AuditRecord)
    if card_id is not None:
        query = query.where(AuditRecord.card_id == card_id)
    if user_id is not None:
        query = query.where(AuditRecord.user_id == user_id)
    query = query.order_by(col(AuditRecord.id).desc()).limit(limit)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(query).all())
