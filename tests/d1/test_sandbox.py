"""The D1 sandbox over real HTTP: token checks, API errors, lifecycle, notification delivery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from d1.models import parse_operations
from d1.sandbox import SCENARIOS, Sandbox, generate_es256_keypair
from d1.sandbox.scenarios import SCENARIO_EXCEPTION_MESSAGES, scenario_for_card_id
from d1.semantics import operation_dedup_key
from d1.tokens import JWT_BEARER_GRANT, mint_assertion
from tests.d1_fixtures import (
    TEST_KEYS,
    CallbackReceiver,
    make_client,
    running_sandbox,
    sandbox_config,
)
from tests.servers import free_port, serve_asgi, wait_for

NOW = datetime.now(timezone.utc)
# Calm traffic, for tests about something else than duplicates, order and body shapes.
CALM = {"duplicate_rate": 0.0, "shuffle": False, "body_shape": "bulk"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _assertion(**kw) -> str:
    options = {
        "issuer_id": TEST_KEYS.issuer_id,
        "key_id": TEST_KEYS.key_id,
        "private_key": TEST_KEYS.private_key_pem,
        "now": datetime.now(timezone.utc),
    }
    options.update(kw)
    return mint_assertion(**options)


async def _token_answer(url: str, form: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/authz/v1/oauth2/token", data=form)


async def test_token_endpoint_checks_the_assertion() -> None:
    other_private, _ = generate_es256_keypair()
    cases = [
        ({"grant_type": "password"}, 400, "FIELD_INVALID_VALUE"),
        ({"grant_type": JWT_BEARER_GRANT}, 400, "FIELD_INVALID_FORMAT"),
        ({"assertion": "not-a-jwt"}, 400, "FIELD_INVALID_FORMAT"),
        ({"assertion": _assertion(private_key=other_private)}, 401, "AUTHORIZER_UNAUTHORIZED"),
        ({"assertion": _assertion(key_id="other")}, 401, "AUTHORIZER_UNAUTHORIZED"),
        ({"assertion": _assertion(issuer_id="issuer-002")}, 401, "AUTHORIZER_UNAUTHORIZED"),
        (
            {"assertion": _assertion(now=NOW - timedelta(minutes=20))},
            401,
            "AUTHORIZER_UNAUTHORIZED",
        ),
    ]
    async with running_sandbox() as (sb, url):
        for form, status, code in cases:
            answer = await _token_answer(url, {"grant_type": JWT_BEARER_GRANT, **form})
            assert (answer.status_code, answer.json()["errorCode"]) == (status, code), form
        # An exp beyond 15 minutes: forged by hand, since mint_assertion refuses to make one.
        import jwt

        claims = {"iss": "issuer-001", "sub": "issuer-001", "exp": int(NOW.timestamp()) + 3600}
        far = jwt.encode(claims, TEST_KEYS.private_key_pem, "ES256", headers={"kid": "key-1"})
        answer = await _token_answer(url, {"grant_type": JWT_BEARER_GRANT, "assertion": far})
        assert (answer.status_code, answer.json()["errorCode"]) == (400, "FIELD_INVALID_VALUE")
        good = await _token_answer(url, {"grant_type": JWT_BEARER_GRANT, "assertion": _assertion()})
        assert good.status_code == 200
        assert good.json()["token_type"] == "Bearer" and good.json()["expires_in"] == 900
        assert sb.token_requests == 1


async def test_api_needs_the_bearer_it_issued() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        path = f"{url}/banking/v1/issuers/issuer-001/physicalCards/card-1/productionStatus"
        async with httpx.AsyncClient() as http:
            missing = await http.get(path)
            wrong = await http.get(path, headers={"authorization": "Bearer nope"})
            token = (
                await _token_answer(
                    url, {"grant_type": JWT_BEARER_GRANT, "assertion": _assertion()}
                )
            ).json()["access_token"]
            auth = {"authorization": f"Bearer {token}"}
            ok = await http.get(path, headers=auth)
            other_issuer = await http.get(path.replace("issuer-001", "issuer-002"), headers=auth)
            unknown = await http.get(path.replace("card-1", "card-404"), headers=auth)
        assert (missing.status_code, missing.json()["errorCode"]) == (
            401,
            "AUTHORIZER_UNAUTHORIZED",
        )
        assert wrong.status_code == 401
        assert ok.status_code == 200 and ok.json()["status"] == "CARD_PROD_REQUESTED"
        assert (other_issuer.status_code, other_issuer.json()["errorCode"]) == (
            403,
            "AUTHORIZER_FORBIDDEN",
        )
        assert unknown.status_code == 404
        assert set(unknown.json()) == {"errorCode", "error"}


async def test_invalid_track_and_order_bodies_name_the_first_bad_field() -> None:
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            token = await client._tokens.get()
        base = f"{url}/banking/v1/issuers/issuer-001/physicalCards/card-1"
        auth = {"authorization": f"Bearer {token}"}
        shipment = {
            "trackingType": "SHIPMENT",
            "shipmentDate": "2023-01-21T17:32:28Z",
            "postalCode": "WC2N5DU",
            "countryCode": "GB",
        }
        async with httpx.AsyncClient() as http:
            answers = [
                await http.post(f"{base}/track", json={"trackingType": "TELEPORT"}, headers=auth),
                await http.post(f"{base}/track", json=shipment, headers=auth),
                await http.post(
                    f"{base}/track",
                    json={**shipment, "trackingNumber": "1", "countryCode": "gb"},
                    headers=auth,
                ),
                await http.post(f"{base}/track", content=b"{not json", headers=auth),
                await http.post(f"{base}/operations:production", json={}, headers=auth),
            ]
        found = [(a.status_code, a.json()["errorCode"], a.json()["error"]) for a in answers]
        assert found == [
            (400, "FIELD_INVALID_VALUE", "trackingType"),
            (400, "FIELD_INVALID_FORMAT", "trackingNumber"),
            (400, "FIELD_INVALID_FORMAT", "countryCode"),
            (400, "PARSING_ERROR", "body is not a JSON object"),
            (400, "FIELD_INVALID_FORMAT", "distributionChannel"),
        ]
        assert sb.emitted == []


def test_scenarios_follow_d1_lifecycles() -> None:
    sb = Sandbox(sandbox_config(seed=3))
    journeys: dict[str, list[tuple[str, str | None]]] = {}
    for name in SCENARIOS:
        if name == "external":
            continue
        sb.create_card(f"card-{name.replace('_', '-')}", scenario=name)
        ops = sb.run_scenario(f"card-{name.replace('_', '-')}")
        journeys[name] = [
            (op["details"]["status"], (op["details"].get("shipment") or {}).get("status"))
            for op in ops
        ]
        parsed = parse_operations({"operations": ops})
        assert len({operation_dedup_key(op) for op in parsed}) == len(ops)  # none duplicates
        times = [op["timestamp"] for op in ops]
        assert times == sorted(times) and len(set(times)) == len(times)
    assert journeys["happy"][0] == ("CARD_PROD_REQUESTED", None)
    assert journeys["happy"][-1] == ("CARD_SHIPPED", "DELIVERED")
    assert journeys["data_exception"][-1] == ("DATA_EXCEPTION", None)
    onhold = [status for status, _ in journeys["onhold"]]
    assert onhold.index("CARD_PROD_ONHOLD") < onhold.index("CARD_PROD_ONGOING")
    assert journeys["shipment_exception"][-1] == ("CARD_SHIPPED", "EXCEPTION")
    failed = [ship for _, ship in journeys["failed_attempt"]]
    assert failed.index("FAILED_ATTEMPT") < failed.index("DELIVERED")
    assert journeys["return"][-1] == ("CARD_SHIPPED", "EXCEPTION")  # no RETURN unasked
    assert all(op["operation"] == "PRODUCE" for op in sb.emitted)
    message = sb.status_of("card-shipment-exception")["shipment"]["message"]
    assert message in SCENARIO_EXCEPTION_MESSAGES
    # The PRODUCE operation keeps one operationId through production and shipping.
    happy_ids = {op["operationId"] for op in sb.emitted if op["cardId"] == "card-happy"}
    assert len(happy_ids) == 1
    # Deterministic under the seed.
    again = Sandbox(sandbox_config(seed=3))
    again.create_card("card-shipment-exception", scenario="shipment_exception")
    again.run_scenario("card-shipment-exception")
    assert again.status_of("card-shipment-exception")["shipment"]["message"] == message


def test_scenario_by_card_id_prefix() -> None:
    assert scenario_for_card_id("onhold-7") == "onhold"
    assert scenario_for_card_id("shipment-exception-1") == "shipment_exception"
    assert scenario_for_card_id("c-9f8e7d6c5b4a") == "happy"


async def test_tracking_hub_shipment_pending_then_successful_same_operation() -> None:
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            await client.track(
                "c-9f8e7d6c5b4a",
                {
                    "trackingType": "SHIPMENT",
                    "trackingNumber": "61293150000079650811",
                    "shipmentDate": "2023-01-21T17:32:28Z",
                    "productionSite": "London",
                    "postalCode": "WC2N5DU",
                    "countryCode": "GB",
                },
            )
            await client.track("c-prod", {"trackingType": "PRODUCTION", "productionSite": "L"})
            await client.track("c-ret", {"trackingType": "RETURN", "productionSite": "L"})
        updates = sb.run_scenario("c-9f8e7d6c5b4a")
        shipment_ops = [op for op in sb.emitted if op["cardId"] == "c-9f8e7d6c5b4a"]
        assert [op["status"] for op in shipment_ops] == ["PENDING"] + ["SUCCESSFUL"] * len(updates)
        assert len({op["operationId"] for op in shipment_ops}) == 1
        assert all(op["operation"] == "STANDALONE_TRACKING" for op in shipment_ops)
        assert "shipment" not in shipment_ops[0]["details"]
        assert shipment_ops[-1]["details"]["shipment"]["status"] == "DELIVERED"
        assert shipment_ops[-1]["details"]["shipment"]["trackingNumber"] == "61293150000079650811"
        by_card = {op["cardId"]: op for op in sb.emitted}
        assert (by_card["c-prod"]["status"], by_card["c-prod"]["details"]["status"]) == (
            "SUCCESSFUL",
            "CARD_SHIPPED",
        )
        assert by_card["c-ret"]["details"]["status"] == "CARD_RETURNED"


async def test_order_then_watch_card_shipped_through_notifications() -> None:
    """The issue's end-to-end: token, order, and notifications at a callback (Basic creds)."""
    receiver = CallbackReceiver()
    async with (
        serve_asgi(receiver.app()) as callback_base,
        running_sandbox(
            callback_url=callback_base + receiver.path_for(),
            callback_client_id="d1",
            callback_client_secret="s3cret",
            auto_advance_seconds=0.02,
            **CALM,
        ) as (sb, url),
    ):
        async with make_client(url, sb) as client:
            answer = await client.order_card("card-77", _order())

        def shipped() -> bool:
            return any(op["details"].get("status") == "CARD_SHIPPED" for op in receiver.operations)

        await wait_for(shipped, timeout=15, message="CARD_SHIPPED at the callback")
    statuses = [op["details"]["status"] for op in receiver.operations]
    assert statuses[:5] == [
        "CARD_PROD_REQUESTED",
        "DATA_PREPARED",
        "CARD_PROD_READY",
        "CARD_PROD_ONGOING",
        "CARD_SHIPPED",
    ]
    assert {op["operationId"] for op in receiver.operations} == {answer.operation_id}
    assert receiver.token_grants == 1  # fetched once, reused for every delivery
    assert receiver.refused == []


