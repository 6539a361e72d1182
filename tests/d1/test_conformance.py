"""Conformance with D1's published schemas (d1/spec): the sandbox's answers and
notifications, and the client's request bodies.

The schemas' patterns use `\\p{L}` and loose character classes: they are checked as published
with the `regex` package. OpenAPI `discriminator`s pick the `oneOf` branch, as D1 documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx
import jsonschema
import pytest
import regex
from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators

from d1.models import CardOrderRequest, OrderServices, OrderShipment, track_request_adapter
from d1.sandbox import SCENARIOS, Sandbox
from tests.d1_fixtures import make_client, running_sandbox, sandbox_config
from tests.spec_examples import load_schema, track_request_examples

STATUS_DOC = load_schema("production-status.openapi.json")
ORDER_DOC = load_schema("order-card.openapi.json")


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _one_of(validator: Any, one_of: list, instance: Any, schema: dict) -> Iterator[ValidationError]:
    discriminator = schema.get("discriminator")
    if discriminator and isinstance(instance, dict):
        tag = instance.get(discriminator["propertyName"])
        target = discriminator.get("mapping", {}).get(tag)
        if target is None:
            yield ValidationError(f"unknown {discriminator['propertyName']} {tag!r}")
            return
        yield from validator.descend(instance, {"$ref": target})
        return
    yield from jsonschema._keywords.oneOf(validator, one_of, instance, schema)


_formats = FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@_formats.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    return isinstance(value, str) and date.fromisoformat(value) is not None


D1Validator = validators.extend(Draft7Validator, {"pattern": _pattern, "oneOf": _one_of})


def validate(doc: dict, name: str, instance: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    D1Validator(schema, format_checker=_formats).validate(instance)


def test_every_schema_pattern_compiles_with_regex() -> None:
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(STATUS_DOC)
    walk(ORDER_DOC)
    assert len(patterns) > 20
    for pattern in patterns:
        regex.compile(pattern)


def test_validator_rejects_what_the_schema_forbids() -> None:
    with pytest.raises(ValidationError):
        validate(STATUS_DOC, "productionStatus", {"status": "CARD_SHIPPED", "maskedPan": "4111"})
    with pytest.raises(ValidationError):
        validate(STATUS_DOC, "productionStatus", {"reason": "no status"})
    with pytest.raises(ValidationError):
        validate(STATUS_DOC, "shipment-2", {"lastUpdatedAt": "yesterday"})
    address = {"line1": "Straße 1", "zipCode": "10115", "city": "Köln", "countryCode": "DE"}
    validate(STATUS_DOC, "addressInProduceNotification", address)  # \\p{L} accepts umlauts


async def test_sandbox_status_answers_validate_at_every_step() -> None:
    address = {
        "line1": "12 Rue de Rivoli",
        "city": "Paris",
        "zipCode": "75001",
        "countryCode": "FR",
    }
    async with running_sandbox() as (sb, url):
        cards = [name for name in SCENARIOS if name != "external"]
        for name in cards:
            sb.create_card(f"card-{name.replace('_', '-')}", scenario=name, address=address)
        async with make_client(url, sb) as client, httpx.AsyncClient() as http:
            token = await client._tokens.get()
            headers = {"authorization": f"Bearer {token}"}
            base = f"{url}/banking/v1/issuers/issuer-001/physicalCards"
            seen: set[str] = set()
            while True:
                for card_id in sb.cards:
                    answer = await http.get(f"{base}/{card_id}/productionStatus", headers=headers)
                    assert answer.status_code == 200
                    validate(STATUS_DOC, "productionStatus", answer.json())
                    seen.add(answer.json()["status"])
                if not sb.advance_all():
                    break
            missing = await http.get(f"{base}/nobody/productionStatus", headers=headers)
            validate(STATUS_DOC, "errorGeneric", missing.json())
    assert {"DATA_EXCEPTION", "CARD_PROD_ONHOLD", "CARD_SHIPPED", "CARD_PROD_CANCELED"} <= seen


def test_sandbox_notifications_carry_schema_valid_shipments_and_statuses() -> None:
    table = _normalised_messages()
    sb = Sandbox(sandbox_config(seed=11))
    for name in SCENARIOS:
        if name != "external":
            sb.create_card(f"card-{name.replace('_', '-')}", scenario=name)
            sb.run_scenario(f"card-{name.replace('_', '-')}")
    enum = STATUS_DOC["components"]["schemas"]["productionStatusInNotification"]["enum"]
    for op in sb.emitted:
        details = op["details"]
        assert details["status"] in {*enum, "CARD_RETURNED"}
        shipment = details.get("shipment")
        if shipment:
            validate(STATUS_DOC, "shipment-2", shipment)
            assert table[shipment["message"]] == shipment["status"], shipment["message"]


async def test_client_request_bodies_validate() -> None:
    order = CardOrderRequest(
        distribution_channel="THALES",
        consumer_id="consumer-1",
        issuer_request_id="req-1",
        services=OrderServices(issuance="CREATION", delivery="STANDARD"),
        encrypted_data="eyJhbGciOiJFQ0RILUVTIiwiZW5jIjoiQTI1NkdDTSJ9..iv.ct.tag",
        payment_application={"config": "VISA_CREDIT"},
        shipment=OrderShipment.model_validate(
            {
                "type": "INDIVIDUAL",
                "deliveryAddress": {
                    "firstName": "Zoë",
                    "lastName": "Núñez",
                    "line1": "Calle Mayor 1",
                    "zipCode": "28013",
                    "city": "Madrid",
                    "countryCode": "ES",
                },
            }
        ),
    )
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            answer = await client.order_card("card-1", order)
            for example in track_request_examples():
                await client.track("card-2", track_request_adapter.validate_python(example))
        sent = next(r.body for r in sb.requests if r.path.endswith("operations:production"))
        validate(ORDER_DOC, "cardRequest", sent)
        validate(ORDER_DOC, "cardOperationResponse", {"operationId": answer.operation_id})
        tracked = [r.body for r in sb.requests if r.path.endswith("/track")]
        assert tracked == track_request_examples()  # the documented bodies, byte for byte


def _normalised_messages() -> dict[str, str]:
    """Message -> shipment status, from the table in the shipment schema's description."""
    text = STATUS_DOC["components"]["schemas"]["shipment-2"]["properties"]["message"]["description"]
    table: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].isupper() and cells[0] != "Message":
            table[cells[0]] = cells[2]
    assert len(table) > 30
    return table
