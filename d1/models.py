"""D1's payloads as pydantic models, and the D1 semantics the rest of the product relies on.

camelCase on the wire, snake_case in Python. D1 says to treat unknown fields, unknown enum values
and unknown operations as forward-compatible, so every model ignores unknown fields and every
D1 "enum" is a plain string here; the known values are listed as constants for readability.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)
from pydantic.alias_generators import to_camel

from d1.carddata import mask_pan

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


# --------------------------------------------------------------------------- production status


class Services(D1Model):
    card_product_id: str | None = None
    issuance: str | None = None
    priority: str | None = None
    delivery: str | None = None
    packaging: str | None = None
    card_carrier: str | None = None


class CardPackageDetails(D1Model):
    plastic: str | None = None
    artwork_id: str | None = None
    card_carrier: str | None = None
    envelope: str | None = None
    package: str | None = None
    card_activation_label: str | None = None
    inserts: list[str] | None = None


class Address(D1Model):
    """A postal address. Personal data: ephemeral replies only, never channels or logs."""

    company_name: str | None = None
    line1: str | None = None
    line2: str | None = None
    line3: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    country_code: str | None = None


class ProductionStatus(D1Model):
    """The answer of `GET .../physicalCards/{cardId}/productionStatus`."""

    status: str
    reason: str | None = None
    consumer_id: str | None = None
    issuer_request_id: str | None = None
    due_date: date | None = None
    production_request_date: Timestamp | None = None
    production_date: Timestamp | None = None
    production_site: str | None = None
    name: str | None = Field(default=None, repr=False)
    masked_pan: str | None = None
    order_id: str | None = None
    package_id: str | None = None
    shipment: Shipment | None = None
    services: Services | None = None
    input_file_name: str | None = None
    card_package_details: CardPackageDetails | None = None
    delivery_address: Address | None = Field(default=None, repr=False)

    @field_validator("due_date", mode="before")
    @classmethod
    def _date_only(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 10 and value[10:11] == "T":
            return value[:10]
        return value

    @field_validator("masked_pan")
    @classmethod
    def _masked_only(cls, value: str | None) -> str | None:
        # Defence in depth: whatever D1 sends here, we only ever keep a masked form.
        return mask_pan(value) if value is not None else None


# --------------------------------------------------------------------------- notifications


class OperationDetails(D1Model):
    """`details` of a notification operation; PRODUCE and STANDALONE_TRACKING share this shape."""

    status: str | None = None
    tracking_type: str | None = None
    production_site: str | None = None
    reason: str | None = None
    due_date: date | None = None
    shipment: Shipment | None = None
    input_file_name: str | None = None
    issuer_request_id: str | None = None

    @field_validator("due_date", mode="before")
    @classmethod
    def _date_only(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 10 and value[10:11] == "T":
            return value[:10]
        return value


class Operation(D1Model):
    """One notification operation, as D1 posts it to the issuer's callback."""

    operation_id: str = Field(min_length=1, max_length=128)
    operation: str = Field(min_length=1, max_length=64)
    status: str = Field(min_length=1, max_length=32)
    card_id: str = Field(min_length=1, max_length=64, pattern=CARD_ID_PATTERN.pattern)
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    timestamp: Timestamp | None = None
    issuer_id: str | None = None
    details: OperationDetails = Field(default_factory=OperationDetails)
    error_code: str | None = None
    error: str | None = None
    input_file_name: str | None = None
    issuer_request_id: str | None = None

    @field_validator("details", mode="before")
    @classmethod
    def _details_object(cls, value: Any) -> Any:
        return {} if value is None else value


class OperationsEnvelope(D1Model):
    """The bulk body D1 sends: `{"operations": [...]}`."""

    operations: list[Operation] = Field(min_length=1)


# --------------------------------------------------------------------------- tracking hub


class ProductionTrackingRequest(D1Model):
    tracking_type: Literal["PRODUCTION"] = "PRODUCTION"
    production_site: str = Field(min_length=1, max_length=50)


class ShipmentTrackingRequest(D1Model):
    tracking_type: Literal["SHIPMENT"] = "SHIPMENT"
    tracking_number: str = Field(pattern=r"^[A-Za-z0-9 _\-\./]{1,64}$")
    shipment_date: AwareDatetime
    production_site: str | None = Field(default=None, min_length=1, max_length=50)
    postal_code: str = Field(min_length=1, max_length=10, pattern=r"^[0-9A-Za-z\- ]{1,10}$")
    country_code: str = Field(pattern=r"^[A-Z]{2}$")


class ReturnTrackingRequest(D1Model):
    tracking_type: Literal["RETURN"] = "RETURN"
    production_site: str = Field(min_length=1, max_length=50)


TrackRequest = Annotated[
    ProductionTrackingRequest | ShipmentTrackingRequest | ReturnTrackingRequest,
    Field(discriminator="tracking_type"),
]
track_request_adapter: TypeAdapter[Any] = TypeAdapter(TrackRequest)


# --------------------------------------------------------------------------- card order


class OrderServices(D1Model):
    issuance: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    priority: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    delivery: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    packaging: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    card_carrier: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    pin_mailer: bool | None = None


class OrderAddress(Address):
    """The order's shipping address: an `Address` plus the recipient (personal data)."""

    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    line4: str | None = None
    mobile_phone_number: dict[str, Any] | None = None
    email: str | None = None


class OrderShipment(D1Model):
    type: str = Field(pattern=r"^(INDIVIDUAL|BULK)$")
    delivery_address: OrderAddress
    individual_address: OrderAddress | None = None
    group_id: str | None = Field(default=None, min_length=1, max_length=64)
    order_id: str | None = Field(default=None, min_length=1, max_length=64)


class CardOrderRequest(D1Model):
    """`POST .../operations:production` body (THALES, CENTRAL or INSTANT distribution)."""

    distribution_channel: str = Field(pattern=r"^(THALES|INSTANT|CENTRAL)$")
    consumer_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    card_product_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,48}$")
    issuer_request_id: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    services: OrderServices
    encrypted_data: str = Field(min_length=1, repr=False)
    payment_application: dict[str, Any] | None = None
    card_design: dict[str, Any] | None = None
    card_carrier_config: dict[str, Any] | None = None
    packaging_config: dict[str, Any] | None = None
    shipment: OrderShipment | None = None
    perso_center: str | None = None
    perso_station: str | None = None


class CardOperationResponse(D1Model):
    operation_id: str


# --------------------------------------------------------------------------- errors and tokens


class D1ErrorBody(BaseModel):
    """D1's error body. `error` is for troubleshooting only: never shown to end users."""

    model_config = ConfigDict(extra="ignore")
    errorCode: str
    error: str | None = None


class TokenResponse(BaseModel):
    """OAuth 2.0 token answer (both D1's and the one we issue to D1). snake_case on the wire."""

    model_config = ConfigDict(extra="ignore")
    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: int = 900
    expires_at: int | None = None
    scope: str | None = None


def parse_operations(body: Any) -> list[Operation]:
    """Parse a callback body: `{"operations": [...]}` or a single operation object.
    Raises pydantic.ValidationError on the first bad field."""
    if isinstance(body, dict) and "operations" in body:
        return OperationsEnvelope.model_validate(body).operations
    return [Operation.model_validate(body)]