async def test_delivery_retries_non_2xx_and_static_token() -> None:
    receiver = CallbackReceiver(
        client_id=None, client_secret=None, static_token="tok", fail_first=2
    )
    async with serve_asgi(receiver.app()) as callback_base:
        sb = Sandbox(
            sandbox_config(
                callback_url=callback_base + receiver.path_for(),
                callback_static_token="tok",
                **CALM,
            )
        )
        sb.create_card("card-1")
        sb.run_scenario("card-1")
        sb.faults.fail_next("callback", status=500)
        await sb.flush(timeout=10)
    assert [status for _, status in sb.delivered] == [500, 503, 503, 204]
    assert len(receiver.operations) == 10
    assert receiver.token_grants == 0


async def test_batches_duplicates_and_shuffle_are_deterministic_under_seed() -> None:
    async def deliver(seed: int) -> list[tuple[str, str | None]]:
        receiver = CallbackReceiver()
        async with serve_asgi(receiver.app()) as callback_base:
            sb = Sandbox(
                sandbox_config(
                    callback_url=callback_base + receiver.path_for(),
                    callback_client_id="d1",
                    callback_client_secret="s3cret",
                    seed=seed,
                    duplicate_rate=0.4,
                    shuffle=True,
                    batch_size=3,
                    body_shape="bulk",
                )
            )
            for i in range(3):
                sb.create_card(f"card-{i}")
                sb.run_scenario(f"card-{i}")
            await sb.flush()
        assert all(len(body["operations"]) <= 3 for body in receiver.requests)
        emitted = {operation_dedup_key(op) for op in parse_operations({"operations": sb.emitted})}
        got = parse_operations({"operations": receiver.operations})
        assert {operation_dedup_key(op) for op in got} == emitted  # at least once: all arrive
        assert len(got) > len(emitted)  # and some more than once
        return [(op["cardId"], op["details"]["status"]) for op in receiver.operations]

    first, second, other = await deliver(5), await deliver(5), await deliver(6)
    assert first == second
    assert first != other
    in_order = sorted(first, key=lambda pair: pair[0])
    assert first != in_order  # shuffled: not in emission order


