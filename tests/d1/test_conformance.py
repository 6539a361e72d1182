"""Conformance with D1's published schemas (d1/spec): the sandbox's answers and
notifications, and the client's request bodies.

The schemas' patterns use `\\p{L}` and loose character classes: they are checked as published
with the `regex` package. OpenAPI `discriminator`s pick the `oneOf` branch, as D1 documents.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import regex
from jsonschema import ValidationError

from d1.models import CardOrderRequest, OrderServices, OrderShipment, track_request_adapter
from d1.sandbox import SCENARIOS, Sandbox
from d1.sandbox.strict import notification_problems, request_problems, validate
from d1.spec import spec_text
from tests.d1_fixtures import make_client, running_sandbox, sandbox_config
from tests.servers import free_port, serve_asgi, wait_for
from tests.spec_examples import load_schema, notification_examples, track_request_examples

STATUS_DOC = load_schema("production-status.openapi.json")
ORDER_DOC = load_schema("order-card.openapi.json")
REPO_ROOT = Path(__file__).resolve().parents[2]
STATUS = "production-status.openapi.json"
ORDER = "order-card.openapi.json"


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
        validate(STATUS, "productionStatus", {"status": "CARD_SHIPPED", "maskedPan": "4111"})
    with pytest.raises(ValidationError):
        validate(STATUS, "productionStatus", {"reason": "no status"})
    with pytest.raises(ValidationError):
        validate(STATUS, "shipment-2", {"lastUpdatedAt": "yesterday"})
    address = {"line1": "Straße 1", "zipCode": "10115", "city": "Köln", "countryCode": "DE"}
    validate(STATUS, "addressInProduceNotification", address)  # \\p{L} accepts umlauts


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
                    validate(STATUS, "productionStatus", answer.json())
                    seen.add(answer.json()["status"])
                if not sb.advance_all():
                    break
            missing = await http.get(f"{base}/nobody/productionStatus", headers=headers)
            validate(STATUS, "errorGeneric", missing.json())
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
            validate(STATUS, "shipment-2", shipment)
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
        validate(ORDER, "cardRequest", sent)
        validate(ORDER, "cardOperationResponse", {"operationId": answer.operation_id})
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


# ---------------------------------------------------------------------- strict mode


async def test_the_client_passes_the_strict_sandbox_on_every_call() -> None:
    """Every call the client makes, with values as an agent types them, conforms to D1's
    spec files: the strict sandbox refuses anything else (and keeps it in `violations`)."""
    async with running_sandbox(strict=True) as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb) as client:
            await client.production_status("card-1")
            await client.track("card-1", {"trackingType": "PRODUCTION", "productionSite": "PARIS"})
            await client.track("card-2", {"trackingType": "RETURN", "productionSite": " PARIS "})
            await client.track(
                "card-3",
                {
                    "trackingType": "shipment",
                    "trackingNumber": " 1Z 999  AA1 ",
                    "shipmentDate": "2026-05-21T19:32:28.250+02:00",  # offset and fraction
                    "postalCode": "wc2n 5du",
                    "countryCode": "gb",
                },
            )
            await client.track(
                "card-4",
                {
                    "trackingType": "SHIPMENT",
                    "trackingNumber": "61293150000079650811",
                    "shipmentDate": "2026-05-21",  # a date alone
                    "postalCode": "75002",
                    "countryCode": "FR",
                    "productionSite": "London",
                },
            )
            for example in track_request_examples():  # D1's own examples, byte for byte
                await client.track("card-5", example)
            await client.order_card("card-6", _strict_order())
            sb.revoke_tokens()
            await client.production_status("card-1")  # a second token request, also checked
    assert sb.violations == []
    shipment = next(r.body for r in sb.requests if r.path.endswith("card-3/track"))
    assert shipment == {
        "trackingType": "SHIPMENT",
        "trackingNumber": "1Z 999 AA1",
        "shipmentDate": "2026-05-21T17:32:28Z",
        "postalCode": "WC2N 5DU",
        "countryCode": "GB",
    }
    dated = next(r.body for r in sb.requests if r.path.endswith("card-4/track"))
    assert dated["shipmentDate"] == "2026-05-21T00:00:00Z"
    assert sb.token_requests == 2


@pytest.mark.parametrize(
    ("tail", "body", "problem"),
    [
        ("track", {"trackingType": "RETURN", "productionSite": "P", "x": 1}, "Additional"),
        (
            "track",
            {
                "trackingType": "SHIPMENT",
                "trackingNumber": "1",
                "shipmentDate": "2026-05-21T17:32:28+02:00",
                "postalCode": "WC2N5DU",
                "countryCode": "GB",
            },
            "shipmentDate",
        ),
        ("track", {"trackingType": "RETURN", "productionSite": "P" * 51}, "productionSite"),
        ("track", {"trackingType": "SHIPMENT", "postalCode": "wc2n"}, "postalCode"),
        ("operations:production", {"distributionChannel": "THALES"}, "required"),
    ],
)
async def test_the_strict_sandbox_refuses_a_mismatch_loudly(
    tail: str, body: dict[str, Any], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="d1.sandbox")
    async with running_sandbox(strict=True) as (sb, url):
        async with make_client(url, sb) as client:
            token = await client._tokens.get()
        path = f"{url}/banking/v1/issuers/issuer-001/physicalCards/card-1/{tail}"
        async with httpx.AsyncClient() as http:
            answer = await http.post(path, json=body, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "FIELD_INVALID_FORMAT"
    assert answer.json()["error"].startswith("strict: ") and problem in answer.json()["error"]
    assert len(sb.violations) == 1 and problem in sb.violations[0]
    assert "STRICT" in caplog.text
    assert sb.emitted == []


def test_strict_request_checks_cover_paths_headers_and_the_token_form() -> None:
    bearer = {"authorization": "Bearer t", "x-correlation-id": "abc"}
    base = "/banking/v1/issuers/issuer-001/physicalCards"
    assert request_problems("GET", f"{base}/card-1/productionStatus", bearer, b"") == []
    long_id = request_problems("GET", f"{base}/{'c' * 49}/productionStatus", bearer, b"")
    assert any("cardId" in p for p in long_id)
    bad_id = {**bearer, "x-correlation-id": "not/valid"}
    assert request_problems("GET", f"{base}/card-1/productionStatus", bad_id, b"")
    assert request_problems("GET", f"{base}/card-1/productionStatus", {}, b"")  # no Bearer
    form = {"content-type": "application/x-www-form-urlencoded"}
    good = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x.y.z"
    assert request_problems("POST", "/authz/v1/oauth2/token", form, good) == []
    assert request_problems("POST", "/authz/v1/oauth2/token", {}, b"grant_type=password")
    # The x-correlation-id pattern is the one D1-FACTS.md quotes from D1's API reference.
    assert "`x-correlation-id`\n  (`^[A-Za-z0-9_-]{1,64}$`" in spec_text("D1-FACTS.md")


def test_notification_schema_accepts_d1s_examples_and_rejects_what_they_forbid() -> None:
    examples = notification_examples()
    for example in examples:
        assert notification_problems(example) == []
        assert notification_problems({"operations": [example, example]}) == []
    bad_status = {**examples[0], "details": {**examples[0]["details"], "status": "LOST"}}
    assert notification_problems(bad_status)
    bad_op = {**examples[0], "status": "DONE"}
    assert notification_problems({"operations": [bad_op]})
    assert notification_problems({"operations": []})
    shipment = examples[2]["details"]["shipment"]
    bad_ship = {**examples[2], "details": {**examples[2]["details"]}}
    bad_ship["details"]["shipment"] = {**shipment, "status": "TELEPORTED"}
    assert notification_problems(bad_ship)


async def test_every_notification_body_the_sandbox_sends_conforms() -> None:
    """Default traffic (duplicates, shuffling, both body shapes), every scenario and the
    tracking hub's three kinds: each body as it left, checked against the spec files."""
    bodies: list[Any] = []

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def notify(request: Request) -> Response:
        bodies.append(await request.json())
        return Response(status_code=204)

    callback = Starlette(
        routes=[Route("/notifications/d1/v2/issuers/{i}/cards", notify, methods=["POST"])]
    )
    async with serve_asgi(callback) as base:
        url = f"{base}/notifications/d1/v2/issuers/issuer-001/cards"
        sb = Sandbox(sandbox_config(callback_url=url, callback_static_token="t", seed=7))
        for name in SCENARIOS:
            if name != "external":
                sb.create_card(f"card-{name.replace('_', '-')}", scenario=name)
                sb.run_scenario(f"card-{name.replace('_', '-')}")
        for request in track_request_examples():
            sb.track(f"ext-{request['trackingType'].lower()}", request)
        sb.run_scenario("ext-shipment")
        await sb.flush()
    assert {"operations" in body for body in bodies} == {True, False}
    for body in bodies:
        assert notification_problems(body) == [], body
    sent = [op for body in bodies for op in body.get("operations", [body])]
    assert {op["operation"] for op in sent} == {"PRODUCE", "STANDALONE_TRACKING"}


