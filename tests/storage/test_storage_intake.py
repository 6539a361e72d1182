"""The projection and fan-out of `record_operations`, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from d1.models import Operation, parse_operations
from storage.repositories.cards import count_events, events_of_card, get_card
from storage.repositories.fanout import expand_all
from storage.repositories.intake import (
    IntakeRequest,
    IntakeResult,
    record_operations,
    record_requests,
)
from storage.tables import CardRecord, EventRecord, OutboxRecord, SubscriptionRecord
from tests.spec_examples import notification_examples

NOW = datetime(2026, 5, 22, 15, 0, tzinfo=timezone.utc)
CARD = "card-1"


def produce(status: str, minute: int, *, card: str = CARD, op_status: str = "SUCCESSFUL") -> dict:
    at = (datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc) + timedelta(minutes=minute)).isoformat()
    return {
        "operationId": f"op-{card}",
        "operation": "PRODUCE",
        "status": op_status,
        "cardId": card,
        "startTime": "2026-05-01T07:00:00Z",
        "endTime": at,
        "details": {"status": status},
    }


def shipment(ship_status: str, minute: int, *, card: str = CARD, message: str = "m") -> dict:
    at = (datetime(2026, 5, 2, 8, 0, tzinfo=timezone.utc) + timedelta(minutes=minute)).isoformat()
    return {
        "operationId": f"track-{card}",
        "operation": "STANDALONE_TRACKING",
        "status": "SUCCESSFUL",
        "cardId": card,
        "timestamp": at,
        "details": {
            "trackingType": "SHIPMENT",
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "fedex",
                "trackingNumber": "1234567890",
                "status": ship_status,
                "message": message,
                "lastUpdatedAt": at,
                "estimatedDeliveryDate": "2026-05-24T00:00:00Z",
            },
        },
    }


def record(engine: Engine, *bodies: dict, exceptions_channel: str | None = None) -> IntakeResult:
    ops: list[Operation] = []
    for body in bodies:
        ops += parse_operations(copy.deepcopy(body))
    return record_operations(
        engine, ops, received_at=NOW, workspace_id="T1", exceptions_channel=exceptions_channel
    )


def subscribe(engine: Engine, channel: str, *, card: str = CARD, filter: str = "all") -> None:
    with Session(engine) as s, s.begin():
        s.add(
            SubscriptionRecord(
                workspace_id="T1", channel_id=channel, card_id=card, filter=filter, created_by="U1"
            )
        )


def outbox_rows(engine: Engine) -> list[OutboxRecord]:
    """The outbox once the delivery worker has expanded intake's fan-out markers."""
    expand_all(engine)
    with Session(engine) as s:
        return list(s.exec(select(OutboxRecord).order_by(OutboxRecord.id)).all())


def test_every_seed_example_is_stored(any_engine: Engine) -> None:
    examples = notification_examples()
    assert len(examples) == 4
    result = record(any_engine, *examples)
    # PRODUCTION and RETURN examples differ; SHIPMENT pending and update are distinct events.
    assert len(result.new_event_ids) == 4 and result.duplicates == 0
    card = get_card(any_engine, card_id="c-9f8e7d6c5b4a")
    assert card is not None
    assert card.status == "CARD_RETURNED" and card.is_exception
    assert card.shipment_status == "IN_TRANSIT"  # the return keeps the last shipment snapshot
    assert card.carrier == "fedex" and card.tracking_number == "1234567890"
    assert card.estimated_delivery_at == datetime(2026, 5, 24, tzinfo=timezone.utc)
    assert card.issuer_id == "issuer-001"


def test_same_request_three_times_is_one_event(any_engine: Engine) -> None:
    body = produce("CARD_PROD_ONGOING", 1)
    results = [record(any_engine, body) for _ in range(3)]
    assert [len(r.new_event_ids) for r in results] == [1, 0, 0]
    assert [r.duplicates for r in results] == [0, 1, 1]
    assert count_events(any_engine) == 1


def test_duplicates_inside_one_bulk_request(any_engine: Engine) -> None:
    body = produce("CARD_PROD_ONGOING", 1)
    result = record(any_engine, {"operations": [body, body, produce("CARD_PROD_DONE", 2)]})
    assert len(result.new_event_ids) == 2 and result.duplicates == 1