async def test_dropped_notifications_change_state_but_never_arrive() -> None:
    receiver = CallbackReceiver()
    async with serve_asgi(receiver.app()) as callback_base:
        sb = Sandbox(
            sandbox_config(
                callback_url=callback_base + receiver.path_for(),
                callback_client_id="d1",
                callback_client_secret="s3cret",
                **CALM,
            )
        )
        sb.create_card("card-1")
        sb.advance("card-1")
        sb.faults.drop_next_notifications(2)
        sb.advance("card-1")
        sb.advance("card-1")
        sb.advance("card-1")
        await sb.flush()
    assert [op["details"]["status"] for op in receiver.operations] == [
        "CARD_PROD_REQUESTED",
        "CARD_PROD_ONGOING",
    ]
    assert sb.status_of("card-1")["status"] == "CARD_PROD_ONGOING"


async def test_callback_set_after_start_gets_what_was_queued() -> None:
    receiver = CallbackReceiver(client_id=None, client_secret=None, static_token="t")
    async with running_sandbox(**CALM) as (sb, _url):
        sb.create_card("card-1")
        sb.advance("card-1")
        async with serve_asgi(receiver.app()) as callback_base:
            sb.set_callback(callback_base + receiver.path_for(), static_token="t")
            await wait_for(lambda: receiver.operations, message="queued operation delivered")
    assert receiver.operations[0]["details"]["status"] == "CARD_PROD_REQUESTED"


