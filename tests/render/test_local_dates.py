"""D1 writes delivery dates and checkpoint times in the local time of the place they describe:
they are shown as written, the same day and hour for every reader, never shifted by an offset
or by the reader's timezone (a team west of UTC would otherwise see the ETA a day early)."""

from __future__ import annotations

from bot.render.views import shipment_fields
from d1.models import Operation, ProductionStatus

SHIPMENT = {
    "carrier": "ups",
    "status": "DELIVERED",
    "estimatedDeliveryDate": "2026-01-05T00:00:00-08:00",  # midnight in California
    "deliveryDate": "2026-01-06T00:15:00+09:00",  # a quarter past midnight in Tokyo
    "lastCheckpoint": {"city": "Tokyo", "checkpointTime": "2026-01-05T23:50:00Z"},
    "lastUpdatedAt": "2026-01-05T15:15:00Z",
}


def _texts(shipment: dict) -> str:
    status = ProductionStatus.model_validate({"status": "CARD_SHIPPED", "shipment": shipment})
    assert status.shipment is not None
    return "\n".join(f.text for f in shipment_fields(status.shipment, personal=False))


def test_local_dates_are_shown_as_written() -> None:
    shown = _texts(SHIPMENT)
    assert "Mon 5 Jan 2026" in shown  # not Jan 5 08:00 UTC, nor Jan 4 for a reader in New York
    assert "Tue 6 Jan 2026, 00:15" in shown  # not Jan 5 15:15 UTC
    assert "Mon 5 Jan 2026, 23:50" in shown
    assert "<!date^" not in shown  # Slack's date token would shift it to each reader's zone


def test_a_z_on_a_local_date_is_ignored_and_instants_stay_instants() -> None:
    op = Operation.model_validate(
        {
            "operationId": "op-1",
            "operation": "STANDALONE_TRACKING",
            "status": "SUCCESSFUL",
            "cardId": "card-1",
            "timestamp": "2026-01-05T10:00:00+02:00",
            "details": {"shipment": SHIPMENT},
        }
    )
    shipment = op.details.shipment
    assert shipment is not None and shipment.delivery_date is not None
    assert (shipment.delivery_date.day, shipment.delivery_date.hour) == (6, 0)  # wall clock
    assert shipment.last_updated_at is not None and shipment.last_updated_at.hour == 15
    assert op.timestamp is not None and op.timestamp.utcoffset() is not None
    assert op.timestamp.isoformat() == "2026-01-05T10:00:00+02:00"  # an instant, offset kept
