"""The sandbox's scenarios: the ordered steps a card goes through, as data.

A PRODUCE operation moves through production statuses to `CARD_SHIPPED`, then carries shipment
updates (same operationId) until a final shipment state. Scenarios inject D1's exception paths.
Shipment messages come from D1's normalised-message table (production-status.openapi.json).
"""

from __future__ import annotations

from dataclasses import dataclass

# D1's normalised shipment messages, by shipment status (production-status.openapi.json).
SHIPMENT_MESSAGES: dict[str, tuple[str, ...]] = {
    "DELIVERED": (
        "DELIVERED",
        "Picked up by the customer",
        "Sign by customer",
        "Delivered and received cash on delivery",
    ),
    "AVAILABLE_FOR_PICKUP": ("Available for pickup",),
    "EXCEPTION": (
        "EXCEPTION",
        "Customer moved",
        "Customer refused delivery",
        "Delayed (Customs clearance)",
        "Delayed (External factors)",
        "Held for payment",
        "Incorrect Address",
        "Pick up missed",
        "Rejected by carrier",
        "Returning to sender",
        "Returned to sender",
        "Shipment damage",
        "Shipment lost",
    ),
    "FAILED_ATTEMPT": ("Failed Attempt", "Addressee not available", "Business Closed"),
    "IN_TRANSIT": (
        "In Transit",
        "Acceptance scan",
        "Arrival scan",
        "Arrived at the destination country/region",
        "Customs clearance completed",
        "Customs clearance started",
        "Departure Scan",
        "Problem resolved",
        "Forwarded to a different delivery address",
    ),
    "INFO_RECEIVED": ("Info Received",),
    "OUT_FOR_DELIVERY": (
        "Out for Delivery",
        "Customer contacted",
        "Delivery appointment scheduled",
    ),
    "PENDING": (
        "PENDING",
        "Carrier account not connected",
        "Label created, no updates yet",
        "Wrong carrier",
        "No recent updates",
        "Unrecognized carrier",
    ),
    "EXPIRED": ("Expired",),
}

# Exception messages a shipment EXCEPTION scenario picks from (the seed decides which).
SCENARIO_EXCEPTION_MESSAGES: tuple[str, ...] = (
    "Customer moved",
    "Customer refused delivery",
    "Delayed (Customs clearance)",
    "Held for payment",
    "Incorrect Address",
    "Shipment damage",
    "Shipment lost",
)
PICK = "*"  # a step message to be picked from SCENARIO_EXCEPTION_MESSAGES by the card's seed


@dataclass(frozen=True)
class Step:
    """One notification-worthy change: a production status and/or a shipment update."""

    production: str  # details.status
    op_status: str = "PENDING"  # the operation's status: PENDING | SUCCESSFUL | FAILED
    shipment: str | None = None  # shipment status, when this step is a carrier update
    message: str | None = None  # shipment message (PICK: chosen by the seed)
    reason: str | None = None  # details.reason for exceptions and holds
    error_code: str | None = None  # operation errorCode for FAILED steps


REQUESTED = Step("CARD_PROD_REQUESTED")
PREPARED = Step("DATA_PREPARED")
READY = Step("CARD_PROD_READY")
ONGOING = Step("CARD_PROD_ONGOING")
SHIPPED = Step(
    "CARD_SHIPPED", "SUCCESSFUL", shipment="PENDING", message="Label created, no updates yet"
)
INFO = Step("CARD_SHIPPED", "SUCCESSFUL", shipment="INFO_RECEIVED", message="Info Received")
TRANSIT = Step("CARD_SHIPPED", "SUCCESSFUL", shipment="IN_TRANSIT", message="In Transit")
ARRIVAL = Step("CARD_SHIPPED", "SUCCESSFUL", shipment="IN_TRANSIT", message="Arrival scan")
OUT = Step("CARD_SHIPPED", "SUCCESSFUL", shipment="OUT_FOR_DELIVERY", message="Out for Delivery")
DELIVERED = Step("CARD_SHIPPED", "SUCCESSFUL", shipment="DELIVERED", message="Sign by customer")

