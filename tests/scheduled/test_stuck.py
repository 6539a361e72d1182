"""Stuck cards: the rules (defaults from the issue, thresholds from settings) agree between SQL
and Python, and a card past its threshold alerts once (its subscribed channels, in its thread,
and the exceptions channel), not on every run; it alerts again only in a new state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bot.scheduled.jobs import check_stuck
from bot.scheduled.stuck import criteria, default_rules, describe_duration, matching_rule
from storage.repositories.cards import get_card
from storage.repositories.stuck import stuck_cards
from tests.scheduled_support import FixedClock, make_runtime, op, outbox_rows, record, subscribe

UTC = timezone.utc
NOW = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)

# (card, operation, expected rule at NOW)
CASES = [
    ("req-old", op("req-old", "CARD_PROD_REQUESTED", NOW - 25 * H), "not_started"),
    ("req-new", op("req-new", "CARD_PROD_REQUESTED", NOW - 23 * H), None),
    ("prep-old", op("prep-old", "DATA_PREPARED", NOW - 30 * H), "not_started"),
    ("ongoing-old", op("ongoing-old", "CARD_PROD_ONGOING", NOW - 73 * H), "production_slow"),
    ("ready-new", op("ready-new", "CARD_PROD_READY", NOW - 70 * H), None),
    ("hold-old", op("hold-old", "CARD_PROD_ONHOLD", NOW - 49 * H), "on_hold"),
    (
        "ship-quiet",
        op("ship-quiet", "CARD_SHIPPED", NOW - 121 * H, shipment_status="IN_TRANSIT"),
        "shipment_quiet",
    ),
    ("ship-bare", op("ship-bare", "CARD_SHIPPED", NOW - 121 * H), "shipment_quiet"),
    (
        "ship-fresh",
        op("ship-fresh", "CARD_SHIPPED", NOW - 20 * H, shipment_status="IN_TRANSIT"),
        None,
    ),
    (
        "overdue",
        op(
            "overdue",
            "CARD_SHIPPED",
            NOW - 60 * H,
            shipment_status="IN_TRANSIT",
            eta=NOW - 49 * H,
        ),
        "overdue",
    ),
    (
        "delivered",
        op(
            "delivered",
            "CARD_SHIPPED",
            NOW - 200 * H,
            shipment_status="DELIVERED",
            eta=NOW - 300 * H,
        ),
        None,
    ),
    ("cancelled", op("cancelled", "CARD_PROD_CANCELED", NOW - 300 * H), None),
]


def test_sql_and_python_rules_agree(any_engine) -> None:
    for _, operation, _ in CASES:
        record(any_engine, operation)
    runtime = make_runtime(any_engine, FixedClock(NOW))
    rules = default_rules(runtime.settings)
    total, cards = stuck_cards(any_engine, criteria(rules, NOW))
    found = {card.card_id: card.rule for card in cards}
    expected = {card_id: rule for card_id, _, rule in CASES if rule is not None}
    assert found == expected and total == len(expected)
    for card_id, _, rule in CASES:
        card = get_card(any_engine, card_id=card_id)
        matched = matching_rule(card, rules, NOW)
        assert (matched.name if matched else None) == rule, card_id
    # Oldest first: the shipped-and-silent cards have waited longest.
    assert [c.card_id for c in cards][:2] == ["ship-bare", "ship-quiet"]


def test_thresholds_come_from_settings(engine) -> None:
    record(engine, op("req", "CARD_PROD_REQUESTED", NOW - 5 * H))
    runtime = make_runtime(engine, FixedClock(NOW), d1bot_stuck_requested_hours=4)
    _, cards = stuck_cards(engine, criteria(default_rules(runtime.settings), NOW))
    assert [c.card_id for c in cards] == ["req"]


def test_stuck_card_alerts_once_then_again_only_in_a_new_state(any_engine) -> None:
    clock = FixedClock(NOW)
    runtime = make_runtime(any_engine, clock, d1bot_stuck_check_interval_minutes=15)
    record(any_engine, op("card-1", "CARD_PROD_ONHOLD", NOW - 49 * H))
    record(any_engine, op("card-2", "CARD_PROD_REQUESTED", NOW - 2 * H))
    subscribe(any_engine, "card-1", "CTEAM", at=NOW - 50 * H)
    subscribe(any_engine, "card-1", "COPS", at=NOW - 50 * H)

    result = check_stuck(runtime)
    assert result is not None and [c.card_id for c in result.new_cards] == ["card-1"]
    notices = outbox_rows(any_engine, kind="card_notice")
    assert sorted(r["channel_id"] for r in notices) == ["COPS", "CTEAM"]
    assert {r["thread_key"] for r in notices} == {"T1:CTEAM:card-1", "T1:COPS:card-1"}
    assert "on hold for 2 days 1 h" in json.dumps(notices[0]["payload"])
    [summary] = outbox_rows(any_engine, channel_id="CEXC")
    assert summary["kind"] == "message" and "card-1" in json.dumps(summary["payload"])

    # Same period: another replica (or a second tick) does nothing at all.
    assert check_stuck(runtime) is None
    # Later runs: still stuck in the same state, no new alert.
    for _ in range(3):
        clock.advance(minutes=15)
        result = check_stuck(runtime)
        assert result is not None and result.new_cards == []
    assert len(outbox_rows(any_engine)) == 3

    # The card moves on, then gets stuck again in its new state: one new alert.
    record(any_engine, op("card-1", "CARD_PROD_ONGOING", NOW - 48 * H))
    clock.advance(minutes=15)
    assert check_stuck(runtime).new_cards == []  # moved on: in production for 2 days only
    clock.now = NOW + 25 * H
    result = check_stuck(runtime)
    assert sorted((c.card_id, c.rule) for c in result.new_cards) == [
        ("card-1", "production_slow"),
        ("card-2", "not_started"),  # requested 27 h ago by now
    ]
    assert len(outbox_rows(any_engine, kind="card_notice")) == 4


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(minutes=40), "40 min"),
        (timedelta(hours=5), "5 h"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=3, hours=2), "3 days 2 h"),
    ],
)
def test_durations_in_words(delta: timedelta, words: str) -> None:
    assert describe_duration(delta) == words
