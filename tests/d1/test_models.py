"""D1 payload models: D1's own examples parse, wire names round-trip, unknowns are kept."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from d1.carddata import contains_pan, find_pans, mask_pan, redact_pans
from d1.models import (
    PRODUCTION_STATUSES,
    Operation,
    ProductionStatus,
    parse_operations,
    track_request_adapter,
)
from d1.semantics import (
    _dedup_parts,
    is_exception,
    lifecycle_rank,
    operation_dedup_key,
    operation_event_time,
    operation_for_storage,
    operation_json_for_storage,
)
from tests.spec_examples import notification_examples, track_request_examples


def produce(status: str, **extra: object) -> dict:
    return {
        "operationId": "op-1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": "card-1",
        "startTime": "2026-05-01T08:00:00Z",
        "endTime": "2026-05-01T09:00:00Z",
        "details": {"status": status, **extra},
    }


def test_every_tracking_hub_notification_example_parses() -> None:
    examples = notification_examples()
    assert len(examples) == 4
    for example in examples:
        (op,) = parse_operations(example)
        assert op.operation == "STANDALONE_TRACKING"
        assert op.card_id == example["cardId"]
        assert op.to_wire()["operationId"] == example["operationId"]


def test_every_tracking_hub_request_example_parses() -> None:
    examples = track_request_examples()
    assert {e["trackingType"] for e in examples} == {"PRODUCTION", "SHIPMENT", "RETURN"}
    for example in examples:
        request = track_request_adapter.validate_python(example)
        assert request.to_wire() == example


@pytest.mark.parametrize("status", PRODUCTION_STATUSES)
def test_produce_notification_for_each_production_status(status: str) -> None:
    (op,) = parse_operations({"operations": [produce(status)]})
    assert op.details.status == status
    assert op.end_time == datetime(2026, 5, 1, 9, tzinfo=timezone.utc)


def test_wire_round_trip_keeps_exact_names() -> None:
    example = notification_examples()[2]
    op = Operation.model_validate(example)
    wire = op.to_wire()
    assert wire["details"]["shipment"]["lastCheckpoint"]["countryName"] == "France"
    assert wire["details"]["trackingType"] == "SHIPMENT"
    assert Operation.model_validate(wire) == op


def test_unknown_status_operation_and_fields_are_kept() -> None:
    body = produce("CARD_TELEPORTED", newField=1)
    body["operation"] = "UPDATE_ORDER_V9"
    body["somethingNew"] = {"x": 1}
    (op,) = parse_operations(body)
    assert op.operation == "UPDATE_ORDER_V9"
    assert op.details.status == "CARD_TELEPORTED"
    assert not is_exception(op.details.status)


def test_bad_card_id_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_operations(produce("CARD_SHIPPED") | {"cardId": "bad id!"})


@pytest.mark.parametrize("card_id", ["card-1\n", "x" * 65, ""])
def test_card_id_must_match_the_whole_pattern(card_id: str) -> None:
    with pytest.raises(ValidationError):
        parse_operations(produce("CARD_SHIPPED") | {"cardId": card_id})


def test_naive_timestamps_read_as_utc_and_free_text_left_alone() -> None:
    """Only timestamp fields get the UTC reading: a message that happens to have a `T` at
    position 10 (like "Delivered To front door") is kept exactly as D1 sent it."""
    op = Operation.model_validate(
        produce("CARD_SHIPPED")
        | {"endTime": "2026-05-01T09:00:00"}
        | {
            "details": {
                "status": "CARD_SHIPPED",
                "reason": "Production To be resumed",
                "shipment": {
                    "message": "Delivered To front door",
                    "lastUpdatedAt": "2026-05-02T10:00:00.500",
                },
            }
        }
    )
    assert op.end_time == datetime(2026, 5, 1, 9, tzinfo=timezone.utc)
    assert op.details.reason == "Production To be resumed"
    assert op.details.shipment is not None
    assert op.details.shipment.message == "Delivered To front door"
    assert op.details.shipment.last_updated_at == datetime(
        2026, 5, 2, 10, 0, 0, 500000, tzinfo=timezone.utc
    )


def test_stored_operation_keeps_wire_names_and_drops_the_free_text_error() -> None:
    op = Operation.model_validate(
        produce("CARD_PROD_ON_HOLD") | {"errorCode": "E1", "error": "card 4111 1111 1111 1111"}
    )
    stored = operation_for_storage(op)
    assert stored["errorCode"] == "E1"
    assert "error" not in stored
    assert stored["details"] == {"status": "CARD_PROD_ON_HOLD"}
    assert json.loads(operation_json_for_storage(op)) == stored


def test_event_time_prefers_shipment_update_then_end_time() -> None:
    shipment_update = Operation.model_validate(notification_examples()[2])
    assert operation_event_time(shipment_update) == datetime(
        2026, 5, 22, 13, 55, tzinfo=timezone.utc
    )
    assert operation_event_time(Operation.model_validate(produce("DATA_PREPARED"))) == datetime(
        2026, 5, 1, 9, tzinfo=timezone.utc
    )
    first = Operation.model_validate(notification_examples()[1])
    assert operation_event_time(first) == datetime(2026, 5, 22, 9, 38, 5, tzinfo=timezone.utc)


def test_dedup_key_same_state_same_key_new_step_new_key() -> None:
    pending, update = notification_examples()[1], notification_examples()[2]
    assert pending["operationId"] == update["operationId"]
    key = operation_dedup_key(Operation.model_validate(update))
    assert key == operation_dedup_key(Operation.model_validate(dict(update)))
    assert key != operation_dedup_key(Operation.model_validate(pending))
    a = Operation.model_validate(produce("CARD_PROD_READY"))
    b = Operation.model_validate(produce("CARD_PROD_ONGOING"))
    assert operation_dedup_key(a) != operation_dedup_key(b)


def _reference_dedup_key(op: Operation) -> str:
    """The dedup key as first defined: the SHA-256 of `json.dumps` of the fields, sorted."""
    canonical = json.dumps(_dedup_parts(op), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_texts = st.none() | st.text(max_size=12) | st.sampled_from(["IN_TRANSIT", 'a"b\\c', "é\u2028😀"])
_times = st.none() | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
)


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(_texts, min_size=11, max_size=11),
    times=st.lists(_times, min_size=3, max_size=3),
    shipment=st.booleans(),
    checkpoint=st.booleans(),
)
def test_dedup_key_is_the_sorted_json_of_its_fields(
    texts: list[str | None], times: list[datetime | None], shipment: bool, checkpoint: bool
) -> None:
    """Stored keys depend on the canonical text byte for byte: the hand-written text must
    equal `json.dumps(..., sort_keys=True)` for any strings (escapes, non-ASCII) and times
    (any offset, naive read as UTC by the model)."""
    op = Operation.model_validate(
        {
            "operationId": "op-" + (texts[0] or "").encode().hex()[:60],
            "operation": texts[1] or "PRODUCE",
            "status": texts[2] or "SUCCESSFUL",
            "cardId": "card-1",
            "errorCode": texts[3],
            "details": {
                "status": texts[4],
                "trackingType": texts[5],
                "shipment": None
                if not shipment
                else {
                    "status": texts[6],
                    "message": texts[7],
                    "trackingNumber": texts[8],
                    "failedDeliveryAttempts": texts[9],
                    "lastUpdatedAt": times[0],
                    "deliveryDate": times[1],
                    "lastCheckpoint": {"checkpointTime": times[2], "city": texts[10]}
                    if checkpoint
                    else None,
                },
            },
        }
    )
    assert operation_dedup_key(op) == _reference_dedup_key(op)


def test_lifecycle_rank_orders_the_stages() -> None:
    order = [
        "CARD_PROD_REQUESTED",
        "DATA_PREPARED",
        "CARD_PROD_READY",
        "CARD_PROD_ONGOING",
        "CARD_SHIPPED",
    ]
    ranks = [lifecycle_rank(s) for s in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert lifecycle_rank("CARD_SHIPPED", "DELIVERED") > lifecycle_rank(
        "CARD_SHIPPED", "IN_TRANSIT"
    )
    assert lifecycle_rank("SOMETHING_NEW") == 0


def test_exceptions() -> None:
    for status in (
        "DATA_EXCEPTION",
        "CARD_PROD_EXCEPTION",
        "CARD_PROD_ONHOLD",
        "CARD_PROD_CANCELED",
        "CARD_RETURNED",
    ):
        assert is_exception(status)
    for shipment in ("EXCEPTION", "FAILED_ATTEMPT", "EXPIRED"):
        assert is_exception("CARD_SHIPPED", shipment)
    assert is_exception("CARD_PROD_READY", operation_status="FAILED")
    assert not is_exception("CARD_SHIPPED", "IN_TRANSIT")


def test_production_status_masks_and_hides_personal_data_from_repr() -> None:
    status = ProductionStatus.model_validate(
        {
            "status": "CARD_SHIPPED",
            "maskedPan": "512345XXXXXX1234",
            "name": "JANE DOE",
            "deliveryAddress": {
                "line1": "1 Main St",
                "zipCode": "W1",
                "city": "London",
                "countryCode": "GB",
            },
        }
    )
    assert status.masked_pan.endswith("1234")
    assert "JANE" not in repr(status) and "Main" not in repr(status)


def test_pan_detection() -> None:
    assert contains_pan("my card 4111 1111 1111 1111 is lost")
    assert contains_pan("4111111111111111")
    assert not contains_pan("4111111111111112")  # fails Luhn
    assert not contains_pan("card-123456")
    assert mask_pan("4111111111111111") == "************1111"


def test_pan_found_after_another_number_and_in_groups() -> None:
    assert find_pans("subscribe card-1 4111111111111111") == ["4111111111111111"]
    assert find_pans("ref 12 4111 1111 1111 1111 thanks") == ["4111 1111 1111 1111"]
    assert find_pans("tracking 61293150000079650811") == []  # 20 digits, unbroken: not a PAN
    assert redact_pans("pan=4111-1111-1111-1111.") == "pan=************1111."
