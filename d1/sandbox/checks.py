"""What the sandbox refuses, as D1 does: track and order bodies checked against D1's published
rules, each refusal a D1 error code and the first bad field (the `error` D1 would name).

D1 does not fix what it is sent: values are checked as they are (a lower-case country code is
refused here even though our client would have capitalised it). Used in every mode; `strict`
mode (d1.sandbox.strict) adds the full schemas of the spec files on top.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from d1.models import CardOrderRequest
from d1.patterns import (
    COUNTRY_CODE,
    POSTAL_CODE,
    PRODUCTION_SITE_MAX,
    TRACK_FIELDS,
    TRACKING_NUMBER,
)

# (HTTP status, errorCode, error): D1's answer to a refused request.
Refusal = tuple[int, str, str]
_VALUE_ERRORS = frozenset({"literal_error", "enum", "union_tag_invalid"})
# Required by distribution channel (order-card.openapi.json: cardRequestThales/Instant/Central).
ORDER_REQUIRED: dict[str, tuple[str, ...]] = {
    "THALES": ("services", "encryptedData", "shipment", "paymentApplication"),
    "CENTRAL": ("services", "encryptedData", "shipment", "paymentApplication"),
    "INSTANT": ("services", "encryptedData", "paymentApplication", "persoStation"),
}
ADDRESS_REQUIRED = ("lastName", "line1", "zipCode", "city", "countryCode")  # `address` schema


def _format(field: str) -> Refusal:
    return 400, "FIELD_INVALID_FORMAT", field


def _value(field: str) -> Refusal:
    return 400, "FIELD_INVALID_VALUE", field


def first_bad_field(exc: ValidationError) -> Refusal:
    """D1's refusal for a pydantic error: its first field, named as on the wire."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if not (isinstance(p, str) and p.isupper())]
    if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
        names = str(first.get("ctx", {}).get("discriminator", "")).replace("'", "").split(" | ")
        loc.append(names[-1] or "body")
    field = ".".join(loc) or "body"
    return _value(field) if first["type"] in _VALUE_ERRORS else _format(field)


def _is_datetime_with_offset(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 20 or value[10:11] != "T":
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def track_refusal(body: Any) -> Refusal | None:
    """Why D1 would refuse this tracking-hub request body, or None."""
    if not isinstance(body, dict):
        return 400, "PARSING_ERROR", "body is not a JSON object"
    tracking_type = body.get("trackingType")
    if tracking_type not in TRACK_FIELDS:
        return _value("trackingType")
    required, _optional = TRACK_FIELDS[tracking_type]
    for name in required:
        if body.get(name) in (None, ""):
            return _format(name)
    checks = {
        "trackingNumber": lambda v: isinstance(v, str) and bool(TRACKING_NUMBER.fullmatch(v)),
        "postalCode": lambda v: isinstance(v, str) and bool(POSTAL_CODE.fullmatch(v)),
        "countryCode": lambda v: isinstance(v, str) and bool(COUNTRY_CODE.fullmatch(v)),
        "shipmentDate": _is_datetime_with_offset,
        "productionSite": lambda v: isinstance(v, str) and 0 < len(v) <= PRODUCTION_SITE_MAX,
    }
    for name, ok in checks.items():
        if name in body and not ok(body[name]):
            return _format(name)
    return None


def _jwe_refusal(value: Any) -> Refusal | None:
    """encryptedData must be a compact JWE for D1's key: ECDH-ES, A256GCM (D1-FACTS.md)."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 5:
        return 400, "CRYPTO_ERROR", "encryptedData"
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return 400, "CRYPTO_ERROR", "encryptedData"
    if not isinstance(header, dict) or not str(header.get("alg", "")).startswith("ECDH-ES"):
        return 400, "CRYPTO_ERROR", "encryptedData"
    if header.get("enc", "A256GCM") != "A256GCM":
        return 400, "CRYPTO_ERROR", "encryptedData"
    return None


def order_refusal(body: Any) -> Refusal | None:
    """Why D1 would refuse this card order body, or None."""
    if not isinstance(body, dict):
        return 400, "PARSING_ERROR", "body is not a JSON object"
    channel = body.get("distributionChannel")
    if isinstance(channel, str) and channel not in ORDER_REQUIRED:  # an enum: value not permitted
        return _value("distributionChannel")
    shipment = body.get("shipment")
    shipment_type = shipment.get("type") if isinstance(shipment, dict) else None
    if isinstance(shipment_type, str) and shipment_type not in ("INDIVIDUAL", "BULK"):
        return _value("shipment.type")
    try:
        CardOrderRequest.model_validate(body)
    except ValidationError as exc:
        return first_bad_field(exc)
    for name in ORDER_REQUIRED[body["distributionChannel"]]:
        if body.get(name) in (None, "", {}):
            return _format(name)
    if not isinstance((body.get("paymentApplication") or {}).get("config"), str):
        return _format("paymentApplication.config")
    shipment = body.get("shipment") or {}
    for part in ("deliveryAddress", "individualAddress"):
        address = shipment.get(part)
        if address is None:
            continue
        for name in ADDRESS_REQUIRED:
            if address.get(name) in (None, ""):
                return _format(f"shipment.{part}.{name}")
        if not POSTAL_CODE.fullmatch(str(address["zipCode"])):
            return _format(f"shipment.{part}.zipCode")
        if not COUNTRY_CODE.fullmatch(str(address["countryCode"])):
            return _format(f"shipment.{part}.countryCode")
    return _jwe_refusal(body.get("encryptedData"))


__all__ = ["Refusal", "first_bad_field", "order_refusal", "track_refusal"]
