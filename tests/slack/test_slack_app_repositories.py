"""Subscriptions and audit repositories on SQLite and PostgreSQL, and `/card list` showing a
channel's dead letters."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage.repositories import audit, subscriptions
from storage.tables import OUTBOX_DEAD, CardRecord, OutboxRecord
from tests.slack.test_slack_app import slack_stack

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_subscribe_is_idempotent_and_changes_filter(any_engine: Engine) -> None:
    args = {"workspace_id": "T1", "channel_id": "C1", "card_id": "card-1", "created_by": "U1"}
    first = subscriptions.subscribe(any_engine, **args, now=NOW)
    again = subscriptions.subscribe(any_engine, **args)
    narrowed = subscriptions.subscribe(any_engine, **args, filter="exceptions")
    assert (first.outcome, again.outcome, narrowed.outcome) == ("created", "unchanged", "updated")
    subs = subscriptions.subscriptions_of_card(any_engine, card_id="card-1")
    assert len(subs) == 1 and subs[0].filter == "exceptions" and subs[0].created_at == NOW


def test_concurrent_subscribes_make_one_row(any_engine: Engine) -> None:
    args = {"workspace_id": "T1", "channel_id": "C1", "card_id": "card-1", "created_by": "U1"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda _: subscriptions.subscribe(any_engine, **args).outcome, range(8))
        )
    assert outcomes.count("created") == 1
    assert len(subscriptions.subscriptions_of_card(any_engine, card_id="card-1")) == 1


def test_unsubscribe_logs_removal_and_list_joins_card_state(any_engine: Engine) -> None:
    for card, channel in (("card-1", "C1"), ("card-2", "C1"), ("card-3", "C2")):
        subscriptions.subscribe(
            any_engine, workspace_id="T1", channel_id=channel, card_id=card, created_by="U1"
        )
    with Session(any_engine) as session, session.begin():
        session.add(
            CardRecord(card_id="card-2", status="CARD_SHIPPED", shipment_status="IN_TRANSIT")
        )
    listed = subscriptions.list_for_channel(any_engine, workspace_id="T1", channel_id="C1")
    assert [(r.subscription.card_id, r.status, r.shipment_status) for r in listed] == [
        ("card-1", None, None),
        ("card-2", "CARD_SHIPPED", "IN_TRANSIT"),
    ]
    removal = subscriptions.unsubscribe(
        any_engine,
        workspace_id="T1",
        channel_id="C1",
        card_id="card-1",
        removed_by="U2",
        reason="test",
    )
    assert removal is not None and removal.removed_by == "U2" and removal.created_by == "U1"
    assert (
        subscriptions.unsubscribe(
            any_engine,
            workspace_id="T1",
            channel_id="C1",
            card_id="card-1",
            removed_by="U2",
            reason="test",
        )
        is None
    )
    assert [r.reason for r in subscriptions.removals_of_card(any_engine, card_id="card-1")] == [
        "test"
    ]
    assert subscriptions.subscriptions_of_card(any_engine, card_id="card-1") == []


def test_audit_and_first_ack_wins(any_engine: Engine) -> None:
    audit.record(any_engine, action="status", outcome="ok", user_id="U1", card_id="card-1")
    audit.record(any_engine, action="list", outcome="ok", user_id="U2")
    assert [r.action for r in audit.recent(any_engine)] == ["list", "status"]
    assert [r.action for r in audit.recent(any_engine, card_id="card-1")] == ["status"]
    first = audit.acknowledge_alert(any_engine, event_id=7, card_id="card-1", acked_by="U1")
    second = audit.acknowledge_alert(any_engine, event_id=7, card_id="card-1", acked_by="U2")
    assert first.created and not second.created and second.ack.acked_by == "U1"


async def test_list_shows_the_channel_dead_letters(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for _ in range(2):
            session.add(OutboxRecord(channel_id="C1", kind="card_event", state=OUTBOX_DEAD))
        session.add(OutboxRecord(channel_id="C2", kind="card_event", state=OUTBOX_DEAD))
    async with slack_stack(engine) as stack:
        await stack.ask("subscribe card-1")
        listed = json.dumps(await stack.ask("list"))
    assert "2 messages for this channel could not be delivered" in listed
