"""The sandbox's lifecycle engine: card state and the notification operations each step emits.

Pure: the caller passes the time and gets D1-shaped wire dicts back; no I/O, no global state.
Each card has a seeded random generator (seed + card id), so ids, tracking numbers and picked
messages do not depend on the order in which cards are created or moved.

Times: each step happens at the sandbox clock's "now", but never at or before the card's
previous event (+1 s), so every notification of a card has a distinct, increasing event time
even when a whole scenario is queued at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from d1.sandbox.scenarios import (
    PICK,
    SCENARIO_EXCEPTION_MESSAGES,
    SCENARIOS,
    TRACKING_SHIPMENT_STEPS,
    Step,
)

TRACKING_URLS: dict[str, str] = {
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "ups": "https://www.ups.com/track?tracknum={}",
    "dhl": "https://www.dhl.com/en/express/tracking.html?AWB={}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "la-poste-colissimo": "https://www.laposte.fr/outils/suivre-vos-envois?code={}",
}
CHECKPOINTS: tuple[tuple[str, str], ...] = (
    ("Paris", "France"),
    ("Lyon", "France"),
    ("Leipzig", "Germany"),
    ("Memphis", "United States"),
    ("London", "United Kingdom"),
    ("Madrid", "Spain"),
)
DEFAULT_PRODUCTION_SITE = "PERSO-CENTER-FR-01"


def iso(value: datetime) -> str:
    """D1's timestamp format: `YYYY-MM-DDThh:mm:ssZ`, UTC."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """One D1 operation in flight for a card (a PRODUCE order or a tracking-hub request)."""

    operation_id: str
    operation: str  # PRODUCE | STANDALONE_TRACKING
    steps: list[Step]
    tracking_type: str | None = None
    cursor: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.steps)


@dataclass
class CardState:
    """Everything the sandbox knows about one card."""

    card_id: str
    issuer_id: str
    scenario: str
    rng: random.Random
    masked_pan: str | None = None
    name: str | None = None
    address: dict[str, Any] | None = None
    carrier: str = "fedex"
    production_site: str = DEFAULT_PRODUCTION_SITE
    runs: list[Run] = field(default_factory=list)
    status: str | None = None  # latest production status (PRODUCE details.status)
    tracking_status: str | None = None  # latest tracking-hub details.status
    reason: str | None = None
    shipment: dict[str, Any] | None = None  # latest shipment, wire names
    ordered: bool = False
    order_id: str | None = None
    package_id: str | None = None
    issuer_request_id: str | None = None
    consumer_id: str | None = None
    services: dict[str, Any] = field(default_factory=dict)
    tracking_number: str | None = None
    production_request_date: datetime | None = None
    production_date: datetime | None = None
    failed_attempts: int = 0
    last_time: datetime | None = None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    @property
    def can_move(self) -> bool:
        return any(not run.done for run in self.runs)


