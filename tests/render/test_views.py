"""Block Kit replies: built with slack_sdk models (limits checked), every field the issue
lists, and no name or address in anything meant for a channel."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bot.render import actions
from bot.render.views import (
    HELP_ENTRIES,
    HELP_EXAMPLES,
    ChannelSubscriptionRow,
    help_reply,
    list_reply,
    shared_status_reply,
    status_reply,
)
from d1.models import ProductionStatus

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)

STATUS = ProductionStatus.model_validate(
    {
        "status": "CARD_SHIPPED",
        "dueDate": "2024-06-03",
        "productionSite": "PARIS-1",
        "productionRequestDate": "2024-05-28T08:00:00Z",
        "productionDate": "2024-05-30T10:00:00Z",
        "name": "Ada Lovelace",
        "maskedPan": "************1234",
        "services": {"cardProductId": "GOLD_DEBIT", "issuance": "STANDARD", "priority": "HIGH"},
        "deliveryAddress": {"line1": "12 Analytical Street", "city": "London", "zipCode": "N1 9GU"},
        "shipment": {
            "carrier": "ups",
            "trackingNumber": "1Z999AA10123456784",
            "trackingUrl": "https://track.example/1Z999AA10123456784",
            "status": "FAILED_ATTEMPT",
            "message": "Recipient not available",
            "estimatedDeliveryDate": "2024-06-04T00:00:00Z",
            "signedBy": "B. Babbage",
            "failedDeliveryAttempts": "2",
            "lastCheckpoint": {
                "checkpointTime": "2024-06-01T09:30:00Z",
                "city": "Croydon",
                "countryName": "United Kingdom",
                "message": "Delivery attempted",
            },
        },
    }
)


def _text(blocks: list[dict]) -> str:
    return json.dumps(blocks)


def test_status_view_shows_every_field_and_buttons() -> None:
    reply = status_reply("card-1", STATUS, fetched_at=NOW)
    blocks = reply.block_dicts()  # to_dict() validates Slack's limits
    text = _text(blocks)
    for expected in (
        "Shipped",
        "CARD_SHIPPED",
        "2024-06-03",
        "PARIS-1",
        "Requested",
        "Produced",
        "************1234",
        "GOLD_DEBIT",
        "UPS",
        "<https://track.example/1Z999AA10123456784|Track on UPS>",
        "Delivery attempt failed",
        "Recipient not available",
        "Estimated delivery",
        "B. Babbage",
        "Failed attempts",
        "Croydon, United Kingdom",
        "Last updated",
        # the personal view is ephemeral: the agent sees name and address
        "Ada Lovelace",
        "12 Analytical Street",
    ):
        assert expected in text, expected
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [
        actions.SUBSCRIBE,
        actions.REFRESH,
        actions.SHARE,
        actions.TIMELINE,
    ]
    assert [b["text"]["text"] for b in buttons] == [
        "Subscribe this channel",
        "Refresh",
        "Share in channel",
        "Timeline",
    ]
    assert {actions.decode_value(b["value"]).card_id for b in buttons} == {"card-1"}


def test_shared_view_has_no_name_no_address_no_buttons() -> None:
    reply = shared_status_reply("card-1", STATUS, fetched_at=NOW, shared_by="U1")
    text = _text(reply.block_dicts()) + reply.text
    assert "Ada" not in text and "Lovelace" not in text
    assert "Analytical" not in text and "N1 9GU" not in text and "London" not in text
    assert "Babbage" not in text  # who signed for the card is a person's name
    assert "shared by <@U1>" in text
    assert "1Z999AA10123456784" in text
    assert all(b["type"] != "actions" for b in reply.block_dicts())


def test_minimal_and_unknown_status_is_shown_as_is() -> None:
    status = ProductionStatus.model_validate({"status": "NEW_D1_STATUS"})
    text = _text(status_reply("c", status, fetched_at=NOW).block_dicts())
    assert "NEW_D1_STATUS" in text


def test_mrkdwn_is_escaped() -> None:
    status = ProductionStatus.model_validate(
        {"status": "CARD_PROD_ONHOLD", "reason": "<!here> & co"}
    )
    text = _text(status_reply("c", status, fetched_at=NOW).block_dicts())
    assert "<!here>" not in text
    assert "&lt;!here&gt; &amp; co" in text


def test_help_lists_every_subcommand_with_an_example() -> None:
    text = _text(help_reply().block_dicts())
    for sub in ("status", "track", "subscribe", "unsubscribe", "list", "digest", "help"):
        assert any(usage.startswith(sub) for usage, _ in HELP_ENTRIES)
        assert any(e.startswith(f"/card {sub}") for e in HELP_EXAMPLES), sub
        assert f"/card {sub}" in text
    for kind in ("production", "shipment", "return"):
        assert any(f" {kind} " in e for e in HELP_EXAMPLES)


def test_list_shows_card_filter_creator_date_status_and_dead_letters() -> None:
    rows = [
        ChannelSubscriptionRow(
            "card-1", "all", "U1", NOW - timedelta(days=2), "CARD_SHIPPED", "IN_TRANSIT"
        ),
        ChannelSubscriptionRow("card-2", "exceptions", "U2", NOW, None),
    ]
    reply = list_reply(rows, dead_letters=3)
    text = _text(reply.block_dicts())
    assert "card-1" in text and "card-2" in text
    assert "exceptions only" in text
    assert "<@U1>" in text and "<@U2>" in text
    assert "In transit" in text and "no events yet" in text
    assert "3 messages" in text and "could not be delivered" in text
    assert "follows 2 cards" in reply.text


def test_long_list_stays_within_slack_limits() -> None:
    rows = [
        ChannelSubscriptionRow(f"card-{i}", "all", "U1", NOW, "CARD_SHIPPED") for i in range(500)
    ]
    blocks = list_reply(rows).block_dicts()
    assert len(blocks) <= 50
    assert "460 more" in _text(blocks)


def test_empty_list_says_how_to_subscribe() -> None:
    assert "/card subscribe" in list_reply([]).text
