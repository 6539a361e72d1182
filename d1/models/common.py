"""The vocabulary every D1 payload shares: D1's known values, the base model, timestamps and
the shipment block that both notifications and productionStatus answers carry.

camelCase on the wire, snake_case in Python. D1 says to treat unknown fields, unknown enum values
and unknown operations as forward-compatible, so every model ignores unknown fields and every
D1 "enum" is a plain string here; the known values are listed as constants for readability.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic.alias_generators import to_camel

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


def _naive_is_utc(value: Any) -> Any:
    """D1 timestamps are UTC; a naive one (a string without offset, or a naive datetime) is
    read as UTC rather than rejected. Applied to timestamp fields only: free text that happens
    to look like a date is never touched."""
    if isinstance(value, str):
        if len(value) >= 19 and value[10:11] == "T":
            tail = value[19:]  # fraction and offset: no offset sign or Z means naive
            if "Z" not in tail and "z" not in tail and "+" not in tail and "-" not in tail:
                return value + "Z"
        return value
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_naive_is_utc)]


# --------------------------------------------------------------------------- shipment


class LastCheckpoint(D1Model):
    checkpoint_time: Timestamp | None = None
    city: str | None = None
    country_name: str | None = None
    message: str | None = None


class Shipment(D1Model):
    """`details.shipment` / `productionStatus.shipment`: carrier tracking as D1 normalises it."""

    carrier: str | None = None
    tracking_number: str | None = None
    status: str | None = None
    message: str | None = None
    tracking_url: str | None = None
    redirect_url: str | None = None
    estimated_delivery_date: Timestamp | None = None
    last_updated_at: Timestamp | None = None
    delivery_date: Timestamp | None = None
    signed_by: str | None = None
    failed_delivery_attempts: str | None = None
    pickup_date: Timestamp | None = None
    last_checkpoint: LastCheckpoint | None = None

    @field_validator("failed_delivery_attempts", mode="before")
    @classmethod
    def _attempts_as_text(cls, value: Any) -> Any:
        # The schema says string; carriers' feeds sometimes send a number.
        return str(value) if isinstance(value, int) else value

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
    expires_at: int | None = None
    scope: str | None = None


__all__ = [
    "CARD_ID_PATTERN",
    "CARRIER_NAMES",
    "ISSUER_ID_PATTERN",
    "OPERATIONS",
    "OPERATION_STATUSES",
    "PRODUCTION_STATUSES",
    "PRODUCTION_STATUS_WORDS",
    "SHIPMENT_STATUSES",
    "SHIPMENT_STATUS_WORDS",
    "TRACKING_STATUSES",
    "TRACKING_TYPES",
    "D1Model",
    "LastCheckpoint",
    "Shipment",
    "Timestamp",
    "TokenResponse",
]