def new_card(
    *,
    card_id: str,
    issuer_id: str,
    scenario: str,
    seed: int,
    masked_pan: str | None,
    name: str | None,
    address: dict[str, Any] | None,
    carrier: str,
    now: datetime,
) -> CardState:
    """A card D1 knows, waiting for its order (the PRODUCE run's first step)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    card = CardState(
        card_id=card_id,
        issuer_id=issuer_id,
        scenario=scenario,
        rng=random.Random(f"{seed}:{card_id}"),
        masked_pan=masked_pan,
        name=name,
        address=address,
        carrier=carrier,
    )
    card.order_id = card.new_id("ord")
    card.package_id = card.new_id("pkg")
    card.tracking_number = str(card.rng.randrange(10**11, 10**12))
    card.services = {"issuance": "CREATION", "delivery": "STANDARD", "packaging": "NO_PACK"}
    steps = list(SCENARIOS[scenario])
    if steps:
        card.runs.append(Run(card.new_id("op"), "PRODUCE", steps))
        card.status = steps[0].production
        card.production_request_date = _second(now)
    return card


def apply_order(card: CardState, order: dict[str, Any]) -> None:
    """Keep what a productionStatus answer reports from the order request (wire dict)."""
    card.ordered = True
    card.issuer_request_id = order.get("issuerRequestId") or card.issuer_request_id
    card.consumer_id = order.get("consumerId") or card.consumer_id
    services = order.get("services") or {}
    card.services = {
        "issuance": services.get("issuance", "CREATION"),
        "delivery": services.get("delivery", "STANDARD"),
        "packaging": services.get("packaging", "NO_PACK"),
    }
    if order.get("cardProductId"):
        card.services["cardProductId"] = order["cardProductId"]
    address = (order.get("shipment") or {}).get("deliveryAddress")
    if address:
        keep = ("companyName", "line1", "line2", "line3", "city", "state", "zipCode", "countryCode")
        card.address = {k: address[k] for k in keep if k in address}
        names = [address.get("firstName"), address.get("lastName")]
        card.name = " ".join(n for n in names if n)[:50].upper() or card.name


def advance(card: CardState, now: datetime) -> list[dict[str, Any]]:
    """One step of the card's oldest unfinished operation; the operations it emits."""
    for run in card.runs:
        if not run.done:
            step = run.steps[run.cursor]
            run.cursor += 1
            if run.operation == "PRODUCE" and run.cursor == 1:
                card.ordered = True
            return [_emit(card, run, step, _tick(card, now))]
    return []


