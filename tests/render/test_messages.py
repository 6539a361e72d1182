"""Channel messages are pure: built from card and event rows, within Slack's limits, and free of
personal data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bot.render import actions, messages, triage
from d1.semantics import operation_for_storage
from storage.tables import CardRecord, EventRecord
from tests.delivery.outbox_support import CARDHOLDER, FULL_PAN, shipment

AT = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _card(**changes: object) -> CardRecord:
    op = shipment("card-1", "FAILED_ATTEMPT", 0)
    values: dict[str, object] = {
        "card_id": "card-1",
        "status": "CARD_SHIPPED",
        "shipment_status": "FAILED_ATTEMPT",
        "shipment": op.details.shipment.to_wire() if op.details.shipment else None,
        "state_event_time": AT,
        "is_exception": True,
        "production_site": "site-1",
    }
    values.update(changes)
    return CardRecord(**values)  # type: ignore[arg-type]


def _event(**changes: object) -> EventRecord:
    op = shipment("card-1", "FAILED_ATTEMPT", 0, message="Recipient not available")
    values: dict[str, object] = {
        "id": 42,
        "dedup_key": "k",
        "card_id": "card-1",
        "operation_id": op.operation_id,
        "operation": op.operation,
        "operation_status": op.status,
        "details_status": "CARD_SHIPPED",
        "shipment_status": "FAILED_ATTEMPT",
        "shipment_message": "Recipient not available",
        "event_time": AT,
        "is_exception": True,
        "payload": operation_for_storage(op),
    }
    values.update(changes)
    return EventRecord(**values)  # type: ignore[arg-type]


def _dump(message: messages.ChannelMessage) -> str:
    return json.dumps({"text": message.text, "blocks": message.block_dicts()})


def test_parent_shows_status_carrier_eta_and_checkpoint_without_personal_data() -> None:
    message = messages.card_parent_message(_card())
    dumped = _dump(message)
    assert message.text == ":warning: Card card-1: Shipped / Delivery attempt failed"
    for expected in ("Shipped (`CARD_SHIPPED`)", "UPS", "1Z999AA10123456784", "ETA", "Lyon"):
        assert expected in dumped
    assert "https://www.ups.com/track?tracknum=1Z999AA10123456784|" in dumped
    assert CARDHOLDER not in dumped and "signed" not in dumped.lower()


def test_unknown_status_is_shown_as_it_is() -> None:
    message = messages.card_parent_message(_card(status="NEW_D1_STATUS", shipment=None))
    assert "`NEW_D1_STATUS`" in _dump(message)


def test_event_reply_is_rendered_from_the_event() -> None:
    message = messages.event_reply_message(_event())
    dumped = _dump(message)
    assert "Delivery attempt failed" in dumped and "Recipient not available" in dumped
    assert message.text.startswith(":warning: Card card-1")
    assert CARDHOLDER not in dumped


def test_pan_like_text_from_outside_is_masked() -> None:
    event = _event(
        details_status="DATA_EXCEPTION",
        shipment_status=None,
        payload={"details": {"reason": f"bad pan {FULL_PAN}"}, "errorCode": "E1"},
    )
    for message in (
        messages.event_reply_message(event),
        messages.exception_alert_message(_card(), event),
        messages.card_parent_message(_card(reason=f"pan {FULL_PAN}")),
    ):
        dumped = _dump(message)
        assert FULL_PAN not in dumped
    assert "************1111" in _dump(messages.event_reply_message(event))


def test_exception_alert_buttons_and_thread_link() -> None:
    message = messages.exception_alert_message(
        _card(), _event(), thread_link="https://x.example/archives/C1/p1"
    )
    blocks = message.block_dicts()
    buttons = blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == [
        actions.ALERT_ASSIGN,
        actions.ALERT_RESOLVE,
        actions.ALERT_REFRESH,
        actions.ALERT_RETRACK,
    ]
    assert {actions.decode_value(b["value"]) for b in buttons} == {
        actions.ActionValue("card-1", 42)
    }
    assert "<https://x.example/archives/C1/p1|Card thread>" in _dump(message)
    assert "No owner yet" in _dump(message)
    assert blocks[0]["type"] == "header" and "Card exception" in blocks[0]["text"]["text"]


def test_alert_shows_owner_and_age_or_who_resolved_it() -> None:
    owned = triage.AlertState(owner="U123", opened_at=AT - timedelta(hours=5))
    message = messages.exception_alert_message(_card(), _event(), state=owned, now=AT)
    dumped = _dump(message)
    assert (
        "Owner <@U123>" in dumped and "open for 5 h" in dumped and "(owner <@U123>)" in message.text
    )
    resolved = triage.AlertState(open=False, resolved_by="U9", resolved_at=AT)
    closed = messages.exception_alert_message(_card(), _event(), state=resolved, now=AT)
    buttons = closed.block_dicts()[-1]["elements"]
    assert [b["action_id"] for b in buttons] == [actions.ALERT_REOPEN, actions.ALERT_REFRESH]
    assert "Resolved by <@U9>" in _dump(closed)


def test_burst_summary_counts_by_status_lists_exceptions_first_and_bounds_length() -> None:
    cards = [_card(card_id=f"c-{i:03d}", is_exception=False) for i in range(100)]
    cards.append(_card(card_id="c-zzz", is_exception=True))
    message = messages.burst_summary_message(cards)
    blocks = message.block_dicts()  # to_dict() validates Slack's limits
    assert message.text == "101 cards changed at once, 1 with exceptions"
    body = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    counts, first = body.splitlines()[:2]
    assert "Shipped / Delivery attempt failed: 101" in counts  # counted by status
    assert first.startswith(":warning: `c-zzz`")
    assert "… and 61 more" in body
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


def test_stuck_and_not_in_channel_notices() -> None:
    stuck = messages.stuck_card_message(_card(), stuck_for=timedelta(days=3), expected="2 days")
    assert "for 3 days" in stuck.text and "expected within 2 days" in _dump(stuck)
    notice = messages.not_in_channel_notice("C9")
    assert "<#C9>" in notice.text and "/invite" in notice.text


def test_every_message_has_fallback_text() -> None:
    built = [
        messages.card_parent_message(_card()),
        messages.event_reply_message(_event()),
        messages.exception_alert_message(_card(), _event()),
        messages.exception_alert_message(
            _card(), _event(), state=triage.AlertState(open=False, resolved_by="U1"), now=AT
        ),
        messages.burst_summary_message([_card()]),
        messages.stuck_card_message(_card(), stuck_for=timedelta(hours=5)),
        messages.card_notice_message("card-1", "stuck"),
        messages.not_in_channel_notice("C1"),
    ]
    for message in built:
        assert message.text.strip()
        message.block_dicts()
