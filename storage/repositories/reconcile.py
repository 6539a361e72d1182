"""Reads for reconciliation with D1: which subscribed, unfinished cards went quiet, and what our
projection says about a card. Each quiet card is claimed once per quiet period (a `job_runs` row
named after the card), so replicas never ask D1 about the same card twice in a period."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from d1.semantics import FINAL_SHIPMENT_STATUSES, FINAL_STATUSES
from storage.repositories.jobs import JOB_RUNS, claim_run_in
from storage.tables import CardRecord, SubscriptionRecord

CARDS = CardRecord.__table__  # type: ignore[attr-defined]
SUBSCRIPTIONS = SubscriptionRecord.__table__  # type: ignore[attr-defined]
CARD_JOB_PREFIX = "reconcile-card:"


def card_job_name(card_id: str) -> str:
    return CARD_JOB_PREFIX + card_id


def claim_quiet_cards(
    engine: Engine,
    *,
    quiet_before: datetime,
    period_start: datetime,
    instance: str,
    now: datetime,
    limit: int,
) -> list[str]:
    """Subscribed cards not in a final state, with no event received since `quiet_before`,
    not yet asked about in the period starting at `period_start`; claimed for this period,
    quietest first."""
    job_name = sa.literal(CARD_JOB_PREFIX) + CARDS.c.card_id
    asked = (
        sa.select(sa.literal(1))
        .where(JOB_RUNS.c.job_name == job_name, JOB_RUNS.c.scheduled_for == period_start)
        .exists()
    )
    subscribed = sa.select(sa.literal(1)).where(SUBSCRIPTIONS.c.card_id == CARDS.c.card_id).exists()
    query = (
        sa.select(CARDS.c.card_id)
        .where(
            CARDS.c.last_seen_at < quiet_before,
            sa.or_(CARDS.c.status.is_(None), CARDS.c.status.not_in(FINAL_STATUSES)),
            sa.or_(
                CARDS.c.shipment_status.is_(None),
                CARDS.c.shipment_status.not_in(FINAL_SHIPMENT_STATUSES),
            ),
            subscribed,
            ~asked,
        )
        .order_by(CARDS.c.last_seen_at, CARDS.c.card_id)
        .limit(limit)
    )
    with engine.begin() as conn:
        candidates = list(conn.execute(query).scalars())
        return [
            card_id
            for card_id in candidates
            if claim_run_in(
                conn,
                job_name=card_job_name(card_id),
                scheduled_for=period_start,
                instance=instance,
                now=now,
            )
        ]


def projections(engine: Engine, card_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Our current (status, shipment status) of each known card."""
    found: dict[str, tuple[str | None, str | None]] = {}
    with engine.connect() as conn:
        for start in range(0, len(card_ids), 500):
            rows = conn.execute(
                sa.select(CARDS.c.card_id, CARDS.c.status, CARDS.c.shipment_status).where(
                    CARDS.c.card_id.in_(card_ids[start : start + 500])
                )
            )
            for row in rows:
                found[row.card_id] = (row.status, row.shipment_status)
    return found


def release_claims(engine: Engine, *, card_ids: list[str], period_start: datetime) -> None:
    """Give back the period's claims of cards that were not asked about after all (D1 down),
    so that the next run tries them again."""
    if not card_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.delete(JOB_RUNS).where(
                JOB_RUNS.c.job_name.in_([card_job_name(c) for c in card_ids]),
                JOB_RUNS.c.scheduled_for == period_start,
            )
        )


__all__ = ["card_job_name", "claim_quiet_cards", "projections", "release_claims"]
