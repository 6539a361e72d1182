"""Fan-out markers: intake writes one per wanted event, the delivery side expands them into the
per-subscription outbox rows in event order, once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.repositories import claims
from storage.repositories import outbox as repo
from storage.repositories.fanout import expand_all, expand_pending, pending_markers
from tests.storage.test_storage_intake import NOW, outbox_rows, produce, record, subscribe


def _raw_outbox(engine: Engine) -> list[tuple[str, str, str, int]]:
    """The outbox as it is, without expanding anything."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, channel_id, card_id, event_id FROM outbox ORDER BY id")
        ).all()
    return [tuple(r) for r in rows]


def test_intake_writes_one_marker_per_wanted_event(any_engine: Engine) -> None:
    for channel in ("C1", "C2", "C3"):
        subscribe(any_engine, channel)
    first = record(any_engine, produce("CARD_PROD_REQUESTED", 1))
    nobody = record(any_engine, produce("CARD_PROD_REQUESTED", 1, card="unfollowed"))
    late = record(any_engine, produce("CARD_PROD_INITIATED", 0))  # older: not current
    assert (first.enqueued, nobody.enqueued, late.enqueued) == (3, 0, 0)
    assert pending_markers(any_engine) == 1 and _raw_outbox(any_engine) == []
    assert repo.pending_count(any_engine) == 1  # the owed marker counts as pending
    assert repo.pending_count(any_engine, channel_id="C2") == 1
    assert repo.pending_count(any_engine, channel_id="CNONE") == 0
    assert repo.next_due_at(any_engine) == NOW

    assert expand_all(any_engine) == 1
    event = first.new_event_ids[0]
    assert _raw_outbox(any_engine) == [
        ("card_event", c, "card-1", event) for c in ("C1", "C2", "C3")
    ]
    assert pending_markers(any_engine) == 0
    assert expand_all(any_engine) == 0  # nothing twice
    assert len(_raw_outbox(any_engine)) == 3


def test_expansion_keeps_event_order_with_alerts(any_engine: Engine) -> None:
    subscribe(any_engine, "CALL")
    subscribe(any_engine, "CEXC", filter="exceptions")
    statuses = [
        "CARD_PROD_REQUESTED",
        "CARD_PROD_ONHOLD",
        "CARD_PROD_ONGOING",
        "CARD_PROD_EXCEPTION",
    ]
    events = []
    for minute, status in enumerate(statuses):
        result = record(any_engine, produce(status, minute * 2), exceptions_channel="CALERT")
        events += result.new_event_ids
    # Several small transactions: the order must not depend on how markers are grouped.
    while expand_pending(any_engine, limit=3):
        pass
    got = [(kind, channel, event) for kind, channel, _, event in _raw_outbox(any_engine)]
    e1, e2, e3, e4 = events
    assert got == [
        ("card_event", "CALL", e1),
        ("card_event", "CALL", e2),
        ("card_event", "CEXC", e2),
        ("exception_alert", "CALERT", e2),
        ("card_event", "CALL", e3),
        ("card_event", "CALL", e4),
        ("card_event", "CEXC", e4),
        ("exception_alert", "CALERT", e4),
    ]


def test_a_message_enqueued_after_an_event_does_not_overtake_it(any_engine: Engine) -> None:
    subscribe(any_engine, "C1")
    result = record(any_engine, produce("CARD_PROD_REQUESTED", 1))
    repo.enqueue_message(
        any_engine,
        workspace_id="T1",
        channel_id="C1",
        kind=repo.KIND_CARD_NOTICE,
        card_id="card-1",
        payload={"text": "notice"},
        now=NOW,
    )
    assert [(k, e) for k, _, _, e in _raw_outbox(any_engine)] == [
        ("card_event", result.new_event_ids[0]),
        ("card_notice", None),
    ]


def test_claiming_expands_first(any_engine: Engine) -> None:
    subscribe(any_engine, "C1")
    subscribe(any_engine, "C2")
    record(any_engine, produce("CARD_PROD_REQUESTED", 1))
    claimed = claims.claim_due(
        any_engine, worker="w", now=NOW, lease_until=NOW + timedelta(minutes=1), limit=10
    )
    assert sorted(r.channel_id for r in claimed) == ["C1", "C2"]
    assert pending_markers(any_engine) == 0


def test_concurrent_expanders_expand_each_marker_once_in_order(any_engine: Engine) -> None:
    channels = [f"C{i}" for i in range(4)]
    cards = [f"card-{i}" for i in range(30)]
    for card in cards:
        for channel in channels:
            subscribe(any_engine, channel, card=card)
    events = []
    for minute, card in enumerate(cards):
        events += record(
            any_engine, produce("CARD_PROD_REQUESTED", minute, card=card)
        ).new_event_ids
    errors: list[BaseException] = []

    def expander() -> None:
        try:
            while pending_markers(any_engine):
                expand_pending(any_engine, limit=4)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=expander) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    rows = outbox_rows(any_engine)
    assert len(rows) == len(events) * len(channels)
    for channel in channels:
        # Each channel gets every event once, in event order (outbox id order).
        assert [r.event_id for r in rows if r.channel_id == channel] == events
