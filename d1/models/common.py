"""The vocabulary every D1 payload shares: D1's known values, the base model, timestamps and
the shipment block that both notifications and productionStatus answers carry.

camelCase on the wire, snake_case in Python. D1 says to treat unknown fields, unknown enum values
and unknown operations as forward-compatible, so every model ignores unknown fields and every
D1 "enum" is a plain string here; the known values are listed as constants for readability.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# --------------------------------------------------------------------------- known values

PRODUCTION_STATUSES: tuple[str, ...] = (
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
    "CARD_SHIPPED",
    "CARD_PROD_CANCELED",
    "CARD_PROD_ONHOLD",
    "DATA_EXCEPTION",
    "CARD_PROD_EXCEPTION",
)
TRACKING_STATUSES: tuple[str, ...] = ("CARD_SHIPPED", "CARD_RETURNED")
SHIPMENT_STATUSES: tuple[str, ...] = (
    "PENDING",
    "INFO_RECEIVED",
    "IN_TRANSIT",
    "OUT_FOR_DELIVERY",
    "FAILED_ATTEMPT",
    "AVAILABLE_FOR_PICKUP",
    "EXCEPTION",
    "EXPIRED",
    "DELIVERED",
)
OPERATION_STATUSES: tuple[str, ...] = ("PENDING", "SUCCESSFUL", "FAILED")
OPERATIONS: tuple[str, ...] = ("PRODUCE", "STANDALONE_TRACKING", "UPDATE_ORDER")
TRACKING_TYPES: tuple[str, ...] = ("PRODUCTION", "SHIPMENT", "RETURN")

CARRIER_NAMES: dict[str, str] = {
    "chronopost-france": "Chronopost France",
    "dhl": "DHL Express",
    "dhl-global-mail": "DHL Global Mail",
    "deutsch-post": "Deutsche Post",
    "estafeta": "Estafeta",
    "fedex": "FedEx",
    "la-poste-colissimo": "La Poste Colissimo",
    "nacex": "NACEX",
    "spanish-seur": "SEUR",
    "singapore-post": "Singapore Post",
    "spain-correos-es": "Correos de España",
    "ups": "UPS",
    "usps": "USPS",
    "usps-iv-api": "USPS",
}

PRODUCTION_STATUS_WORDS: dict[str, str] = {
    "CARD_PROD_REQUESTED": "Production requested",
    "DATA_PREPARED": "Data prepared",
    "CARD_PROD_READY": "Ready for production",
    "CARD_PROD_ONGOING": "In production",
    "CARD_PROD_DONE": "Produced",
    "CARD_SHIPPED": "Shipped",
    "CARD_PROD_CANCELED": "Production cancelled",
    "CARD_PROD_ONHOLD": "Production on hold",
    "DATA_EXCEPTION": "Data rejected",
    "CARD_PROD_EXCEPTION": "Production failed",
    "CARD_RETURNED": "Returned to sender",
}
SHIPMENT_STATUS_WORDS: dict[str, str] = {
    "PENDING": "Awaiting carrier data",
    "INFO_RECEIVED": "Label created",
    "IN_TRANSIT": "In transit",
    "OUT_FOR_DELIVERY": "Out for delivery",
    "FAILED_ATTEMPT": "Delivery attempt failed",
    "AVAILABLE_FOR_PICKUP": "Available for pickup",
    "EXCEPTION": "Shipping exception",
    "EXPIRED": "Tracking expired",
    "DELIVERED": "Delivered",
}

# D1's identifier pattern (operationId, orderId, oldCardId ...); card ids follow it.
OPERATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CARD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ISSUER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------- base model


class D1Model(BaseModel):
    """Base for D1 payloads: camelCase aliases, unknown fields ignored, both names accepted."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with D1's exact field names and no unset fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# An ISO 8601 date, or date-time with optional fraction and offset: what D1 writes. Numbers and
# numeric strings are not times (pydantic would read them as seconds since 1970).
_ISO_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?P<time>[Tt ]\d{2}:\d{2}(?::(?P<second>\d{2})(?:[.,]\d{1,9})?)?"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?)?$"
)


