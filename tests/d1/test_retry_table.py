"""D1's retry table, row by row, for every call the client makes, over real HTTP to the sandbox.

| D1 answer                      | GET productionStatus, token | POST track / order           |
|--------------------------------|-----------------------------|------------------------------|
| 503                            | retried (bounded backoff)   | retried (not processed)      |
| 502, 504                       | retried                     | final (D1 may have acted)    |
| timeout after sending          | retried                     | final                        |
| connection error (never sent)  | retried                     | retried                      |
| 500 INTERNAL_ERROR             | final                       | final                        |
| 400, 403, 404                  | final                       | final                        |
| 401                            | one new token, sent again   | one new token, sent again    |

Source: order-card.openapi.json and production-status.openapi.json's error tables ("Retry
Possible: no" for 400, 401, 403, 500; 503 "You may retry your request later").
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from d1.client import D1Client
from d1.errors import (
    MSG_D1_FAILED,
    MSG_UNAVAILABLE,
    D1BadRequest,
    D1Error,
    D1Forbidden,
    D1NotFound,
    D1Unauthorized,
    D1Unavailable,
)
from d1.sandbox import Sandbox
from tests.d1_fixtures import make_client, running_sandbox, sandbox_config
from tests.servers import free_port, serve_asgi

MAX_RETRIES = 3
TRACK = {"trackingType": "RETURN", "productionSite": "PERSO-CENTER-FR-01"}


def _order(request_id: str) -> dict[str, Any]:
    return {
        "distributionChannel": "THALES",
        "issuerRequestId": request_id,
        "services": {"issuance": "CREATION", "delivery": "STANDARD"},
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


Call = Callable[[D1Client], Awaitable[Any]]
CALLS: dict[str, tuple[str, Call]] = {
    # fault endpoint name, the call
    "productionStatus": ("productionStatus", lambda c: c.production_status("card-1")),
    "track": ("track", lambda c: c.track("card-1", TRACK)),
    "order": ("order", lambda c: c.order_card("card-2", _order("req-2"))),
    "token": ("token", lambda c: c.production_status("card-1")),
}
PATHS = {
    "productionStatus": "/productionStatus",
    "track": "/track",
    "order": "/operations:production",
    "token": "/oauth2/token",
}
IDEMPOTENT = {"productionStatus", "token"}


def _sent(sb: Sandbox, call: str) -> int:
    return sum(1 for r in sb.requests if r.path.endswith(PATHS[call]))


class Sleeps:
    """The client's backoff waits, recorded instead of slept (the bound is what is checked)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def _run(call: str, fault: Callable[[Sandbox], None], **client: Any) -> tuple[Any, ...]:
    """Make the call once against a fresh sandbox with `fault` scripted; returns (result or
    error, sends of that endpoint, the backoff waits, the sandbox)."""
    sleeps = Sleeps()
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        fault(sb)
        options = {"max_retries": MAX_RETRIES, "sleep": sleeps, **client}
        async with make_client(url, sb, **options) as c:
            try:
                outcome: Any = await CALLS[call][1](c)
            except D1Error as exc:
                outcome = exc
        return outcome, _sent(sb, call), sleeps.waits, sb


@pytest.mark.parametrize("call", CALLS)
async def test_503_is_retried_with_bounded_backoff_then_succeeds(call: str) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, waits, _ = await _run(
        call, lambda sb: sb.faults.fail_next(endpoint, status=503, count=2)
    )
    assert not isinstance(outcome, D1Error), outcome
    assert sent == 3
    assert len(waits) == 2 and all(0 < w <= 0.05 for w in waits)  # make_client's backoff_max


@pytest.mark.parametrize("call", CALLS)
async def test_503_gives_up_after_the_bound(call: str) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, waits, _ = await _run(
        call, lambda sb: sb.faults.fail_next(endpoint, status=503, count=10)
    )
    assert isinstance(outcome, D1Unavailable) and outcome.status == 503
    assert outcome.user_message == MSG_UNAVAILABLE
    assert sent == MAX_RETRIES + 1 and len(waits) == MAX_RETRIES


@pytest.mark.parametrize("status", [502, 504])
@pytest.mark.parametrize("call", CALLS)
async def test_gateway_errors_retry_only_what_is_idempotent(call: str, status: int) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, _, _ = await _run(
        call, lambda sb: sb.faults.fail_next(endpoint, status=status, count=1)
    )
    if call in IDEMPOTENT:
        assert not isinstance(outcome, D1Error), outcome
        assert sent == 2
    else:  # the gateway may have passed the POST on: sending it again could act twice
        assert isinstance(outcome, D1Unavailable) and outcome.status == status
        assert sent == 1