async def test_default_traffic_through_the_intake_is_accepted_and_lands(engine) -> None:
    """The sandbox's default traffic (duplicates, shuffled, both body shapes, OAuth client
    credentials at the bot's token endpoint) through the bot's real intake: nothing refused,
    nothing lost, each reported state stored once, every card where D1 says it is."""
    from bot.server import create_app
    from d1.models import parse_operations
    from d1.semantics import operation_dedup_key
    from storage.repositories.cards import events_of_card, get_card
    from tests.intake_support import CLIENT_ID, CLIENT_SECRET, PATH, make_runtime

    runtime = make_runtime(engine)
    async with serve_asgi(create_app(runtime, run_background=False)) as bot_url:
        sb = Sandbox(
            sandbox_config(
                callback_url=bot_url + PATH,
                callback_client_id=CLIENT_ID,
                callback_client_secret=CLIENT_SECRET,
                seed=5,
            )
        )
        cards = [f"card-{name.replace('_', '-')}" for name in SCENARIOS if name != "external"]
        for card_id, name in zip(cards, [n for n in SCENARIOS if n != "external"], strict=True):
            sb.create_card(card_id, scenario=name)
            sb.run_scenario(card_id)
        for request in track_request_examples():
            sb.track(f"ext-{request['trackingType'].lower()}", request)
        sb.run_scenario("ext-shipment")
        await sb.flush(timeout=30)
    assert sb.refused == [] and sb.notifier.undeliverable == []
    emitted = parse_operations({"operations": sb.emitted})
    assert sum(len(ops) for ops, _ in sb.delivered) > len(emitted)  # duplicates were sent
    for card_id in cards:
        keys = {operation_dedup_key(op) for op in emitted if op.card_id == card_id}
        assert len(events_of_card(engine, card_id=card_id)) == len(keys), card_id
        stored = get_card(engine, card_id=card_id)
        assert stored is not None and stored.status == sb.status_of(card_id)["status"]