PRODUCTION = (REQUESTED, PREPARED, READY, ONGOING, SHIPPED)
SHIPPING = (INFO, TRANSIT, ARRIVAL, OUT, DELIVERED)

SCENARIOS: dict[str, tuple[Step, ...]] = {
    # Ordered, produced, shipped, delivered.
    "happy": PRODUCTION + SHIPPING,
    # Data preparation rejects the order: the operation fails, nothing more happens.
    "data_exception": (
        REQUESTED,
        Step(
            "DATA_EXCEPTION",
            "FAILED",
            reason="Embossing name contains unsupported characters",
            error_code="DATA_EXCEPTION",
        ),
    ),
    # Production is put on hold, then resumes and completes.
    "onhold": (
        REQUESTED,
        PREPARED,
        READY,
        Step("CARD_PROD_ONHOLD", reason="Plastic stock shortage at the production site"),
        ONGOING,
        SHIPPED,
        *SHIPPING,
    ),
    # The carrier reports a shipping exception (message picked by the seed); final.
    "shipment_exception": (
        *PRODUCTION,
        INFO,
        TRANSIT,
        Step("CARD_SHIPPED", "SUCCESSFUL", shipment="EXCEPTION", message=PICK),
    ),
    # A failed delivery attempt, then delivered on the second try.
    "failed_attempt": (
        *PRODUCTION,
        INFO,
        TRANSIT,
        OUT,
        Step(
            "CARD_SHIPPED",
            "SUCCESSFUL",
            shipment="FAILED_ATTEMPT",
            message="Addressee not available",
        ),
        OUT,
        DELIVERED,
    ),
    # Undeliverable: back to the sender. D1 reports CARD_RETURNED only when the issuer asks
    # the tracking hub (`track` RETURN): no scenario sends what nobody requested.
    "return": (
        *PRODUCTION,
        INFO,
        TRANSIT,
        OUT,
        Step("CARD_SHIPPED", "SUCCESSFUL", shipment="EXCEPTION", message="Returning to sender"),
        Step("CARD_SHIPPED", "SUCCESSFUL", shipment="EXCEPTION", message="Returned to sender"),
    ),
    # Production itself fails (instant issuance style).
    "prod_exception": (
        REQUESTED,
        PREPARED,
        READY,
        ONGOING,
        Step(
            "CARD_PROD_EXCEPTION",
            "FAILED",
            reason="Chip personalisation failed",
            error_code="CARD_PROD_EXCEPTION",
        ),
    ),
    # The issuer cancels before production.
    "canceled": (
        REQUESTED,
        PREPARED,
        Step("CARD_PROD_CANCELED", "FAILED", reason="Canceled by the issuer"),
    ),
    # A card produced outside D1: only the tracking hub (`track`) makes it move.
    "external": (),
}

# Tracking-hub SHIPMENT: after the PENDING notification, these SUCCESSFUL updates follow.
TRACKING_SHIPMENT_STEPS: tuple[Step, ...] = (INFO, TRANSIT, OUT, DELIVERED)

DEFAULT_SCENARIO = "happy"


def scenario_for_card_id(card_id: str, default: str = DEFAULT_SCENARIO) -> str:
    """Cards ordered over HTTP pick a scenario by id prefix: `onhold-42`, `data_exception-1`,
    `shipment-exception-7` ... anything else gets `default`."""
    normalised = card_id.lower().replace("-", "_")
    for name in sorted(SCENARIOS, key=len, reverse=True):
        if normalised.startswith(name + "_"):
            return name
    return default


__all__ = [
    "DEFAULT_SCENARIO",
    "PICK",
    "SCENARIOS",
    "SCENARIO_EXCEPTION_MESSAGES",
    "SHIPMENT_MESSAGES",
    "TRACKING_SHIPMENT_STEPS",
    "Step",
    "scenario_for_card_id",
]
