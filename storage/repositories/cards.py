"""Reading cards and their history (the projection written by `storage.repositories.intake`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.tables import CardRecord, EventRecord


def get_card(engine: Engine, *, card_id: str) -> CardRecord | None:
    """A card's current state, or None when we never heard of it."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(CardRecord, card_id)


def cards_by_ids(engine: Engine, *, card_ids: Iterable[str]) -> dict[str, CardRecord]:
    """The known cards among `card_ids`, keyed by id (unknown ids are absent)."""
    ids = sorted(set(card_ids))
    if not ids:
        return {}
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(select(CardRecord).where(col(CardRecord.card_id).in_(ids))).all()
        return {row.card_id: row for row in rows}


def events_of_card(
    engine: Engine, *, card_id: str, limit: int | None = None, newest_first: bool = False
) -> list[EventRecord]:
    """A card's history by event time (index ix_events_card_time); ties by arrival."""
    order = (
        (col(EventRecord.event_time).desc(), col(EventRecord.id).desc())
        if newest_first
        else (col(EventRecord.event_time), col(EventRecord.id))
    )
    query = select(EventRecord).where(EventRecord.card_id == card_id).order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(query).all())


def get_event(engine: Engine, *, event_id: int) -> EventRecord | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(EventRecord, event_id)


def count_events(engine: Engine, *, card_id: str | None = None) -> int:
    """How many events are stored (for one card, or in all)."""
    query = select(func.count()).select_from(EventRecord)
    if card_id is not None:
        query = query.where(EventRecord.card_id == card_id)
    with Session(engine) as session:
        return int(session.exec(query).one())


def events_by_ids(engine: Engine, *, ids: list[int]) -> dict[int, EventRecord]:
    """Many events at once (the rows of one delivery round often share a few events)."""
    unique = sorted(set(ids))
    found: dict[int, EventRecord] = {}
    with Session(engine) as session:
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for event in session.exec(select(EventRecord).where(col(EventRecord.id).in_(chunk))):
                assert event.id is not None
                found[event.id] = event
    return found


__all__ = [
    "cards_by_ids",
    "count_events",
    "events_by_ids",
    "events_of_card",
    "get_card",
    "get_event",
]