def test_shipment_pending_then_successful_updates_are_distinct(any_engine: Engine) -> None:
    pending = {
        "operationId": "track-1",
        "operation": "STANDALONE_TRACKING",
        "status": "PENDING",
        "cardId": CARD,
        "timestamp": "2026-05-02T07:00:00Z",
        "details": {"trackingType": "SHIPMENT", "status": "CARD_SHIPPED"},
    }
    updates = [shipment(s, i) for i, s in enumerate(["INFO_RECEIVED", "IN_TRANSIT", "DELIVERED"])]
    for u in updates:
        u["operationId"] = "track-1"
    record(any_engine, pending, *updates, *updates)
    history = events_of_card(any_engine, card_id=CARD)
    assert [e.operation_status for e in history] == ["PENDING"] + ["SUCCESSFUL"] * 3
    assert [e.shipment_status for e in history] == [
        None,
        "INFO_RECEIVED",
        "IN_TRANSIT",
        "DELIVERED",
    ]
    card = get_card(any_engine, card_id=CARD)
    assert card is not None and card.shipment_status == "DELIVERED"
    assert card.delivered_at == datetime(2026, 5, 2, 8, 2, tzinfo=timezone.utc)
    assert card.last_shipment_update_at == card.delivered_at


def test_out_of_order_never_moves_the_card_back(any_engine: Engine) -> None:
    subscribe(any_engine, "C1")
    first = record(any_engine, produce("CARD_SHIPPED", 10))
    late = record(any_engine, produce("CARD_PROD_ONGOING", 5))
    card = get_card(any_engine, card_id=CARD)
    assert card is not None and card.status == "CARD_SHIPPED"
    history = events_of_card(any_engine, card_id=CARD)
    assert [(e.details_status, e.became_current) for e in history] == [
        ("CARD_PROD_ONGOING", False),
        ("CARD_SHIPPED", True),
    ]
    # Only the event that became current is fanned out.
    assert first.enqueued == 1 and late.enqueued == 0
    assert first.gap_card_ids == [CARD] and late.gap_card_ids == []


def test_ties_go_to_the_later_lifecycle_stage(any_engine: Engine) -> None:
    record(any_engine, produce("CARD_PROD_DONE", 5))
    record(any_engine, produce("CARD_PROD_ONGOING", 5))
    card = get_card(any_engine, card_id=CARD)
    assert card is not None and card.status == "CARD_PROD_DONE"


def test_fan_out_respects_filters_and_exceptions_channel(any_engine: Engine) -> None:
    subscribe(any_engine, "CALL")
    subscribe(any_engine, "CEXC", filter="exceptions")
    subscribe(any_engine, "COTHER", card="other-card")
    ok = record(any_engine, produce("CARD_PROD_ONGOING", 1), exceptions_channel="CALERT")
    bad = record(any_engine, produce("CARD_PROD_ONHOLD", 2), exceptions_channel="CALERT")
    assert ok.enqueued == 1 and bad.enqueued == 3
    rows = outbox_rows(any_engine)
    got = [(r.kind, r.channel_id, r.thread_key, r.event_id) for r in rows]
    ok_id, bad_id = ok.new_event_ids[0], bad.new_event_ids[0]
    assert got[0] == ("card_event", "CALL", f"T1:CALL:{CARD}", ok_id)
    assert sorted(got[1:]) == [
        ("card_event", "CALL", f"T1:CALL:{CARD}", bad_id),
        ("card_event", "CEXC", f"T1:CEXC:{CARD}", bad_id),
        ("exception_alert", "CALERT", None, bad_id),
    ]
    assert all(r.state == "pending" and r.next_attempt_at == NOW for r in rows)
    assert bad.exception_event_ids == [bad_id]


def test_unknown_operations_and_statuses_are_stored_as_they_are(any_engine: Engine) -> None:
    body = produce("SOMETHING_NEW", 1)
    body["operation"] = "FUTURE_OPERATION"
    body["details"]["shipment"] = {"status": "TELEPORTED", "lastUpdatedAt": "2026-05-01T09:00:00Z"}
    result = record(any_engine, body)
    assert len(result.new_event_ids) == 1
    card = get_card(any_engine, card_id=CARD)
    assert card is not None
    assert (card.operation, card.status, card.shipment_status) == (
        "FUTURE_OPERATION",
        "SOMETHING_NEW",
        "TELEPORTED",
    )
    assert not card.is_exception


