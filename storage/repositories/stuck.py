"""Stuck cards: which cards sit too long in a stage (SQL over indexed columns), and the alerts
already raised for them (`StuckAlertRecord`: once per card, rule and state).

The rules themselves (stages, thresholds) live in `bot/scheduled/stuck.py`; they reach this
module as plain `StuckCriterion` values with the cut-off time already computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from d1.semantics import FINAL_STATUSES
from storage.repositories.fanout import expand_in
from storage.repositories.jobs import insert_ignoring_conflict
from storage.tables import (
    OUTBOX_PENDING,
    CardRecord,
    OutboxRecord,
    StuckAlertRecord,
    SubscriptionRecord,
)

CARDS = CardRecord.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxRecord.__table__  # type: ignore[attr-defined]
ALERTS = StuckAlertRecord.__table__  # type: ignore[attr-defined]
SUBSCRIPTIONS = SubscriptionRecord.__table__  # type: ignore[attr-defined]

# Which time a rule measures from.
CLOCK_STATE = "state"  # when the card entered its current status
CLOCK_SHIPMENT = "shipment"  # the last shipment update (else when it entered its status)
CLOCK_ETA = "eta"  # the carrier's estimated delivery date


@dataclass(frozen=True)
class StuckCriterion:
    """One rule as SQL sees it: cards matching the statuses whose clock is older than `before`.

    `statuses` filters `cards.status`; `shipment_statuses` filters `cards.shipment_status`
    (indexed, so rules about shipped cards use it); `no_shipment` matches cards with no shipment
    status at all among `statuses`. Lower `priority` wins when a card matches several rules."""

    rule: str
    priority: int
    clock: str
    before: datetime
    statuses: tuple[str, ...] = ()
    shipment_statuses: tuple[str, ...] = ()
    no_shipment: bool = False


@dataclass(frozen=True)
class StuckCard:
    """A card that matched a rule, with the time it has been waiting since."""

    card_id: str
    rule: str
    status: str | None
    shipment_status: str | None
    since: datetime | None
    state_event_time: datetime | None
    carrier: str | None
    shipment_message: str | None

    @property
    def state_key(self) -> str:
        """The card's state as far as alert-once goes: a new state may alert again."""
        when = self.state_event_time.isoformat() if self.state_event_time else "-"
        key = f"{self.status or '-'}|{self.shipment_status or '-'}|{when}"
        if len(key) > 160:
            key = key[:95] + "#" + hashlib.sha256(key.encode()).hexdigest()[:64]
        return key


def _clock(name: str) -> Any:
    state = sa.func.coalesce(CARDS.c.state_since, CARDS.c.state_event_time)
    if name == CLOCK_STATE:
        return state
    if name == CLOCK_SHIPMENT:
        return sa.func.coalesce(CARDS.c.last_shipment_update_at, state)
    if name == CLOCK_ETA:
        return CARDS.c.estimated_delivery_at
    raise ValueError(f"unknown stuck clock {name!r}")


def _selector(criterion: StuckCriterion) -> tuple[str, tuple[str, ...]]:
    """Which index a criterion reads through: criteria sharing one are read in one scan."""
    if criterion.no_shipment:
        return ("no_shipment", ())
    if criterion.shipment_statuses:
        return ("shipment", criterion.shipment_statuses)
    return ("status", ())


def _matches(criterion: StuckCriterion) -> Any:
    condition = [_clock(criterion.clock) < criterion.before]
    if criterion.statuses and not criterion.shipment_statuses:
        condition.append(CARDS.c.status.in_(criterion.statuses))
    if criterion.shipment_statuses and criterion.statuses:
        condition.append(CARDS.c.status.in_(criterion.statuses))
    return sa.and_(*condition)


def _group_select(selector: tuple[str, tuple[str, ...]], group: list[StuckCriterion]) -> Any:
    """One scan for the criteria of a selector; each row labelled with its best rule."""
    kind, shipment_statuses = selector
    group = sorted(group, key=lambda c: c.priority)
    where: list[Any] = [sa.or_(*(_matches(c) for c in group))]
    if kind == "no_shipment":
        where.append(CARDS.c.shipment_status.is_(None))
        # coalesce(): read through the shipment status index (few cards have none), not the
        # status index (most cards are CARD_SHIPPED).
        statuses = sorted({s for c in group for s in c.statuses})
        where.append(sa.func.coalesce(CARDS.c.status, "").in_(statuses))
    elif kind == "shipment":
        where.append(CARDS.c.shipment_status.in_(shipment_statuses))
        where.append(sa.or_(CARDS.c.status.is_(None), CARDS.c.status.not_in(FINAL_STATUSES)))
    else:
        where.append(CARDS.c.status.in_(sorted({s for c in group for s in c.statuses})))

    return sa.select(
        CARDS.c.card_id,
        sa.case(*((_matches(c), c.rule) for c in group)).label("rule"),
        sa.case(*((_matches(c), c.priority) for c in group)).label("priority"),
        CARDS.c.status,
        CARDS.c.shipment_status,
        sa.case(*((_matches(c), _clock(c.clock)) for c in group)).label("since"),
        CARDS.c.state_event_time,
        CARDS.c.carrier,
        CARDS.c.shipment_message,
    ).where(*where)


