"""D1Client over real HTTP against the sandbox: tokens, retries, error mapping, mTLS."""

from __future__ import annotations

import asyncio
import re
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from bot.main import d1_client_from
from bot.settings import Settings
from d1.client import build_ssl_context, parse_production_status
from d1.errors import (
    MSG_FORBIDDEN,
    MSG_NOT_FOUND,
    MSG_UNAVAILABLE,
    D1BadRequest,
    D1Forbidden,
    D1InvalidField,
    D1NotConfigured,
    D1NotFound,
    D1Unauthorized,
    D1Unavailable,
    D1UnexpectedResponse,
)
from d1.models import ShipmentTrackingRequest
from tests.d1_fixtures import TEST_KEYS, make_client, running_sandbox, sandbox_env
from tests.pki import write_pki
from tests.servers import serve_asgi

CORRELATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class FakeClock:
    """A clock tests move by hand (shared by the sandbox and the client)."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _status_requests(sb) -> list:
    return [r for r in sb.requests if r.path.endswith("/productionStatus")]


async def test_one_token_serves_many_calls_even_concurrent() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb) as client:
            results = await asyncio.gather(*(client.production_status("card-1") for _ in range(8)))
            await client.production_status("card-1")
        assert {r.status for r in results} == {"CARD_PROD_REQUESTED"}
        assert sb.token_requests == 1
        assert len(_status_requests(sb)) == 9
        assert all(r.headers["authorization"].startswith("Bearer ") for r in _status_requests(sb))


async def test_token_refreshed_after_expiry() -> None:
    clock = FakeClock()
    async with running_sandbox(clock=clock) as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb, clock=clock) as client:
            await client.production_status("card-1")
            clock.now += timedelta(minutes=10)
            await client.production_status("card-1")
            assert sb.token_requests == 1
            clock.now += timedelta(minutes=6)  # 16 minutes: past the 900 s lifetime
            await client.production_status("card-1")
        assert sb.token_requests == 2


async def test_refreshes_once_when_d1_forgets_the_token() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb) as client:
            await client.production_status("card-1")
            sb.revoke_tokens()
            status = await client.production_status("card-1")
        assert status.status == "CARD_PROD_REQUESTED"
        assert sb.token_requests == 2


async def test_persistent_401_is_unauthorized_after_one_refresh() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        sb.faults.fail_next("productionStatus", status=401, count=5)
        async with make_client(url, sb) as client:
            with pytest.raises(D1Unauthorized) as caught:
                await client.production_status("card-1")
        assert caught.value.error_code == "AUTHORIZER_UNAUTHORIZED"
        assert len(_status_requests(sb)) == 2
        assert sb.token_requests == 2


async def test_bad_assertion_key_is_unauthorized() -> None:
    async with running_sandbox() as (sb, url):
        other = make_client(url, TEST_KEYS, key_id="unknown-kid")
        async with other as client:
            with pytest.raises(D1Unauthorized) as caught:
                await client.production_status("card-1")
        assert caught.value.endpoint == "token"
        assert sb.token_requests == 0


async def test_retry_after_503_then_success() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        sb.faults.fail_next("productionStatus", status=503, count=2)
        observed: list[tuple[str, str]] = []
        async with make_client(
            url, sb, max_retries=3, observe=lambda e, o, _s: observed.append((e, o))
        ) as client:
            status = await client.production_status("card-1")
        assert status.masked_pan == "************1234"
        assert len(_status_requests(sb)) == 3
        ids = {r.headers["x-correlation-id"] for r in _status_requests(sb)}
        assert len(ids) == 1  # one logical call: its retries share the correlation id
        assert ("productionStatus", "ok") in observed  # one call observed, retries inside it
        assert [o for o in observed if o[0] == "productionStatus"] == [("productionStatus", "ok")]


async def test_errors_are_mapped_with_safe_messages() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb, max_retries=1) as client:
            with pytest.raises(D1NotFound) as not_found:
                await client.production_status("no-such-card")
            sb.faults.fail_next("track", status=403, error_code="OPERATION_NOT_ALLOWED")
            with pytest.raises(D1Forbidden) as forbidden:
                await client.track("card-1", {"trackingType": "RETURN", "productionSite": "X"})
            sb.faults.fail_next("productionStatus", status=503, count=2)
            with pytest.raises(D1Unavailable) as unavailable:
                await client.production_status("card-1")
    assert not_found.value.status == 404
    assert not_found.value.user_message == MSG_NOT_FOUND
    assert forbidden.value.error_code == "OPERATION_NOT_ALLOWED"
    assert forbidden.value.user_message == MSG_FORBIDDEN
    assert unavailable.value.status == 503
    assert unavailable.value.user_message == MSG_UNAVAILABLE
    for error in (not_found.value, forbidden.value, unavailable.value):
        assert CORRELATION_ID.match(error.correlation_id or "")
        assert "scripted" not in error.user_message and "unknown" not in error.user_message


async def test_each_call_has_a_fresh_correlation_id_not_from_card_data() -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb) as client:
            for _ in range(3):
                await client.production_status("card-1")
        ids = [r.headers["x-correlation-id"] for r in _status_requests(sb)]
        assert len(set(ids)) == 3
        assert all(CORRELATION_ID.match(i) and "card-1" not in i for i in ids)


async def test_track_and_order_send_d1_bodies() -> None:
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            await client.track(
                "card-9",
                ShipmentTrackingRequest(
                    tracking_number="61293150000079650811",
                    shipment_date=datetime(2023, 1, 21, 17, 32, 28, tzinfo=timezone.utc),
                    production_site="London",
                    postal_code="WC2N5DU",
                    country_code="GB",
                ),
            )
            answer = await client.order_card("card-10", _order())
            again = await client.order_card("card-10", _order())
        track = next(r for r in sb.requests if r.path.endswith("/track"))
        assert track.body["trackingType"] == "SHIPMENT"
        assert track.body["shipmentDate"] == "2023-01-21T17:32:28Z"
        assert answer.operation_id == again.operation_id  # idempotent on issuerRequestId
        assert sb.emitted[-1]["details"]["status"] == "CARD_PROD_REQUESTED"


@pytest.mark.parametrize("card_id", ["../../etc", "c" * 49, "card 1", ""])
async def test_card_id_outside_d1s_pattern_refused_before_calling_d1(card_id: str) -> None:
    async with running_sandbox() as (sb, url):
        async with make_client(url, sb) as client:
            with pytest.raises(D1InvalidField) as status:
                await client.production_status(card_id)
            with pytest.raises(D1InvalidField) as track:
                await client.track(card_id, {"trackingType": "RETURN", "productionSite": "X"})
        for caught in (status.value, track.value):
            assert isinstance(caught, D1BadRequest) and caught.field == "cardId"
            assert "`cardId`" in caught.user_message and "48" in caught.user_message
        assert sb.requests == []  # not even a token: nothing was sent


async def test_card_id_of_48_characters_is_sent() -> None:
    card_id = "c" * 48
    async with running_sandbox() as (sb, url):
        sb.create_card(card_id)
        async with make_client(url, sb) as client:
            status = await client.production_status(f" {card_id} ")  # spaces trimmed
        assert status.status == "CARD_PROD_REQUESTED"


@pytest.mark.parametrize("shape", ["operation", "envelope"])
async def test_status_in_notification_shapes_is_accepted(shape: str) -> None:
    """D1's guide pages show the on-demand answer as a bare operation or as a notification
    body `{"operations": [op]}`; both read like the documented productionStatus."""
    async with running_sandbox(status_shape=shape) as (sb, url):
        sb.create_card("card-1")
        sb.run_scenario("card-1")
        async with make_client(url, sb) as client:
            status = await client.production_status("card-1")
        answered = next(r for r in sb.requests if r.path.endswith("/productionStatus"))
        assert answered.method == "GET"
        assert status.status == "CARD_SHIPPED"
        assert status.shipment is not None and status.shipment.status == "DELIVERED"


@pytest.mark.parametrize("expires_in", [899.5, "900", " 900.75 ", 900])
async def test_token_lifetime_may_be_fractional_or_text(expires_in: object) -> None:
    clock = FakeClock()
    async with running_sandbox(clock=clock, token_expires_in=expires_in) as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb, clock=clock) as client:
            await client.production_status("card-1")
            clock.now += timedelta(minutes=10)
            await client.production_status("card-1")  # still the same token
            assert sb.token_requests == 1
            clock.now += timedelta(minutes=6)
            await client.production_status("card-1")
        assert sb.token_requests == 2


@pytest.mark.parametrize("expires_in", ["soon", -5, 0, True])
async def test_unusable_token_lifetime_is_an_unexpected_answer(expires_in: object) -> None:
    async with running_sandbox(token_expires_in=expires_in) as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb) as client:
            with pytest.raises(D1UnexpectedResponse) as caught:
                await client.production_status("card-1")
        assert caught.value.endpoint == "token" and "expires_in" in str(caught.value)


def test_parse_production_status_both_shapes() -> None:
    plain = parse_production_status({"status": "CARD_PROD_ONGOING", "futureField": 1})
    op = parse_production_status(
        {
            "operationId": "op-1",
            "operation": "PRODUCE",
            "status": "PENDING",
            "cardId": "c-1",
            "startTime": "2026-05-22T09:38:00Z",
            "details": {"status": "DATA_EXCEPTION", "reason": "bad data"},
        }
    )
    assert plain.status == "CARD_PROD_ONGOING"
    assert (op.status, op.reason) == ("DATA_EXCEPTION", "bad data")
    later = {
        "operationId": "op-1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": "c-1",
        "startTime": "2026-05-22T09:38:00Z",
        "endTime": "2026-05-23T10:00:00Z",
        "details": {"status": "CARD_SHIPPED"},
    }
    earlier = {**later, "status": "PENDING", "endTime": None}
    earlier["details"] = {"status": "DATA_PREPARED"}
    envelope = parse_production_status({"operations": [later, earlier]})
    assert envelope.status == "CARD_SHIPPED"  # the latest operation of the envelope
    with pytest.raises(ValueError):
        parse_production_status({"operations": []})


def test_from_settings_builds_or_says_what_is_missing(tmp_path: Path) -> None:
    settings = Settings(**sandbox_env("http://127.0.0.1:9"), d1_max_retries=5)
    client = d1_client_from(settings)
    assert client.issuer_id == TEST_KEYS.issuer_id and client.max_retries == 5
    asyncio.run(client.aclose())
    with pytest.raises(D1NotConfigured):
        d1_client_from(Settings(d1_issuer_id="issuer-001"))
    with pytest.raises(D1NotConfigured):
        d1_client_from(Settings(**{**sandbox_env("http://x"), "d1_private_key": "not a key"}))


# ---------------------------------------------------------------------- mTLS


def test_ssl_context_loads_client_certificate(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    context = build_ssl_context(client_cert=pki["client_cert"], client_key=pki["client_key"])
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(D1NotConfigured):
        build_ssl_context(client_cert=pki["client_cert"], client_key=None)
    with pytest.raises(ssl.SSLError):  # a key that does not match the certificate
        build_ssl_context(client_cert=pki["client_cert"], client_key=pki["server_key"])


async def test_mtls_handshake_with_client_certificate(tmp_path: Path) -> None:
    """The client presents its certificate to a server that requires one (as D1 does)."""
    from d1.sandbox import Sandbox
    from tests.d1_fixtures import sandbox_config

    pki = write_pki(tmp_path)
    sb = Sandbox(sandbox_config())
    sb.create_card("card-1")
    tls = {
        "ssl_certfile": str(pki["server_cert"]),
        "ssl_keyfile": str(pki["server_key"]),
        "ssl_ca_certs": str(pki["ca"]),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    async with serve_asgi(sb.app, **tls) as base:
        url = base.replace("http://", "https://")
        common = {"ca_file": str(pki["ca"]), "max_retries": 0}
        async with make_client(
            url, sb, client_cert=pki["client_cert"], client_key=pki["client_key"], **common
        ) as client:
            status = await client.production_status("card-1")
        assert status.status == "CARD_PROD_REQUESTED"
        async with make_client(url, sb, **common) as anonymous:
            with pytest.raises(D1Unavailable):
                await anonymous.production_status("card-1")


async def test_mock_transport_sees_headers_and_form() -> None:
    """Client mechanics in isolation: the token form and the banking headers."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t0k", "expires_in": 900})
        return httpx.Response(200, json={"status": "CARD_SHIPPED"})

    client = make_client("http://d1.test", TEST_KEYS, transport=httpx.MockTransport(handler))
    async with client:
        await client.production_status("card-1")
    token_request, status_request = seen
    form = dict(x.split("=", 1) for x in token_request.content.decode().split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    assert status_request.headers["authorization"] == "Bearer t0k"
    assert (
        status_request.url.path
        == "/banking/v1/issuers/issuer-001/physicalCards/card-1/productionStatus"
    )


def _order() -> dict:
    return {
        "distributionChannel": "THALES",
        "consumerId": "consumer-1",
        "issuerRequestId": "req-10",
        "services": {"issuance": "CREATION", "delivery": "STANDARD"},
        "encryptedData": "eyJhbGciOiJFQ0RILUVTIn0..iv.cipher.tag",
        "paymentApplication": {"config": "VISA_CREDIT"},
        "shipment": {
            "type": "INDIVIDUAL",
            "deliveryAddress": {
                "firstName": "Jane",
                "lastName": "Doe",
                "line1": "1 Rue de la Paix",
                "zipCode": "75002",
                "city": "Paris",
                "countryCode": "FR",
            },
        },
    }