def test_state_since_is_when_the_state_was_entered(any_engine: Engine) -> None:
    record(
        any_engine,
        produce("CARD_PROD_ONGOING", 1),
        produce("CARD_PROD_ONGOING", 3, op_status="PENDING"),
    )
    card = get_card(any_engine, card_id=CARD)
    assert card is not None
    assert card.state_since == datetime(2026, 5, 1, 8, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- property

STREAM = [
    produce("CARD_PROD_REQUESTED", 0),
    produce("DATA_PREPARED", 1),
    produce("CARD_PROD_READY", 2),
    produce("CARD_PROD_ONGOING", 3),
    produce("CARD_PROD_ONHOLD", 4),
    produce("CARD_PROD_ONGOING", 5, op_status="PENDING"),
    produce("CARD_PROD_DONE", 6),
    produce("CARD_PROD_DONE", 6, op_status="PENDING"),  # same time: a tie
    produce("CARD_SHIPPED", 7),
    shipment("INFO_RECEIVED", 0),
    shipment("IN_TRANSIT", 1, message="a"),
    shipment("IN_TRANSIT", 1, message="b"),  # same time, same rank: tie on content
    shipment("DELIVERED", 2),
]

_STATE_COLUMNS = [
    c
    for c in CardRecord.__table__.columns.keys()  # type: ignore[attr-defined]  # noqa: SIM118
    if c not in {"last_event_id", "first_seen_at", "last_seen_at"}
]


def _final_state(engine: Engine) -> tuple[dict, frozenset[str], str]:
    with engine.connect() as conn:
        card = conn.execute(
            sa.select(CardRecord.__table__).where(sa.column("card_id") == CARD)
        ).one()
        keys = frozenset(conn.execute(sa.select(EventRecord.dedup_key)).scalars())
        current = conn.execute(
            sa.select(EventRecord.dedup_key).where(EventRecord.id == card.last_event_id)
        ).scalar_one()
    return {c: getattr(card, c) for c in _STATE_COLUMNS}, keys, current


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(EventRecord.__table__))
        conn.execute(sa.delete(CardRecord.__table__))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(range(len(STREAM))),
    repeats=st.lists(st.integers(0, len(STREAM) - 1), max_size=6),
    bulk=st.booleans(),
)
def test_any_arrival_order_gives_the_same_card_and_events(
    engine: Engine, order: list[int], repeats: list[int], bulk: bool
) -> None:
    _clear(engine)
    record(engine, *STREAM)
    expected = _final_state(engine)
    _clear(engine)
    sequence = [STREAM[i] for i in order] + [STREAM[i] for i in repeats]
    if bulk:
        record(engine, {"operations": sequence})
    else:
        for body in sequence:
            record(engine, body)
    assert _final_state(engine) == expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(range(len(STREAM))),
    repeats=st.lists(st.integers(0, len(STREAM) - 1), max_size=4),
    cuts=st.lists(st.integers(1, len(STREAM) + 4), max_size=6),
)
def test_any_cut_into_batches_records_what_one_request_at_a_time_records(
    engine: Engine, order: list[int], repeats: list[int], cuts: list[int]
) -> None:
    """Intake's shared transactions (`record_requests`) store exactly what recording each
    request alone stores: events, the card's state, gaps and owed messages."""
    with engine.begin() as conn:
        conn.execute(sa.delete(SubscriptionRecord.__table__))
    subscribe(engine, "C1")
    sequence = [STREAM[i] for i in order] + [STREAM[i] for i in repeats]
    _clear(engine)
    alone = [record(engine, body, exceptions_channel="CX") for body in sequence]
    expected = _final_state(engine)
    _clear(engine)
    bounds = sorted({0, len(sequence), *(c for c in cuts if c < len(sequence))})
    batched: list[IntakeResult] = []
    for start, end in itertools.pairwise(bounds):
        requests = [
            IntakeRequest(parse_operations(copy.deepcopy(body)), NOW)
            for body in sequence[start:end]
        ]
        outcomes = record_requests(engine, requests, workspace_id="T1", exceptions_channel="CX")
        batched += [o for o in outcomes if isinstance(o, IntakeResult)]
    assert _final_state(engine) == expected
    assert [(len(r.new_event_ids), r.duplicates, r.enqueued, r.gap_card_ids) for r in batched] == [
        (len(r.new_event_ids), r.duplicates, r.enqueued, r.gap_card_ids) for r in alone
    ]


def test_a_card_without_a_shipment_stores_sql_null(any_engine: Engine) -> None:
    record(any_engine, produce("CARD_PROD_REQUESTED", 0))
    with any_engine.connect() as conn:
        missing = conn.execute(
            sa.text("SELECT shipment IS NULL FROM cards WHERE card_id = :card"), {"card": CARD}
        ).scalar_one()
    assert missing  # not the JSON text 'null'
