"""Exception cases: one row per card that failed, who owns it, and its latest alert.

A case opens with the card's first failure (when the fan-out of its exception event is
expanded, `note_failures`), is held by an owner until resolved, and reopens with a new failure;
the reopening rewrites the resolved alert and says so in its thread (an `alert_update` row,
written in the same transaction, after the new alert). Owners and states are changed by
`storage.repositories.triage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from storage.repositories.intake_sql import KIND_ALERT_UPDATE
from storage.tables import (
    CASE_OPEN,
    CASE_RESOLVED,
    OUTBOX_PENDING,
    CardRecord,
    ExceptionCaseRecord,
    FanoutRecord,
    OutboxRecord,
)

cases: sa.Table = ExceptionCaseRecord.__table__  # type: ignore[attr-defined]
fanouts: sa.Table = FanoutRecord.__table__  # type: ignore[attr-defined]
outbox: sa.Table = OutboxRecord.__table__  # type: ignore[attr-defined]

NOTE_REOPENED = "reopened"


def note_failures(conn: Connection, marker_ids: list[int]) -> int:
    """Open, extend or reopen the case of each exception among the fan-out markers (inside
    their expansion's transaction); returns how many cases a new failure reopened."""
    markers = conn.execute(
        sa.select(
            fanouts.c.card_id,
            fanouts.c.event_id,
            fanouts.c.workspace_id,
            fanouts.c.received_at,
        )
        .where(
            fanouts.c.id.in_(marker_ids),
            fanouts.c.is_exception,
            fanouts.c.alert_channel.is_not(None),
        )
        .order_by(fanouts.c.id)
    ).all()
    reopened = 0
    for card_id, event_id, workspace_id, at in markers:
        case = conn.execute(sa.select(cases).where(cases.c.card_id == card_id)).first()
        if case is None:
            conn.execute(
                sa.insert(cases).values(
                    card_id=card_id,
                    workspace_id=workspace_id,
                    state=CASE_OPEN,
                    opened_at=at,
                    last_failure_at=at,
                    last_event_id=event_id,
                    failures=1,
                    reopened=0,
                )
            )
            continue
        if case.state == CASE_OPEN:
            conn.execute(
                sa.update(cases)
                .where(cases.c.id == case.id)
                .values(last_failure_at=at, last_event_id=event_id, failures=case.failures + 1)
            )
            continue
        reopened += 1
        conn.execute(
            sa.update(cases)
            .where(cases.c.id == case.id)
            .values(
                state=CASE_OPEN,
                owner=None,
                assigned_at=None,
                opened_at=at,
                last_failure_at=at,
                last_event_id=event_id,
                failures=1,
                reopened=case.reopened + 1,
            )
        )
        if case.alert_ts and case.alert_channel:
            conn.execute(
                sa.insert(outbox).values(
                    workspace_id=case.workspace_id or workspace_id,
                    channel_id=case.alert_channel,
                    kind=KIND_ALERT_UPDATE,
                    card_id=card_id,
                    event_id=case.alert_event_id,
                    payload={"ts": case.alert_ts, "note": NOTE_REOPENED},
                    state=OUTBOX_PENDING,
                    attempts=0,
                    next_attempt_at=at,
                    created_at=at,
                )
            )
    return reopened


def alert_posted(
    engine: Engine, *, card_id: str, channel_id: str, ts: str, event_id: int | None
) -> None:
    """Remember the card's latest alert, the one triage updates in place."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(cases)
            .where(cases.c.card_id == card_id)
            .values(alert_channel=channel_id, alert_ts=ts, alert_event_id=event_id)
        )


def get_case(engine: Engine, *, card_id: str) -> ExceptionCaseRecord | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            select(ExceptionCaseRecord).where(ExceptionCaseRecord.card_id == card_id)
        ).first()


def cases_by_card(engine: Engine, *, card_ids: list[str]) -> dict[str, ExceptionCaseRecord]:
    ids = sorted(set(card_ids))
    if not ids:
        return {}
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(ExceptionCaseRecord).where(col(ExceptionCaseRecord.card_id).in_(ids))
        )
        return {row.card_id: row for row in rows}


@dataclass(frozen=True)
class OpenCase:
    case: ExceptionCaseRecord
    card: CardRecord | None


def open_cases(
    engine: Engine, *, owner: str | None = None, limit: int = 15
) -> tuple[list[OpenCase], int]:
    """Open cases, oldest first (of `owner` when given), with their cards; and how many in all."""
    where = [col(ExceptionCaseRecord.state) == CASE_OPEN]
    if owner is not None:
        where.append(col(ExceptionCaseRecord.owner) == owner)
    return _oldest_cases(engine, where, limit)


def stale_unowned(
    engine: Engine, *, opened_before: datetime, limit: int = 10
) -> tuple[list[OpenCase], int]:
    """Open cases nobody owns that opened before `opened_before`, oldest first; and how many."""
    where = [
        col(ExceptionCaseRecord.state) == CASE_OPEN,
        col(ExceptionCaseRecord.owner).is_(None),
        col(ExceptionCaseRecord.opened_at) < opened_before,
    ]
    return _oldest_cases(engine, where, limit)


def _oldest_cases(engine: Engine, where: list[Any], limit: int) -> tuple[list[OpenCase], int]:
    """The cases matching `where`, oldest first, with their cards; and how many match."""
    query = (
        select(ExceptionCaseRecord, CardRecord)
        .join(CardRecord, col(CardRecord.card_id) == col(ExceptionCaseRecord.card_id), isouter=True)
        .where(*where)
        .order_by(col(ExceptionCaseRecord.opened_at), col(ExceptionCaseRecord.id))
        .limit(limit)
    )
    count = select(sa.func.count()).select_from(ExceptionCaseRecord).where(*where)
    with Session(engine, expire_on_commit=False) as session:
        rows = [OpenCase(case, card) for case, card in session.exec(query).all()]
        return rows, int(session.exec(count).one())


__all__ = [
    "CASE_OPEN",
    "CASE_RESOLVED",
    "NOTE_REOPENED",
    "OpenCase",
    "alert_posted",
    "cases_by_card",
    "get_case",
    "note_failures",
    "open_cases",
    "stale_unowned",
]
