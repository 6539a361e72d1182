"""Channel subscriptions to cards: subscribe (idempotent), unsubscribe (logged with a reason),
a channel's list with each card's current status, and the subscriptions of a card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.columns import utcnow
from storage.tables import (
    FILTER_ALL,
    FILTER_EXCEPTIONS,
    CardRecord,
    SubscriptionRecord,
    SubscriptionRemovalRecord,
)

FILTERS = (FILTER_ALL, FILTER_EXCEPTIONS)
CREATED = "created"
UPDATED = "updated"  # existed with another filter; the filter was changed
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class SubscribeResult:
    subscription: SubscriptionRecord
    outcome: str  # CREATED | UPDATED | UNCHANGED


@dataclass(frozen=True)
class ChannelSubscription:
    """A subscription of a channel, with its card's current status (None before any event)."""

    subscription: SubscriptionRecord
    status: str | None
    shipment_status: str | None
    is_exception: bool


def _find(
    session: Session, *, workspace_id: str, channel_id: str, card_id: str
) -> SubscriptionRecord | None:
    return session.exec(
        select(SubscriptionRecord).where(
            SubscriptionRecord.workspace_id == workspace_id,
            SubscriptionRecord.channel_id == channel_id,
            SubscriptionRecord.card_id == card_id,
        )
    ).first()


def subscribe(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    card_id: str,
    created_by: str,
    filter: str = FILTER_ALL,
    now: datetime | None = None,
) -> SubscribeResult:
    """Make `channel_id` follow `card_id`. Idempotent: unique per workspace+channel+card; a
    second subscribe with another filter changes the filter."""
    if filter not in FILTERS:
        raise ValueError(f"unknown subscription filter {filter!r}")
    for _attempt in range(2):
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                existing = _find(
                    session, workspace_id=workspace_id, channel_id=channel_id, card_id=card_id
                )
                if existing is not None:
                    if existing.filter == filter:
                        return SubscribeResult(existing, UNCHANGED)
                    existing.filter = filter
                    session.add(existing)
                    session.flush()
                    return SubscribeResult(existing, UPDATED)
                record = SubscriptionRecord(
                    workspace_id=workspace_id,
                    channel_id=channel_id,
                    card_id=card_id,
                    filter=filter,
                    created_by=created_by,
                    created_at=now or utcnow(),
                )
                session.add(record)
                session.flush()
                return SubscribeResult(record, CREATED)
        except IntegrityError:
            continue  # a concurrent subscribe won the race: read it on the next attempt
    raise RuntimeError("subscription could not be created or read")


def unsubscribe(
    engine: Engine,
    *,
    workspace_id: str,
    channel_id: str,
    card_id: str,
    removed_by: str,
    reason: str,
    now: datetime | None = None,
) -> SubscriptionRemovalRecord | None:
    """Remove the subscription and record who removed it and why; None when there was none."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        existing = _find(session, workspace_id=workspace_id, channel_id=channel_id, card_id=card_id)
        if existing is None:
            return None
        removal = SubscriptionRemovalRecord(
            workspace_id=existing.workspace_id,
            channel_id=existing.channel_id,
            card_id=existing.card_id,
            filter=existing.filter,
            created_by=existing.created_by,
            created_at=existing.created_at,
            removed_by=removed_by,
            removed_at=now or utcnow(),
            reason=reason[:255],
        )
        session.add(removal)
        session.delete(existing)
        session.flush()
        return removal


def list_for_channel(
    engine: Engine, *, workspace_id: str, channel_id: str
) -> list[ChannelSubscription]:
    """The channel's subscriptions, oldest first, each with its card's current status."""
    query = (
        select(SubscriptionRecord, CardRecord)
        .join(CardRecord, col(CardRecord.card_id) == col(SubscriptionRecord.card_id), isouter=True)
        .where(
            SubscriptionRecord.workspace_id == workspace_id,
            SubscriptionRecord.channel_id == channel_id,
        )
        .order_by(col(SubscriptionRecord.created_at), col(SubscriptionRecord.id))
    )
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(query).all()
    return [
        ChannelSubscription(
            subscription=sub,
            status=card.status if card else None,
            shipment_status=card.shipment_status if card else None,
            is_exception=bool(card.is_exception) if card else False,
        )
        for sub, card in rows
    ]


def subscriptions_of_card(
    engine: Engine, *, card_id: str, workspace_id: str | None = None
) -> list[SubscriptionRecord]:
    """Every channel following `card_id` (in one workspace when given)."""
    query = select(SubscriptionRecord).where(SubscriptionRecord.card_id == card_id)
    if workspace_id is not None:
        query = query.where(SubscriptionRecord.workspace_id == workspace_id)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(query.order_by(col(SubscriptionRecord.id))).all())


def removals_of_card(engine: Engine, *, card_id: str) -> list[SubscriptionRemovalRecord]:
    """The removal log of a card's subscriptions, oldest first."""
    query = (
        select(SubscriptionRemovalRecord)
        .where(SubscriptionRemovalRecord.card_id == card_id)
        .order_by(col(SubscriptionRemovalRecord.id))
    )
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(query).all())
