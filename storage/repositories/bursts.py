"""Burst coalescing: when a batch file changes many cards at once, a channel gets one summary
instead of a message per card (Slack allows about one message a second per channel). The
exceptions channel too: a burst of alerts becomes one summary, so that an exception outside the
burst is not queued behind a hundred alerts.

The summary is stored as data (`KIND_CARD_BURST`, payload `{"card_ids": [...]}`); the delivery
worker renders it from the cards' states when it posts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.repositories.fanout import expand_in
from storage.repositories.outbox import (
    COALESCED,
    KIND_CARD_BURST,
    KIND_CARD_EVENT,
    KIND_EXCEPTION_ALERT,
    _insert_row,
    _lease_free,
    _reading,
    outbox,
)
from storage.tables import OUTBOX_PENDING, OUTBOX_SENT


@dataclass(frozen=True)
class Burst:
    """Many distinct cards pending for one channel at once."""

    workspace_id: str
    channel_id: str
    cards: int


# What a burst folds: card updates, and the exceptions channel's alerts.
_FOLDED = (KIND_CARD_EVENT, KIND_EXCEPTION_ALERT)


def find_bursts(engine: Engine, *, threshold: int, now: datetime) -> list[Burst]:
    """Channels with more than `threshold` distinct cards in unclaimed pending card events or
    exception alerts."""
    query = (
        sa.select(
            outbox.c.workspace_id,
            outbox.c.channel_id,
            sa.func.count(sa.distinct(outbox.c.card_id)),
        )
        .where(
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.kind.in_(_FOLDED),
            _lease_free(now),
        )
        .group_by(outbox.c.workspace_id, outbox.c.channel_id)
        .having(sa.func.count(sa.distinct(outbox.c.card_id)) > threshold)
    )
    with engine.connect() as conn:
        rows = _reading(conn).execute(query).all()
    return [Burst(r[0], r[1], int(r[2])) for r in rows]


def coalesce_burst(
    engine: Engine, *, workspace_id: str, channel_id: str, threshold: int, now: datetime
) -> int | None:
    """In one transaction: mark the channel's unclaimed pending card events and alerts sent as
    coalesced, and enqueue one summary of their cards. Returns the summary's id, or None when
    the burst had already shrunk to `threshold` cards or fewer."""
    rows_query = (
        sa.select(outbox.c.id, outbox.c.card_id)
        .where(
            outbox.c.workspace_id == workspace_id,
            outbox.c.channel_id == channel_id,
            outbox.c.state == OUTBOX_PENDING,
            outbox.c.kind.in_(_FOLDED),
            _lease_free(now),
        )
        .order_by(outbox.c.id)
    )
    with engine.begin() as conn:
        expand_in(conn, limit=None, wait=True)  # owed card events join the burst
        if conn.dialect.name == "postgresql":
            rows_query = rows_query.with_for_update(skip_locked=True)
        rows = conn.execute(rows_query).all()
        card_ids = list(dict.fromkeys(r.card_id for r in rows if r.card_id))
        if len(card_ids) <= threshold:
            return None
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_([r.id for r in rows]))
            .values(state=OUTBOX_SENT, sent_at=now, last_error=COALESCED)
        )
        return _insert_row(
            conn,
            workspace_id=workspace_id,
            channel_id=channel_id,
            kind=KIND_CARD_BURST,
            payload={"card_ids": card_ids},
            now=now,
        )


__all__ = ["Burst", "coalesce_burst", "find_bursts"]
