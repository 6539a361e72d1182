"""Nothing the outbox sends to Slack carries a full PAN, a cardholder name or an address:
asserted on the bodies the Slack stand-in recorded, over every kind of channel message."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy.engine import Engine

from d1.carddata import find_pans
from d1.models import Operation
from tests.delivery.outbox_support import (
    CARDHOLDER,
    FULL_PAN,
    T0,
    delivery,
    drain,
    follow,
    produce,
    record,
    shipment,
)

ADDRESS_LINE = "12 Rue de la Paix"


def _with_personal_data(card_id: str) -> Operation:
    """A D1 operation carrying what must never reach a channel (a PAN in a reason, an address
    and a name where a careless renderer would pick them up)."""
    at = (T0 + timedelta(hours=1)).isoformat()
    return Operation.model_validate(
        {
            "operationId": f"op-x-{card_id}",
            "operation": "PRODUCE",
            "status": "FAILED",
            "cardId": card_id,
            "startTime": at,
            "endTime": at,
            "errorCode": "DATA_INVALID",
            "error": f"bad card {FULL_PAN} for {CARDHOLDER}",
            "details": {
                "status": "DATA_EXCEPTION",
                "reason": f"PAN {FULL_PAN} rejected",
                "name": CARDHOLDER,
                "deliveryAddress": {"line1": ADDRESS_LINE, "city": "Paris"},
            },
        }
    )


async def test_no_pan_name_or_address_in_any_slack_body(engine: Engine) -> None:
    cards = [f"card-{i}" for i in range(4)]
    batch = [f"batch-{i:02d}" for i in range(11)]  # over the burst threshold of 10
    for card in cards:
        follow(engine, "C1", card)
        follow(engine, "C2", card, exceptions_only=True)
    for card in batch:
        follow(engine, "CBURST", card)
    async with delivery(engine) as (slack, _runtime, worker):
        for card in cards:
            record(engine, produce(card, "CARD_PROD_REQUESTED", 0))
            record(engine, shipment(card, "DELIVERED", 30))
            record(engine, _with_personal_data(card))
        record(engine, *[_with_personal_data(card) for card in batch])
        await drain(worker, engine)
        assert slack.messages(channel="CEXC") and slack.messages(channel="C2")
        assert slack.messages(channel="CBURST")[0]["text"].startswith("11 cards changed")
        bodies = [c.body for c in slack.calls if c.method != "auth.test"]

    assert len(bodies) > 20
    for body in bodies:
        dumped = json.dumps(body)
        assert FULL_PAN not in dumped
        # Slack permalinks carry a message ts as 16 digits, which passes Luhn one time in ten.
        assert find_pans(re.sub(r"/p\d{16}", "/p", dumped)) == []
        assert CARDHOLDER not in dumped
        assert ADDRESS_LINE not in dumped