@pytest.mark.slow
async def test_cli_sandbox_prints_env_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SANDBOX_AUTO_ADVANCE_SECONDS": "0"}
    proc = subprocess.Popen(  # noqa: ASYNC220  (a long-lived child, read from a thread)
        [sys.executable, "-m", "bot.cli", "sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        lines: dict[str, str] = {}
        assert proc.stdout is not None
        while "D1_PRIVATE_KEY_FILE" not in lines:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, "sandbox exited before printing its settings"
            if "=" in line and line.strip().startswith("D1_"):
                key, _, value = line.strip().partition("=")
                lines[key] = value
        base = lines["D1_API_URL"].removesuffix("/banking/v1")
        assert lines["D1_AUTH_URL"] == f"{base}/authz/v1"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{base}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout=20, message="sandbox CLI listening")
        from d1.client import D1Client

        async with D1Client(
            api_url=lines["D1_API_URL"],
            auth_url=lines["D1_AUTH_URL"],
            issuer_id=lines["D1_ISSUER_ID"],
            key_id=lines["D1_KEY_ID"],
            private_key_pem=await asyncio.to_thread(Path(lines["D1_PRIVATE_KEY_FILE"]).read_text),
        ) as client:
            answer = await client.order_card("card-cli", _order())
            status = await client.production_status("card-cli")
        assert answer.operation_id and status.status == "CARD_PROD_REQUESTED"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
        if proc.stdout is not None:
            proc.stdout.close()


def _order() -> dict:
    return {
        "distributionChannel": "THALES",
        "issuerRequestId": "req-77",
        "services": {"issuance": "CREATION", "delivery": "STANDARD"},
        "encryptedData": "eyJhbGciOiJFQ0RILUVTIn0..iv.cipher.tag",
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
