"""Paused channels: channels the bot cannot post in until people there act (invite it back,
unarchive the channel, run `/card subscribe` again). Their outbox rows stay pending and are not
claimed (`storage.repositories.claims`) while the pause lasts, so nothing is lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.repositories.outbox import KIND_MESSAGE, _insert_row
from storage.tables import ChannelPauseRecord

pauses = ChannelPauseRecord.__table__  # type: ignore[attr-defined]


def pause_channel(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    reason: str,
    now: datetime,
    notice_channel: str | None = None,
    notice: dict[str, Any] | None = None,
) -> bool:
    """Pause the channel's delivery; True when it was not paused yet. The one notice about the
    pause (when given) is enqueued in the same transaction, so it is written exactly once."""
    try:
        with engine.begin() as conn:
            known = conn.execute(
                sa.select(pauses.c.id).where(
                    pauses.c.workspace_id == workspace_id, pauses.c.channel_id == channel_id
                )
            ).first()
            if known is not None:
                return False
            conn.execute(
                sa.insert(pauses).values(
                    workspace_id=workspace_id,
                    channel_id=channel_id,
                    reason=reason[:64],
                    paused_at=now,
                )
            )
            if notice_channel and notice is not None:
                _insert_row(
                    conn,
                    workspace_id=workspace_id,
                    channel_id=notice_channel,
                    kind=KIND_MESSAGE,
                    payload=notice,
                    now=now,
                )
            return True
    except IntegrityError:  # paused at the same moment by another replica
        return False


def resume_channel(engine: Engine, *, workspace_id: str, channel_id: str) -> str | None:
    """End the channel's pause; the reason it was paused for, or None if it was not."""
    with engine.begin() as conn:
        reason = conn.execute(
            sa.delete(pauses)
            .where(pauses.c.workspace_id == workspace_id, pauses.c.channel_id == channel_id)
            .returning(pauses.c.reason)
        ).scalar_one_or_none()
    return None if reason is None else str(reason)


def channel_pause(
    engine: Engine, *, workspace_id: str, channel_id: str
) -> ChannelPauseRecord | None:
    """The channel's pause, if it is paused (for `/card list` and App Home)."""
    with Session(engine) as session:
        return session.exec(
            select(ChannelPauseRecord).where(
                ChannelPauseRecord.workspace_id == workspace_id,
                ChannelPauseRecord.channel_id == channel_id,
            )
        ).first()


def paused_channels(engine: Engine, *, workspace_id: str | None = None) -> list[ChannelPauseRecord]:
    """Every paused channel, oldest pause first."""
    query = select(ChannelPauseRecord).order_by(col(ChannelPauseRecord.id))
    if workspace_id is not None:
        query = query.where(ChannelPauseRecord.workspace_id == workspace_id)
    with Session(engine) as session:
        return list(session.exec(query))


__all__ = ["channel_pause", "pause_channel", "paused_channels", "resume_channel"]