@pytest.mark.parametrize("call", CALLS)
async def test_a_timeout_after_sending_retries_only_what_is_idempotent(call: str) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, _, _ = await _run(
        call, lambda sb: sb.faults.delay_next(endpoint, seconds=1.0), timeout=0.25
    )
    if call in IDEMPOTENT:
        assert not isinstance(outcome, D1Error), outcome
        assert sent == 2
    else:
        assert isinstance(outcome, D1Unavailable) and outcome.status is None
        assert sent == 1


@pytest.mark.parametrize("call", ["productionStatus", "track", "order"])
async def test_a_connection_never_made_is_retried_for_every_call(call: str) -> None:
    """D1 goes away after the token was fetched, and comes back during the first backoff."""
    port = free_port()
    sb = Sandbox(sandbox_config())
    sb.create_card("card-1")
    waits: list[float] = []
    async with contextlib.AsyncExitStack() as stack:

        async def d1_comes_back(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:
                await stack.enter_async_context(serve_asgi(sb.app, port=port))

        url = f"http://127.0.0.1:{port}"
        async with make_client(url, sb, max_retries=MAX_RETRIES, sleep=d1_comes_back) as c:
            async with serve_asgi(sb.app, port=port):
                await c.production_status("card-1")  # the token, fetched while D1 is up
            before = _sent(sb, call)
            await CALLS[call][1](c)  # refused once, then sent: no error
    assert len(waits) == 1 and sb.token_requests == 1
    assert _sent(sb, call) == before + 1  # the refused attempt never reached D1


@pytest.mark.parametrize("call", ["productionStatus", "track", "order"])
async def test_connection_refused_every_time_is_unavailable_after_the_bound(call: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sleeps = Sleeps()
    sb = Sandbox(sandbox_config())
    async with make_client(url, sb, max_retries=2, sleep=sleeps) as c:
        with pytest.raises(D1Unavailable) as caught:
            await CALLS[call][1](c)
    assert caught.value.status is None and "3 attempts" in str(caught.value)
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize("call", CALLS)
async def test_500_internal_error_is_final(call: str) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, waits, _ = await _run(
        call,
        lambda sb: sb.faults.fail_next(endpoint, status=500, error_code="INTERNAL_ERROR", count=3),
    )
    assert isinstance(outcome, D1Unavailable)
    assert (outcome.status, outcome.error_code) == (500, "INTERNAL_ERROR")
    assert outcome.user_message == MSG_D1_FAILED  # not "try again in a minute"
    assert sent == 1 and waits == []


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "FIELD_INVALID_FORMAT", D1BadRequest),
        (403, "OPERATION_NOT_ALLOWED", D1Forbidden),
        (404, "CARD_NOT_FOUND", D1NotFound),
    ],
)
@pytest.mark.parametrize("call", ["productionStatus", "track", "order"])
async def test_4xx_is_final(call: str, status: int, code: str, error: type[D1Error]) -> None:
    endpoint = CALLS[call][0]
    outcome, sent, waits, sb = await _run(
        call, lambda sb: sb.faults.fail_next(endpoint, status=status, error_code=code, count=3)
    )
    assert type(outcome) is error and (outcome.status, outcome.error_code) == (status, code)
    assert "scripted" not in outcome.user_message  # D1's `error` text is never shown
    assert sent == 1 and waits == []
    assert sb.token_requests == 1


@pytest.mark.parametrize("call", ["productionStatus", "track", "order"])
async def test_401_fetches_one_new_token_and_sends_again(call: str) -> None:
    async with running_sandbox() as (sb, url):
        sb.create_card("card-1")
        async with make_client(url, sb, max_retries=MAX_RETRIES) as c:
            await c.production_status("card-1")  # a token in hand
            sb.revoke_tokens()  # D1 forgot it
            await CALLS[call][1](c)
            assert sb.token_requests == 2
            sb.faults.fail_next(CALLS[call][0], status=401, count=5)
            with pytest.raises(D1Unauthorized):
                await CALLS[call][1](c)
        assert sb.token_requests == 3  # once more, not again and again


async def test_token_endpoint_401_is_final() -> None:
    outcome, sent, waits, _ = await _run(
        "token", lambda sb: sb.faults.fail_next("token", status=401, count=3)
    )
    assert isinstance(outcome, D1Unauthorized) and outcome.endpoint == "token"
    assert sent == 1 and waits == []
