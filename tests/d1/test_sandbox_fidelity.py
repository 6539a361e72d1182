"""The sandbox does not flatter its client: duplicates, shuffled order and both body shapes by
default; a 4xx is final and the loss recorded; D1's enum only; D1's refusals; no scenario nobody
asked for; no key file left behind after SIGTERM. All over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d1.models import parse_operations
from d1.sandbox import SCENARIOS, Sandbox, SandboxConfig
from d1.semantics import operation_dedup_key
from tests.d1_fixtures import make_client, running_sandbox, sandbox_config
from tests.servers import free_port, serve_asgi, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_STATUSES = {
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
}


class RawReceiver:
    """The issuer's notification endpoint, keeping each body as it came; `answer` decides the
    reply to each body (default 204)."""

    def __init__(self, answer: Callable[[Any], Response] | None = None) -> None:
        self.bodies: list[Any] = []
        self.answer = answer or (lambda body: Response(status_code=204))

    @property
    def operations(self) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for body in self.bodies:
            ops.extend(body.get("operations", [body]))
        return ops

    def app(self) -> Starlette:
        async def notify(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            return self.answer(body)

        path = "/notifications/d1/v2/issuers/{issuer_id}/cards"
        return Starlette(routes=[Route(path, notify, methods=["POST"])])


def _callback(base: str) -> str:
    return f"{base}/notifications/d1/v2/issuers/issuer-001/cards"


def test_default_config_is_not_calm() -> None:
    config = SandboxConfig()
    assert config.duplicate_rate > 0 and config.shuffle and config.body_shape == "mixed"


async def test_default_traffic_has_duplicates_shuffling_and_both_body_shapes() -> None:
    receiver = RawReceiver()
    async with serve_asgi(receiver.app()) as base:
        sb = Sandbox(sandbox_config(callback_url=_callback(base), callback_static_token="t"))
        for i in range(4):
            sb.create_card(f"card-{i}")
            sb.run_scenario(f"card-{i}")
        await sb.flush()
    shapes = {"operations" in body for body in receiver.bodies}
    assert shapes == {True, False}  # envelopes and bare single operations
    sent = parse_operations({"operations": sb.emitted})
    got = parse_operations({"operations": receiver.operations})
    assert {operation_dedup_key(op) for op in got} == {operation_dedup_key(op) for op in sent}
    assert len(got) > len(sent)  # some arrived twice
    order = [(op["cardId"], op["timestamp"]) for op in receiver.operations]
    assert order != sorted(order, key=lambda pair: pair[1])  # not in the order they happened


async def test_a_4xx_is_final_and_the_loss_is_recorded_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bot refusing a notification (400) loses it for good, as with D1: the sandbox does
    not hide that by retrying; it keeps the refusal and says it in its log and status."""

    def answer(body: Any) -> Response:
        ops = body.get("operations", [body])
        if any(op["cardId"] == "card-bad" for op in ops):
            rejected = [{"index": 0, "operationId": ops[0]["operationId"], "field": "details"}]
            return JSONResponse(
                {
                    "errorCode": "FIELD_INVALID_FORMAT",
                    "error": "details",
                    "rejectedOperations": rejected,
                },
                status_code=400,
            )
        return Response(status_code=204)

    receiver = RawReceiver(answer)
    caplog.set_level(logging.WARNING, logger="d1.sandbox.delivery")
    async with (
        serve_asgi(receiver.app()) as base,
        running_sandbox(
            callback_url=_callback(base), callback_static_token="t", body_shape="single"
        ) as (sb, url),
    ):
        sb.create_card("card-bad")
        sb.create_card("card-good")
        sb.advance("card-bad")
        sb.advance("card-good")
        await sb.flush()
        async with httpx.AsyncClient() as http:
            status = (await http.get(f"{url}/sandbox/cards")).json()
    bad_requests = [b for b in receiver.bodies if b["cardId"] == "card-bad"]
    assert len(bad_requests) == len([op for op in sb.emitted if op["cardId"] == "card-bad"])
    assert [r.status for r in sb.refused] == [400] * len(bad_requests)  # each sent once only
    assert sb.refused[0].answer["rejectedOperations"][0]["field"] == "details"
    assert {op["cardId"] for r in sb.refused for op in r.operations} == {"card-bad"}
    assert status["lostNotifications"] == len(bad_requests)
    assert "LOST" in caplog.text and "does not retry a 4xx" in caplog.text


async def test_a_401_fetches_one_new_token_then_is_final() -> None:
    grants: list[str] = []

    async def token(request: Request) -> Response:
        grants.append("t")
        return JSONResponse({"access_token": f"tok-{len(grants)}", "expires_in": 900})

    async def notify(request: Request) -> Response:
        return Response(status_code=401)

    app = Starlette(
        routes=[
            Route("/oauth2/token", token, methods=["POST"]),
            Route("/notifications/d1/v2/issuers/{i}/cards", notify, methods=["POST"]),
        ]
    )
    async with serve_asgi(app) as base:
        sb = Sandbox(
            sandbox_config(
                callback_url=_callback(base),
                callback_client_id="d1",
                callback_client_secret="s",
                body_shape="bulk",
                duplicate_rate=0.0,
            )
        )
        sb.create_card("card-1")
        sb.advance("card-1")
        await sb.flush()
    assert [status for _, status in sb.delivered] == [401, 401]
    assert len(grants) == 2 and [r.status for r in sb.refused] == [401]