def start_tracking(card: CardState, request: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """A tracking-hub request (wire dict, already validated): PRODUCTION and RETURN answer with
    one SUCCESSFUL notification; SHIPMENT with one PENDING now and SUCCESSFUL updates later
    (one per `advance`), all under the same operationId."""
    tracking_type = request["trackingType"]
    if request.get("productionSite"):
        card.production_site = request["productionSite"]
    when = _tick(card, now)
    if tracking_type == "SHIPMENT":
        card.tracking_number = request.get("trackingNumber") or card.tracking_number
        run = Run(
            card.new_id("op"), "STANDALONE_TRACKING", list(TRACKING_SHIPMENT_STEPS), "SHIPMENT"
        )
        card.runs.append(run)
        return [_emit(card, run, Step("CARD_SHIPPED", "PENDING"), when)]
    status = "CARD_RETURNED" if tracking_type == "RETURN" else "CARD_SHIPPED"
    run = Run(card.new_id("op"), "STANDALONE_TRACKING", [], tracking_type)
    card.runs.append(run)
    return [_emit(card, run, Step(status, "SUCCESSFUL"), when)]


def status_body(card: CardState) -> dict[str, Any] | None:
    """The productionStatus answer for the card (None: D1 has no status for it yet). Its
    `status` is the production status, always a value of D1's enum: a card produced outside
    D1 and only tracked reports CARD_SHIPPED (the tracking hub's CARD_RETURNED is not in
    productionStatus's enum; the shipment block says what became of it)."""
    status = card.status or ("CARD_SHIPPED" if card.tracking_status else None)
    if status is None:
        return None
    body: dict[str, Any] = {"status": status}
    if card.reason:
        body["reason"] = card.reason
    optional = {
        "consumerId": card.consumer_id,
        "issuerRequestId": card.issuer_request_id,
        "productionSite": card.production_site,
        "name": card.name[:50] if card.name else None,
        "maskedPan": card.masked_pan,
        "orderId": card.order_id,
        "packageId": card.package_id,
        "shipment": dict(card.shipment) if card.shipment else None,
        "deliveryAddress": dict(card.address) if card.address else None,
    }
    if card.production_request_date is not None:
        body["productionRequestDate"] = iso(card.production_request_date)
        body["dueDate"] = (card.production_request_date.date() + timedelta(days=5)).isoformat()
    if card.production_date is not None:
        body["productionDate"] = iso(card.production_date)
    body.update({k: v for k, v in optional.items() if v})
    if any(run.operation == "PRODUCE" for run in card.runs):
        body["services"] = dict(card.services)
    return body


# ---------------------------------------------------------------------- internals


def _second(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(microsecond=0)


def _tick(card: CardState, now: datetime) -> datetime:
    when = _second(now)
    if card.last_time is not None and when <= card.last_time:
        when = card.last_time + timedelta(seconds=1)
    card.last_time = when
    return when


def _emit(card: CardState, run: Run, step: Step, when: datetime) -> dict[str, Any]:
    """Apply `step` to the card and build the notification operation it produces."""
    if run.start_time is None:
        run.start_time = when
    if step.op_status in ("SUCCESSFUL", "FAILED") and run.end_time is None:
        run.end_time = when
    if run.operation == "PRODUCE":
        card.status = step.production
    else:
        card.tracking_status = step.production
    if step.production == "CARD_PROD_REQUESTED":
        card.production_request_date = when
    if step.production == "CARD_SHIPPED" and card.production_date is None:
        card.production_date = when
    if step.reason or step.shipment is None:
        card.reason = step.reason
    details: dict[str, Any] = {"status": step.production, "productionSite": card.production_site}
    if run.tracking_type:
        details = {"trackingType": run.tracking_type, **details}
    if step.reason:
        details["reason"] = step.reason
    if run.operation == "PRODUCE":
        details["dueDate"] = (
            (card.production_request_date or when).date() + timedelta(days=5)
        ).isoformat()
        if card.issuer_request_id:
            details["issuerRequestId"] = card.issuer_request_id
    if step.shipment is not None:
        card.shipment = _shipment(card, step, when)
        details["shipment"] = dict(card.shipment)
    op: dict[str, Any] = {
        "operationId": run.operation_id,
        "operation": run.operation,
        "status": step.op_status,
        "issuerId": card.issuer_id,
        "cardId": card.card_id,
        "startTime": iso(run.start_time),
        "timestamp": iso(when),
        "details": details,
    }
    if run.end_time is not None:
        op["endTime"] = iso(run.end_time)
    if step.error_code:
        op["errorCode"] = step.error_code
        op["error"] = f"{step.production}: {step.reason or 'see details'}"
    if run.operation == "PRODUCE" and card.issuer_request_id:
        op["issuerRequestId"] = card.issuer_request_id
    return op


def _shipment(card: CardState, step: Step, when: datetime) -> dict[str, Any]:
    status = step.shipment or "PENDING"
    message = step.message or status
    if message == PICK:
        message = card.rng.choice(SCENARIO_EXCEPTION_MESSAGES)
    number = card.tracking_number or "0"
    shipment: dict[str, Any] = {
        "carrier": card.carrier,
        "trackingNumber": number,
        "status": status,
        "message": message,
        "lastUpdatedAt": iso(when),
    }
    url = TRACKING_URLS.get(card.carrier)
    if url:
        shipment["trackingUrl"] = url.format(number)
    eta: date = ((card.production_date or when) + timedelta(days=3)).date()
    shipment["estimatedDeliveryDate"] = f"{eta.isoformat()}T00:00:00Z"
    if status != "PENDING":
        city, country = card.rng.choice(CHECKPOINTS)
        shipment["lastCheckpoint"] = {
            "checkpointTime": iso(when),
            "city": city,
            "countryName": country,
            "message": message,
        }
    if status == "FAILED_ATTEMPT":
        card.failed_attempts += 1
    if card.failed_attempts:
        shipment["failedDeliveryAttempts"] = str(card.failed_attempts)
    if status == "DELIVERED":
        shipment["deliveryDate"] = iso(when)
        shipment["signedBy"] = "Recipient"
    return shipment


__all__ = [
    "CardState",
    "Run",
    "advance",
    "apply_order",
    "iso",
    "new_card",
    "start_tracking",
    "status_body",
]
