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


def test_audit_records_and_reads_back(any_engine: Engine) -> None:
    audit.record(any_engine, action="status", outcome="ok", user_id="U1", card_id="card-1")
    audit.record(any_engine, action="list", outcome="ok", user_id="U2")
    assert [r.action for r in audit.recent(any_engine)] == ["list", "status"]
    assert [r.action for r in audit.recent(any_engine, card_id="card-1")] == ["status"]


def test_triage_changes_a_case_and_owes_its_alert_updates(any_engine: Engine) -> None:
    from storage.repositories import cases, outbox, triage
    from storage.tables import ExceptionCaseRecord

    with Session(any_engine) as session, session.begin():
        session.add(
            ExceptionCaseRecord(
                card_id="card-1",
                workspace_id="T1",
                opened_at=NOW,
                last_failure_at=NOW,
                alert_channel="CEXC",
                alert_ts="1.1",
                alert_event_id=3,
            )
        )
    pressed = triage.Alert("T1", "CEXC", "2.2", 4)
    args = {"card_id": "card-1", "now": NOW, "alerts": [pressed]}
    first = triage.assign(any_engine, user_id="U1", **args)
    again = triage.assign(any_engine, user_id="U1", **args)
    taken = triage.assign(any_engine, user_id="U2", **args)
    done = triage.resolve(any_engine, user_id="U2", **args)
    twice = triage.resolve(any_engine, user_id="U1", **args)
    back = triage.reopen(any_engine, user_id="U1", **args)
    missing = triage.assign(any_engine, user_id="U1", **{**args, "card_id": "card-9"})
    assert [r.outcome for r in (first, again, taken, done, twice, back, missing)] == [
        triage.ASSIGNED,
        triage.ALREADY_YOURS,
        triage.TAKEN_OVER,
        triage.RESOLVED,
        triage.ALREADY_RESOLVED,
        triage.REOPENED,
        triage.NO_CASE,
    ]
    assert taken.previous_owner == "U1"
    case = cases.get_case(any_engine, card_id="card-1")
    assert case is not None and (case.state, case.owner, case.reopened) == ("open", None, 1)
    updates = [
        (r.payload or {}).get("ts")
        for r in outbox.rows_of_channel(any_engine, channel_id="CEXC")
        if r.kind == outbox.KIND_ALERT_UPDATE
    ]
    assert updates == ["1.1", "2.2"] * 4  # the stored alert and the pressed one, per change


async def test_list_shows_the_channel_dead_letters(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for _ in range(2):
            session.add(OutboxRecord(channel_id="C1", kind="card_event", state=OUTBOX_DEAD))
        session.add(OutboxRecord(channel_id="C2", kind="card_event", state=OUTBOX_DEAD))
    async with slack_stack(engine) as stack:
        await stack.ask("subscribe card-1")
        listed = json.dumps(await stack.ask("list"))
    assert "2 messages for this channel could not be delivered" in listed