def _ranked(criteria: Sequence[StuckCriterion]) -> sa.Subquery:
    """One row per stuck card (its highest-priority rule)."""
    groups: dict[tuple[str, tuple[str, ...]], list[StuckCriterion]] = {}
    for criterion in criteria:
        groups.setdefault(_selector(criterion), []).append(criterion)
    selects = [_group_select(selector, group) for selector, group in groups.items()]
    union = (selects[0] if len(selects) == 1 else sa.union_all(*selects)).subquery("matches")
    rank = (
        sa.func.row_number()
        .over(partition_by=union.c.card_id, order_by=union.c.priority)
        .label("rn")
    )
    return sa.select(*union.c, rank).subquery("ranked")


def _card(m: Any) -> StuckCard:
    since_type = CARDS.c.state_since.type
    return StuckCard(
        card_id=m["card_id"],
        rule=m["rule"],
        status=m["status"],
        shipment_status=m["shipment_status"],
        since=_aware(m["since"], since_type),
        state_event_time=m["state_event_time"],
        carrier=m["carrier"],
        shipment_message=m["shipment_message"],
    )


def _aware(value: Any, column_type: Any) -> datetime | None:
    # The clock is an expression (coalesce): bring its value through the column's type.
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return column_type.process_result_value(value, None)


def stuck_cards_in(
    conn: Connection, criteria: Sequence[StuckCriterion], *, limit: int | None = None
) -> tuple[int, list[StuckCard]]:
    """(how many cards are stuck, the `limit` oldest of them, oldest first)."""
    if not criteria:
        return 0, []
    ranked = _ranked(criteria)
    stuck = sa.select(ranked, sa.func.count().over().label("total")).where(ranked.c.rn == 1)
    query = stuck.order_by(ranked.c.since, ranked.c.card_id)
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    total = rows[0].total if rows else 0
    return int(total), [_card(row._mapping) for row in rows]


def stuck_cards(
    engine: Engine, criteria: Sequence[StuckCriterion], *, limit: int | None = None
) -> tuple[int, list[StuckCard]]:
    with engine.connect() as conn:
        return stuck_cards_in(conn, criteria, limit=limit)


@dataclass(frozen=True)
class StuckAlertResult:
    """What one check raised: the newly stuck cards and the outbox rows written for them."""

    new_cards: list[StuckCard]
    enqueued: int


def raise_stuck_alerts(
    engine: Engine,
    cards: Sequence[StuckCard],
    *,
    now: datetime,
    card_payload: Callable[[StuckCard], dict[str, Any]],
    exceptions_channel: str | None,
    exceptions_workspace_id: str,
    exceptions_payload: Callable[[list[StuckCard]], dict[str, Any]] | None = None,
) -> StuckAlertResult:
    """In one transaction: remember each card's alert (once per card, rule and state), and for
    the cards not alerted before enqueue a `card_notice` to every channel subscribed to them and
    one `message` to the exceptions channel listing them."""
    with engine.begin() as conn:
        new_cards = [
            card
            for card in cards
            if insert_ignoring_conflict(
                conn,
                ALERTS,
                {
                    "card_id": card.card_id,
                    "rule": card.rule,
                    "state_key": card.state_key,
                    "raised_at": now,
                },
                conflict_on=["card_id", "rule", "state_key"],
            )
        ]
        if not new_cards:
            return StuckAlertResult(new_cards=[], enqueued=0)
        by_id = {card.card_id: card for card in new_cards}
        rows: list[dict[str, Any]] = []
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            subs = conn.execute(
                sa.select(
                    SUBSCRIPTIONS.c.id,
                    SUBSCRIPTIONS.c.workspace_id,
                    SUBSCRIPTIONS.c.channel_id,
                    SUBSCRIPTIONS.c.card_id,
                )
                .where(SUBSCRIPTIONS.c.card_id.in_(ids[start : start + 500]))
                .order_by(SUBSCRIPTIONS.c.id)
            ).all()
            for sub in subs:
                card = by_id[sub.card_id]
                rows.append(
                    outbox_row(
                        now=now,
                        workspace_id=sub.workspace_id,
                        channel_id=sub.channel_id,
                        kind="card_notice",
                        card_id=card.card_id,
                        subscription_id=sub.id,
                        thread_key=f"{sub.workspace_id}:{sub.channel_id}:{card.card_id}",
                        payload=card_payload(card),
                    )
                )
        if exceptions_channel and exceptions_payload is not None:
            rows.append(
                outbox_row(
                    now=now,
                    workspace_id=exceptions_workspace_id,
                    channel_id=exceptions_channel,
                    kind="message",
                    payload=exceptions_payload(new_cards),
                )
            )
        if rows:
            # Card events still waiting as fan-out markers go first: a notice never overtakes
            # them in a card's thread.
            expand_in(conn, limit=None, wait=True)
            conn.execute(sa.insert(OUTBOX), rows)
    return StuckAlertResult(new_cards=new_cards, enqueued=len(rows))


def outbox_row(
    *,
    now: datetime,
    workspace_id: str,
    channel_id: str,
    kind: str,
    payload: dict[str, Any],
    card_id: str | None = None,
    subscription_id: int | None = None,
    thread_key: str | None = None,
) -> dict[str, Any]:
    """The values of a new pending `OutboxRecord` (for an executemany insert)."""
    return {
        "workspace_id": workspace_id,
        "channel_id": channel_id,
        "kind": kind,
        "card_id": card_id,
        "event_id": None,
        "subscription_id": subscription_id,
        "thread_key": thread_key,
        "payload": payload,
        "state": OUTBOX_PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


__all__ = [
    "CLOCK_ETA",
    "CLOCK_SHIPMENT",
    "CLOCK_STATE",
    "StuckAlertResult",
    "StuckCard",
    "StuckCriterion",
    "outbox_row",
    "raise_stuck_alerts",
    "stuck_cards",
    "stuck_cards_in",
]