@pytest.mark.slow
async def test_strict_cli_lists_mismatches_and_exits_non_zero() -> None:
    port = free_port()
    env = {**os.environ, "SANDBOX_AUTO_ADVANCE_SECONDS": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "d1.sandbox.cli",
        "--strict",
        "--port",
        str(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{base}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout=30, message="strict sandbox listening")
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{base}/authz/v1/oauth2/token", data={"grant_type": "x"})
        assert answer.status_code == 400 and answer.json()["error"].startswith("strict: ")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 1
    assert "STRICT: 1 request(s) did not conform" in output and "grant_type" in output


def _strict_order() -> dict[str, Any]:
    return {
        "distributionChannel": "THALES",
        "consumerId": "consumer-1",
        "issuerRequestId": "req-1",
        "services": {"issuance": "CREATION", "delivery": "STANDARD"},
        "encryptedData": "eyJhbGciOiJFQ0RILUVTIiwiZW5jIjoiQTI1NkdDTSJ9..iv.ct.tag",
        "paymentApplication": {"config": "VISA_CREDIT"},
        "shipment": {
            "type": "INDIVIDUAL",
            "deliveryAddress": {
                "firstName": "Zoë",
                "lastName": "Núñez",
                "line1": "Calle Mayor 1",
                "zipCode": "28013",
                "city": "Madrid",
                "countryCode": "ES",
            },
        },
    }
