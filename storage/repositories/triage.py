"""Who owns a card's exception: assign, resolve, reopen. Each change and the `alert_update`
rows that show it in Slack commit in one transaction, so an alert never shows a state that was
not stored (and a stored change is always shown, by the delivery worker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage.repositories.cases import cases
from storage.repositories.outbox import KIND_ALERT_UPDATE, enqueue_in
from storage.tables import CASE_OPEN, CASE_RESOLVED, ExceptionCaseRecord

ASSIGNED = "assigned"
TAKEN_OVER = "taken_over"  # assigned to the presser, from another owner
ALREADY_YOURS = "already_yours"
RESOLVED = "resolved"
ALREADY_RESOLVED = "already_resolved"
REOPENED = "reopened"
ALREADY_OPEN = "already_open"
NO_CASE = "no_case"


@dataclass(frozen=True)
class Alert:
    """An alert message to update: where it is and the event it announced."""

    workspace_id: str
    channel_id: str
    ts: str
    event_id: int | None


@dataclass(frozen=True)
class TriageResult:
    outcome: str
    case: ExceptionCaseRecord | None
    previous_owner: str | None = None


def _case(conn: Connection, card_id: str) -> ExceptionCaseRecord | None:
    query = sa.select(cases).where(cases.c.card_id == card_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else ExceptionCaseRecord.model_validate(dict(row))


def _update(
    conn: Connection,
    case: ExceptionCaseRecord,
    alerts: list[Alert],
    now: datetime,
    **values: object,
) -> ExceptionCaseRecord:
    conn.execute(sa.update(cases).where(cases.c.id == case.id).values(**values))
    seen: set[tuple[str, str]] = set()
    stored = (
        [Alert(case.workspace_id, case.alert_channel, case.alert_ts, case.alert_event_id)]
        if case.alert_channel and case.alert_ts
        else []
    )
    for alert in [*stored, *alerts]:
        if (alert.channel_id, alert.ts) in seen:
            continue
        seen.add((alert.channel_id, alert.ts))
        enqueue_in(
            conn,
            now=now,
            workspace_id=alert.workspace_id,
            channel_id=alert.channel_id,
            kind=KIND_ALERT_UPDATE,
            card_id=case.card_id,
            event_id=alert.event_id,
            payload={"ts": alert.ts},
        )
    return case.model_copy(update=values)


def assign(
    engine: Engine, *, card_id: str, user_id: str, now: datetime, alerts: list[Alert]
) -> TriageResult:
    """The presser owns the card's open exception from now on (taking it over if need be)."""
    with engine.begin() as conn:
        case = _case(conn, card_id)
        if case is None:
            return TriageResult(NO_CASE, None)
        if case.state == CASE_OPEN and case.owner == user_id:
            return TriageResult(ALREADY_YOURS, case)
        outcome = TAKEN_OVER if case.state == CASE_OPEN and case.owner else ASSIGNED
        values: dict[str, object] = {"owner": user_id, "assigned_at": now}
        if case.state != CASE_OPEN:  # assigning a resolved case reopens it
            values |= {"state": CASE_OPEN, "reopened": case.reopened + 1, "opened_at": now}
        updated = _update(conn, case, alerts, now, **values)
        return TriageResult(outcome, updated, previous_owner=case.owner)


def resolve(
    engine: Engine, *, card_id: str, user_id: str, now: datetime, alerts: list[Alert]
) -> TriageResult:
    """The exception is dealt with; its owner (if any) is released."""
    with engine.begin() as conn:
        case = _case(conn, card_id)
        if case is None:
            return TriageResult(NO_CASE, None)
        if case.state == CASE_RESOLVED:
            return TriageResult(ALREADY_RESOLVED, case)
        updated = _update(
            conn, case, alerts, now, state=CASE_RESOLVED, resolved_by=user_id, resolved_at=now
        )
        return TriageResult(RESOLVED, updated, previous_owner=case.owner)


def reopen(
    engine: Engine, *, card_id: str, user_id: str, now: datetime, alerts: list[Alert]
) -> TriageResult:
    """A resolved exception is open again, without an owner until someone takes it."""
    with engine.begin() as conn:
        case = _case(conn, card_id)
        if case is None:
            return TriageResult(NO_CASE, None)
        if case.state == CASE_OPEN:
            return TriageResult(ALREADY_OPEN, case)
        updated = _update(
            conn,
            case,
            alerts,
            now,
            state=CASE_OPEN,
            owner=None,
            assigned_at=None,
            opened_at=now,
            reopened=case.reopened + 1,
        )
        return TriageResult(REOPENED, updated, previous_owner=case.owner)


__all__ = [
    "ALREADY_OPEN",
    "ALREADY_RESOLVED",
    "ALREADY_YOURS",
    "ASSIGNED",
    "NO_CASE",
    "REOPENED",
    "RESOLVED",
    "TAKEN_OVER",
    "Alert",
    "TriageResult",
    "assign",
    "reopen",
    "resolve",
]
