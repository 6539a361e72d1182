"""D1's banking API, the calls the issuer makes: productionStatus answers, tracking-hub
requests, card orders, and D1's error body."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from d1.carddata import mask_pan
from d1.models.common import D1Model, Shipment, Timestamp

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


# --------------------------------------------------------------------------- errors


class D1ErrorBody(BaseModel):
    """D1's error body. `error` is for troubleshooting only: never shown to end users."""

    model_config = ConfigDict(extra="ignore")
    errorCode: str
    error: str | None = None


__all__ = [
    "Address",
    "CardOperationResponse",
    "CardOrderRequest",
    "CardPackageDetails",
    "D1ErrorBody",
    "OrderAddress",
    "OrderServices",
    "OrderShipment",
    "ProductionStatus",
    "ProductionTrackingRequest",
    "ReturnTrackingRequest",
    "Services",
    "ShipmentTrackingRequest",
    "TrackRequest",
    "track_request_adapter",
]
