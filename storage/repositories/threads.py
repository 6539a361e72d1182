"""The parent message of each card in each channel (`ThreadRecord`): later updates go to its
thread, and the parent is kept current with `chat.update`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from storage.tables import ThreadRecord

threads = ThreadRecord.__table__  # type: ignore[attr-defined]


def get_thread(
    engine: Engine, *, workspace_id: str, channel_id: str, card_id: str
) -> ThreadRecord | None:
    with Session(engine) as session:
        return session.exec(
            select(ThreadRecord).where(
                ThreadRecord.workspace_id == workspace_id,
                ThreadRecord.channel_id == channel_id,
                ThreadRecord.card_id == card_id,
            )
        ).first()


def threads_of_card(
    engine: Engine, *, card_id: str, workspace_id: str | None = None
) -> list[ThreadRecord]:
    """Every channel's parent message of a card, oldest first."""
    query = select(ThreadRecord).where(ThreadRecord.card_id == card_id)
    if workspace_id is not None:
        query = query.where(ThreadRecord.workspace_id == workspace_id)
    with Session(engine) as session:
        return list(session.exec(query.order_by(ThreadRecord.id)))  # type: ignore[arg-type]


def threads_of_cards(
    engine: Engine, *, card_ids: list[str]
) -> dict[tuple[str, str, str], ThreadRecord]:
    """The parents of many cards at once, keyed by (workspace, channel, card)."""
    found: dict[tuple[str, str, str], ThreadRecord] = {}
    unique = sorted(set(card_ids))
    with Session(engine) as session:
        for start in range(0, len(unique), 500):
            rows = session.exec(
                select(ThreadRecord).where(
                    ThreadRecord.card_id.in_(unique[start : start + 500])  # type: ignore[attr-defined]
                )
            )
            for row in rows:
                found[(row.workspace_id, row.channel_id, row.card_id)] = row
    return found


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """Where a card's thread is in a channel: what the delivery worker needs of a
    `ThreadRecord`, read through Core (a round loads up to a thousand)."""

    workspace_id: str
    channel_id: str
    card_id: str
    parent_ts: str


def threads_of_keys(
    engine: Engine, *, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], ThreadRef]:
    """The parents of these (workspace, channel, card) keys, where they exist. A delivery
    round needs the parents of its own rows only: loading every channel's parent of a card
    subscribed in a thousand channels, for each round, cost more than the posts."""
    wanted = set(keys)
    found: dict[tuple[str, str, str], ThreadRef] = {}
    by_card: dict[str, list[str]] = {}
    for _workspace, channel, card in wanted:
        by_card.setdefault(card, []).append(channel)
    columns = (threads.c.workspace_id, threads.c.channel_id, threads.c.card_id, threads.c.parent_ts)
    with engine.connect() as conn:
        for card, channels in by_card.items():
            for start in range(0, len(channels), 500):
                rows = conn.execute(
                    sa.select(*columns).where(
                        threads.c.card_id == card,
                        threads.c.channel_id.in_(channels[start : start + 500]),
                    )
                )
                for row in rows:
                    ref = ThreadRef(*row)
                    key = (ref.workspace_id, ref.channel_id, ref.card_id)
                    if key in wanted:
                        found[key] = ref
    return found


def save_thread(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    card_id: str,
    parent_ts: str,
    now: datetime,
) -> None:
    """Remember the parent just posted (replacing a parent that Slack no longer has)."""
    with engine.begin() as conn:
        upsert_thread(
            conn,
            workspace_id=workspace_id,
            channel_id=channel_id,
            card_id=card_id,
            parent_ts=parent_ts,
            now=now,
        )


def upsert_thread(
    conn: Connection,
    *,
    workspace_id: str,
    channel_id: str,
    card_id: str,
    parent_ts: str,
    now: datetime,
) -> None:
    """`save_thread` inside the caller's transaction."""
    key = (
        threads.c.workspace_id == workspace_id,
        threads.c.channel_id == channel_id,
        threads.c.card_id == card_id,
    )
    updated = conn.execute(
        sa.update(threads).where(*key).values(parent_ts=parent_ts, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(
            sa.insert(threads).values(
                workspace_id=workspace_id,
                channel_id=channel_id,
                card_id=card_id,
                parent_ts=parent_ts,
                created_at=now,
                updated_at=now,
            )
        )


def touch_thread(engine: Engine, *, thread_id: int, now: datetime) -> None:
    """The parent was brought up to date."""
    with engine.begin() as conn:
        conn.execute(sa.update(threads).where(threads.c.id == thread_id).values(updated_at=now))


def owe_parent_update(
    engine: Engine, *, workspace_id: str, channel_id: str, card_id: str, now: datetime
) -> None:
    """The parent's update was postponed (workspace budget, rate limit): due from `now`, or
    from earlier when it was due already."""
    due = threads.c.parent_update_due_at
    with engine.begin() as conn:
        conn.execute(
            sa.update(threads)
            .where(*_key(workspace_id, channel_id, card_id), sa.or_(due.is_(None), due > now))
            .values(parent_update_due_at=now)
        )


def take_owed_parents(
    engine: Engine, *, now: datetime, lease_until: datetime, limit: int
) -> list[ThreadRecord]:
    """Up to `limit` parents whose update is due, longest due first, each leased to this
    caller until `lease_until` (its due time moves there): other replicas skip it meanwhile,
    and if this caller stops before updating it, it is due again then. `parent_update_made`
    ends the lease."""
    due = threads.c.parent_update_due_at
    # Read without the write lock: every worker asks each second, and most often nothing is due.
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        candidates = conn.execute(
            sa.select(threads).where(due <= now).order_by(due, threads.c.id).limit(limit)
        ).all()
    taken = []
    if candidates:
        with engine.begin() as conn:
            for row in candidates:
                leased = conn.execute(
                    sa.update(threads)
                    .where(threads.c.id == row.id, due == row.parent_update_due_at)
                    .values(parent_update_due_at=lease_until)
                ).rowcount
                if leased:
                    record = ThreadRecord(**row._mapping)
                    record.parent_update_due_at = lease_until
                    taken.append(record)
    return taken


def parent_update_made(engine: Engine, *, thread_id: int, leased_until: datetime) -> None:
    """The leased parent was updated (or its update given up): nothing is owed any more,
    unless it was owed again meanwhile."""
    due = threads.c.parent_update_due_at
    with engine.begin() as conn:
        conn.execute(
            sa.update(threads)
            .where(threads.c.id == thread_id, due == leased_until)
            .values(parent_update_due_at=None)
        )


def _key(workspace_id: str, channel_id: str, card_id: str) -> tuple[Any, ...]:
    return (
        threads.c.workspace_id == workspace_id,
        threads.c.channel_id == channel_id,
        threads.c.card_id == card_id,
    )


def forget_thread(engine: Engine, *, workspace_id: str, channel_id: str, card_id: str) -> None:
    """The parent is gone from Slack (deleted): the next update posts a new one."""
    with engine.begin() as conn:
        conn.execute(
            sa.delete(threads).where(
                threads.c.workspace_id == workspace_id,
                threads.c.channel_id == channel_id,
                threads.c.card_id == card_id,
            )
        )


__all__ = [
    "forget_thread",
    "get_thread",
    "owe_parent_update",
    "parent_update_made",
    "save_thread",
    "take_owed_parents",
    "threads_of_card",
    "threads_of_cards",
    "threads_of_keys",
    "touch_thread",
    "upsert_thread",
]