async def test_production_status_answers_only_d1s_enum() -> None:
    """A card only tracked through the tracking hub, even a returned one, answers a status of
    productionStatus's enum (CARD_RETURNED is a tracking result, not in that enum)."""
    async with running_sandbox() as (sb, url), make_client(url, sb) as client:
        for kind in ("PRODUCTION", "RETURN"):
            card = f"ext-{kind.lower()}"
            await client.track(card, {"trackingType": kind, "productionSite": "PARIS"})
            status = await client.production_status(card)
            assert status.status in PRODUCTION_STATUSES, (kind, status.status)
        for name in SCENARIOS:
            if name == "external":
                continue
            sb.create_card(f"card-{name.replace('_', '-')}", scenario=name)
            while True:
                answer = await client.production_status(f"card-{name.replace('_', '-')}")
                assert answer.status in PRODUCTION_STATUSES
                if not sb.advance(f"card-{name.replace('_', '-')}"):
                    break


def test_no_scenario_sends_what_nobody_asked_for() -> None:
    """Only a track request starts a STANDALONE_TRACKING operation (RETURN included)."""
    sb = Sandbox(sandbox_config())
    for name in SCENARIOS:
        sb.create_card(f"card-{name.replace('_', '-')}", scenario=name)
        sb.run_scenario(f"card-{name.replace('_', '-')}")
    assert sb.emitted and {op["operation"] for op in sb.emitted} == {"PRODUCE"}
    sb.track("card-return", {"trackingType": "RETURN", "productionSite": "PARIS"})
    assert sb.emitted[-1]["details"]["status"] == "CARD_RETURNED"


def _order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "distributionChannel": "THALES",
        "issuerRequestId": "req-1",
        "services": {"issuance": "CREATION"},
        "encryptedData": "eyJhbGciOiJFQ0RILUVTIiwiZW5jIjoiQTI1NkdDTSJ9..iv.cipher.tag",
        "paymentApplication": {"config": "VISA_CREDIT"},
        "shipment": {
            "type": "INDIVIDUAL",
            "deliveryAddress": {
                "lastName": "Doe",
                "line1": "1 Main Street",
                "zipCode": "WC2N 5DU",
                "city": "London",
                "countryCode": "GB",
            },
        },
    }
    order.update(changes)
    return order


def _address(**changes: Any) -> dict[str, Any]:
    shipment = dict(_order()["shipment"])
    shipment["deliveryAddress"] = {**shipment["deliveryAddress"], **changes}
    return shipment


@pytest.mark.parametrize(
    ("order", "status", "code", "field"),
    [
        (_order(distributionChannel="POST"), 400, "FIELD_INVALID_VALUE", "distributionChannel"),
        (_order(shipment=None), 400, "FIELD_INVALID_FORMAT", "shipment"),
        (_order(paymentApplication=None), 400, "FIELD_INVALID_FORMAT", "paymentApplication"),
        (
            _order(distributionChannel="INSTANT", shipment=None),
            400,
            "FIELD_INVALID_FORMAT",
            "persoStation",
        ),
        (
            _order(shipment=_address(lastName=None)),
            400,
            "FIELD_INVALID_FORMAT",
            "shipment.deliveryAddress.lastName",
        ),
        (
            _order(shipment=_address(zipCode="wc2n 5du")),
            400,
            "FIELD_INVALID_FORMAT",
            "shipment.deliveryAddress.zipCode",
        ),
        (_order(encryptedData="not-a-jwe"), 400, "CRYPTO_ERROR", "encryptedData"),
        (
            _order(encryptedData="eyJhbGciOiJSU0ExXzUifQ..iv.ct.tag"),  # alg RSA1_5
            400,
            "CRYPTO_ERROR",
            "encryptedData",
        ),
    ],
)
async def test_invalid_orders_are_refused_with_d1s_codes(
    order: dict[str, Any], status: int, code: str, field: str
) -> None:
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            token = await client._tokens.get()
        path = f"{url}/banking/v1/issuers/issuer-001/physicalCards/card-1/operations:production"
        async with httpx.AsyncClient() as http:
            answer = await http.post(path, json=order, headers={"authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()) == (status, {"errorCode": code, "error": field})
    assert sb.emitted == [] and "card-1" not in sb.cards


async def test_a_valid_order_is_accepted() -> None:
    async with running_sandbox() as (sb, url), make_client(url, sb) as client:
        answer = await client.order_card("card-1", _order())
    assert answer.operation_id and sb.emitted[0]["details"]["status"] == "CARD_PROD_REQUESTED"


@pytest.mark.slow
async def test_sigterm_removes_the_key_file() -> None:
    port = free_port()
    env = {**os.environ, "SANDBOX_AUTO_ADVANCE_SECONDS": "0"}
    env.pop("SANDBOX_PUBLIC_KEY_FILE", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "d1.sandbox.cli",
        "--port",
        str(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    key_file: Path | None = None
    try:
        while key_file is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "the sandbox exited before printing its settings"
            if "D1_PRIVATE_KEY_FILE=" in line:
                key_file = Path(line.strip().partition("=")[2])
        assert key_file.is_file()

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout=30, message="sandbox listening")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert not key_file.exists()