def _d1_time(value: Any) -> Any:
    """D1's timestamps as pydantic should read them, leniently where D1 may be: a date alone is
    its midnight, a leap second (`23:59:60`) the last moment of its minute, and a time without
    offset is UTC. Anything but ISO text (a number, `"123"`) is refused."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    match = _ISO_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected an ISO 8601 date-time")
    if match["time"] is None:  # a date alone
        return value + "T00:00:00Z"
    if match["second"] == "60":  # a leap second: pydantic (like Python) has no second 60
        offset = match["offset"] or ""
        value = value[: match.start("second")] + "59.999999" + offset
    return value if match["offset"] else value + "Z"


def _representable_in_utc(value: datetime) -> datetime:
    """Refuse a time that leaves years 1-9999 when converted to UTC (`0001-01-01T00:00+01:00`):
    it could be neither compared nor stored."""
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise PydanticCustomError("time_out_of_range", "outside years 1-9999 in UTC") from None
    return value


def _d1_date(value: Any) -> Any:
    """A date as D1 writes it: ISO text of a date (a time after it is ignored). Numbers are
    not dates (pydantic would read them as seconds since 1970)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_TIME.match(value):
        raise ValueError("expected an ISO 8601 date")
    return value[:10]


# A calendar date (`details.dueDate`).
CalendarDate = Annotated[date, BeforeValidator(_d1_date)]

Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_d1_time), AfterValidator(_representable_in_utc)
]


def _wall_clock(value: datetime) -> datetime:
    """The date and time as written, whatever offset (or `Z`) followed: D1 writes these in the
    local time of the place they describe. Kept as that wall clock, tagged UTC so that it sorts
    and stores like the instants; shown as written, never shifted into a reader's timezone."""
    return value.replace(tzinfo=timezone.utc)


# A local date-time of a place (`estimatedDeliveryDate`, `deliveryDate`, `pickupDate`,
# `checkpointTime`): the wall clock D1 wrote, see `_wall_clock`.
LocalTime = Annotated[AwareDatetime, BeforeValidator(_d1_time), AfterValidator(_wall_clock)]


# --------------------------------------------------------------------------- shipment


class LastCheckpoint(D1Model):
    model_config = ConfigDict(extra="allow")  # stored as D1 sent it, new fields included

    checkpoint_time: LocalTime | None = None
    city: str | None = None
    country_name: str | None = None
    message: str | None = None


class Shipment(D1Model):
    """`details.shipment` / `productionStatus.shipment`: carrier tracking as D1 normalises it."""

    model_config = ConfigDict(extra="allow")  # stored as D1 sent it, new fields included

    carrier: str | None = None
    tracking_number: str | None = None
    status: str | None = None
    message: str | None = None
    tracking_url: str | None = None
    redirect_url: str | None = None
    estimated_delivery_date: LocalTime | None = None
    last_updated_at: Timestamp | None = None
    delivery_date: LocalTime | None = None
    signed_by: str | None = None
    failed_delivery_attempts: str | None = None
    pickup_date: LocalTime | None = None
    last_checkpoint: LastCheckpoint | None = None

    @field_validator("failed_delivery_attempts", mode="before")
    @classmethod
    def _attempts_as_text(cls, value: Any) -> Any:
        # The schema says string; carriers' feeds sometimes send a (64-bit) number, which
        # JSON may write as `3.0`.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise PydanticCustomError("int_out_of_range", "an integer beyond 64 bits")
            return str(value)
        return value

    @property
    def carrier_name(self) -> str | None:
        if self.carrier is None:
            return None
        return CARRIER_NAMES.get(self.carrier, self.carrier)


# --------------------------------------------------------------------------- tokens


class TokenResponse(BaseModel):
    """OAuth 2.0 token answer (both D1's and the one we issue to D1). snake_case on the wire."""

    model_config = ConfigDict(extra="ignore")
    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: int = 900
    # D1's OAuth pages write it as an ISO 8601 UTC time ("2023-06-06T05:05:59.711Z").
    expires_at: datetime | None = None
    scope: str | None = None

    @field_validator("expires_in", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        """A fractional or string lifetime ("899.6", 899.6) as whole seconds, rounded down:
        a token is never thought valid longer than it is."""
        if isinstance(value, str):
            value = float(value.strip())
        return int(value) if isinstance(value, float) and value == value else value

    @field_serializer("expires_at")
    def _iso_utc(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return (
            value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )


__all__ = [
    "CARD_ID_PATTERN",
    "CARRIER_NAMES",
    "ISSUER_ID_PATTERN",
    "OPERATIONS",
    "OPERATION_ID_PATTERN",
    "OPERATION_STATUSES",
    "PRODUCTION_STATUSES",
    "PRODUCTION_STATUS_WORDS",
    "SHIPMENT_STATUSES",
    "SHIPMENT_STATUS_WORDS",
    "TRACKING_STATUSES",
    "TRACKING_TYPES",
    "CalendarDate",
    "D1Model",
    "LastCheckpoint",
    "LocalTime",
    "Shipment",
    "Timestamp",
    "TokenResponse",
]
