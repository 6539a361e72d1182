"""Channels' own digest schedules (`DigestScheduleRecord`): they survive restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.repositories.jobs import insert_ignoring_conflict
from storage.tables import DigestScheduleRecord

SCHEDULES = DigestScheduleRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredSchedule:
    """A channel's schedule as stored (enabled=False: the channel turned its digest off)."""

    workspace_id: str
    channel_id: str
    time_of_day: str
    timezone: str
    enabled: bool
    updated_by: str
    updated_at: datetime


def _row(row: sa.Row) -> StoredSchedule:
    m = row._mapping
    return StoredSchedule(
        workspace_id=m["workspace_id"],
        channel_id=m["channel_id"],
        time_of_day=m["time_of_day"],
        timezone=m["timezone"],
        enabled=bool(m["enabled"]),
        updated_by=m["updated_by"],
        updated_at=m["updated_at"],
    )


def set_schedule(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    time_of_day: str,
    timezone: str,
    updated_by: str,
    now: datetime,
    enabled: bool = True,
) -> StoredSchedule:
    """Create or replace a channel's schedule (one row per workspace and channel)."""
    values = {
        "time_of_day": time_of_day,
        "timezone": timezone,
        "enabled": enabled,
        "updated_by": updated_by,
        "updated_at": now,
    }
    with engine.begin() as conn:
        inserted = insert_ignoring_conflict(
            conn,
            SCHEDULES,
            {"workspace_id": workspace_id, "channel_id": channel_id, **values},
            conflict_on=["workspace_id", "channel_id"],
        )
        if not inserted:
            conn.execute(
                sa.update(SCHEDULES)
                .where(
                    SCHEDULES.c.workspace_id == workspace_id,
                    SCHEDULES.c.channel_id == channel_id,
                )
                .values(**values)
            )
    return StoredSchedule(
        workspace_id=workspace_id,
        channel_id=channel_id,
        **values,  # type: ignore[arg-type]
    )


def disable_schedule(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    updated_by: str,
    now: datetime,
    default_time: str,
    default_timezone: str,
) -> StoredSchedule:
    """Turn a channel's digest off (kept as a disabled row, so a default channel stays off)."""
    existing = get_schedule(engine, workspace_id=workspace_id, channel_id=channel_id)
    return set_schedule(
        engine,
        workspace_id=workspace_id,
        channel_id=channel_id,
        time_of_day=existing.time_of_day if existing else default_time,
        timezone=existing.timezone if existing else default_timezone,
        updated_by=updated_by,
        now=now,
        enabled=False,
    )


def get_schedule(engine: Engine, *, workspace_id: str, channel_id: str) -> StoredSchedule | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(SCHEDULES).where(
                SCHEDULES.c.workspace_id == workspace_id, SCHEDULES.c.channel_id == channel_id
            )
        ).first()
    return _row(row) if row is not None else None


def list_schedules(engine: Engine) -> list[StoredSchedule]:
    """Every stored schedule, enabled or not."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(SCHEDULES).order_by(SCHEDULES.c.id)).all()
    return [_row(row) for row in rows]


__all__ = ["StoredSchedule", "disable_schedule", "get_schedule", "list_schedules", "set_schedule"]
