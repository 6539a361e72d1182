"""D1's semantics that the product relies on: how far along a card is, which states are
exceptions or final, when a reported state happened, and when two notifications report the same
state (the dedup key). Pure functions over `d1.models` payloads.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from json.encoder import encode_basestring_ascii
from typing import Any

from d1.carddata import contains_pan, mask_pans_in
from d1.models import Operation

# Lifecycle rank: how far along a card is. Used to break ties between events with the same
# event time (the later stage wins). Exceptions rank with the stage they interrupt.
_PRODUCTION_RANK: dict[str, int] = {
    "CARD_PROD_REQUESTED": 10,
    "DATA_PREPARED": 20,
    "DATA_EXCEPTION": 25,
    "CARD_PROD_READY": 30,
    "CARD_PROD_ONHOLD": 35,
    "CARD_PROD_ONGOING": 40,
    "CARD_PROD_EXCEPTION": 45,
    "CARD_PROD_DONE": 50,
    "CARD_PROD_CANCELED": 55,
    "CARD_SHIPPED": 60,
    "CARD_RETURNED": 90,
}
_SHIPMENT_RANK: dict[str, int] = {
    "PENDING": 1,
    "INFO_RECEIVED": 2,
    "IN_TRANSIT": 3,
    "EXPIRED": 3,
    "OUT_FOR_DELIVERY": 4,
    "FAILED_ATTEMPT": 5,
    "EXCEPTION": 5,
    "AVAILABLE_FOR_PICKUP": 6,
    "DELIVERED": 7,
}

PRODUCTION_EXCEPTIONS = frozenset(
    {"DATA_EXCEPTION", "CARD_PROD_EXCEPTION", "CARD_PROD_ONHOLD", "CARD_PROD_CANCELED"}
)
TRACKING_EXCEPTIONS = frozenset({"CARD_RETURNED"})
SHIPMENT_EXCEPTIONS = frozenset({"EXCEPTION", "FAILED_ATTEMPT", "EXPIRED"})
FINAL_STATUSES = frozenset({"CARD_PROD_CANCELED", "CARD_RETURNED"})
FINAL_SHIPMENT_STATUSES = frozenset({"DELIVERED"})


def lifecycle_rank(status: str | None, shipment_status: str | None = None) -> int:
    """How far along the lifecycle a (status, shipment status) pair is; unknown ranks lowest."""
    base = _PRODUCTION_RANK.get(status or "", 0) * 10
    return base + _SHIPMENT_RANK.get(shipment_status or "", 0)


def is_exception(
    status: str | None,
    shipment_status: str | None = None,
    operation_status: str | None = None,
    extra_exception_statuses: frozenset[str] = frozenset(),
) -> bool:
    """Whether a reported state is alert-worthy (see ARCHITECTURE: exceptions)."""
    if operation_status == "FAILED":
        return True
    if status in PRODUCTION_EXCEPTIONS or status in TRACKING_EXCEPTIONS:
        return True
    if shipment_status in SHIPMENT_EXCEPTIONS:
        return True
    return bool(extra_exception_statuses & {status, shipment_status})


def is_final(status: str | None, shipment_status: str | None = None) -> bool:
    """A card in a final state will not move again on its own (no reconciliation needed)."""
    return status in FINAL_STATUSES or shipment_status in FINAL_SHIPMENT_STATUSES


def operation_event_time(op: Operation) -> datetime:
    """When the reported state happened: shipment.lastUpdatedAt for shipment updates, else
    endTime, else timestamp, else startTime. Never None: falls back to the epoch."""
    shipment = op.details.shipment
    if shipment is not None and shipment.last_updated_at is not None:
        return shipment.last_updated_at
    for candidate in (op.end_time, op.timestamp, op.start_time):
        if candidate is not None:
            return candidate
    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def operation_dedup_key(op: Operation) -> str:
    """Identity of a reported state: the same operation reporting the same state again is a
    duplicate; the same operationId with a new step or a new shipment update is not.

    The SHA-256 of the canonical JSON of those fields: `json.dumps(..., sort_keys=True,
    separators=(",", ":"))` of the dict `_dedup_parts` builds (stored keys depend on that text
    byte for byte). It is written out here, keys already in sorted order and strings escaped as
    `json.dumps` escapes them, at half the cost: intake computes one key per operation."""
    details = op.details
    shipment = details.shipment
    if shipment is None:
        ship = "null"
    else:
        checkpoint = shipment.last_checkpoint
        point = (
            "null"
            if checkpoint is None
            else f'{{"city":{_text(checkpoint.city)},"message":{_text(checkpoint.message)},'
            f'"time":{_iso_text(checkpoint.checkpoint_time)}}}'
        )
        ship = (
            f'{{"checkpoint":{point},"deliveryDate":{_iso_text(shipment.delivery_date)},'
            f'"failedDeliveryAttempts":{_text(shipment.failed_delivery_attempts)},'
            f'"lastUpdatedAt":{_iso_text(shipment.last_updated_at)},'
            f'"message":{_text(shipment.message)},"status":{_text(shipment.status)},'
            f'"trackingNumber":{_text(shipment.tracking_number)}}}'
        )
    canonical = (
        f'{{"detailsStatus":{_text(details.status)},"errorCode":{_text(op.error_code)},'
        f'"operation":{_text(op.operation)},"operationId":{_text(op.operation_id)},'
        f'"shipment":{ship},"status":{_text(op.status)},'
        f'"trackingType":{_text(details.tracking_type)}}}'
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _dedup_parts(op: Operation) -> dict[str, Any]:
    """The fields of the dedup key, as the dict whose canonical JSON `operation_dedup_key`
    hashes (the reference its tests compare the hand-written text against)."""
    shipment = op.details.shipment
    checkpoint = shipment.last_checkpoint if shipment else None
    return {
        "operationId": op.operation_id,
        "operation": op.operation,
        "status": op.status,
        "detailsStatus": op.details.status,
        "trackingType": op.details.tracking_type,
        "errorCode": op.error_code,
        "shipment": None
        if shipment is None
        else {
            "status": shipment.status,
            "message": shipment.message,
            "trackingNumber": shipment.tracking_number,
            "lastUpdatedAt": _iso(shipment.last_updated_at),
            "deliveryDate": _iso(shipment.delivery_date),
            "failedDeliveryAttempts": shipment.failed_delivery_attempts,
            "checkpoint": None
            if checkpoint is None
            else {
                "time": _iso(checkpoint.checkpoint_time),
                "city": checkpoint.city,
                "message": checkpoint.message,
            },
        },
    }


_ZERO = timedelta(0)


def _text(value: str | None) -> str:
    """A string (or None) as `json.dumps` writes it (ASCII, escaped)."""
    return "null" if value is None else encode_basestring_ascii(value)


def _iso_text(value: datetime | None) -> str:
    """`_iso(value)` as JSON text (isoformat is plain ASCII: nothing to escape)."""
    if value is None:
        return "null"
    if value.utcoffset() == _ZERO:  # already UTC: astimezone would only copy it
        return f'"{value.isoformat()}"'
    return f'"{value.astimezone(timezone.utc).isoformat()}"'


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


# What history never keeps: D1 notifications carry no PAN or address, but a free-text `error`
# might (and should D1 ever add a name or an address to `details`, they stay out too).
_NOT_STORED: dict[str, Any] = {"error": True, "details": {"delivery_address", "name"}}


def operation_json_for_storage(op: Operation) -> str:
    """The operation as stored in history, as JSON text: wire names, nothing sensitive.
    (Serialised by pydantic in one step: intake stores one per notification.)"""
    text = op.model_dump_json(by_alias=True, exclude_none=True, exclude=_NOT_STORED)
    if not op.pans_masked and contains_pan(text):  # never stored in full
        text = json.dumps(mask_pans_in(json.loads(text)), separators=(",", ":"))
    return text


def operation_for_storage(op: Operation) -> dict[str, Any]:
    """`operation_json_for_storage` as a dict."""
    stored: dict[str, Any] = json.loads(operation_json_for_storage(op))
    return stored
