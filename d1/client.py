"""`D1Client`: the issuer's calls to Thales D1 (production status, tracking hub, card order).

Mechanics every call shares, so callers only see typed answers or a `d1.errors.D1Error`:
- an OAuth 2.0 JWT-bearer access token, minted with the issuer's ES256 key, cached until shortly
  before it expires, with ONE in-flight refresh shared by concurrent callers and one refresh +
  retry when D1 answers 401;
- the one retry policy for D1 calls (callers add none of their own), after D1's table: bounded
  exponential backoff with jitter on connection errors, timeouts and 502/503/504; never on 500
  or a 4xx ("Retry Possible: no"); a POST that is not idempotent (track, order) only when it was
  never sent (the connection was not made) or D1 answered 503 (not processed: "retry later");
- D1's formats checked before sending (`d1.patterns`): a value D1 would refuse is refused here,
  naming the field (`D1InvalidField`), since D1's 400s are final;
- a fresh random `x-correlation-id` per call (kept across that call's retries; never derived
  from card data);
- optional mTLS client certificate (D1 requires it in production);
- an optional observer told of every call (endpoint, outcome, seconds): the application's
  metrics, injected so that this package depends on nothing of the application.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import certifi
import httpx
from pydantic import BaseModel, ValidationError

from d1.answers import parse_production_status
from d1.errors import (
    MSG_D1_FAILED,
    D1Error,
    D1NotConfigured,
    D1Unauthorized,
    D1Unavailable,
    D1UnexpectedResponse,
    error_for_status,
)
from d1.models import (
    CardOperationResponse,
    CardOrderRequest,
    D1ErrorBody,
    ProductionStatus,
    TokenResponse,
)
from d1.patterns import check_card_id, normalise_track_request
from d1.tokens import (
    DEFAULT_ASSERTION_LIFETIME_SECONDS,
    JWT_BEARER_GRANT,
    TokenCache,
    load_es256_private_key,
    mint_assertion,
    token_answer,
)

log = logging.getLogger("d1bot.d1")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
# Told of each call once it ended: endpoint, outcome ("ok", "not_found", ...), seconds.
CallObserver = Callable[[str, str, float], None]

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_BASE_SECONDS = 0.25
DEFAULT_BACKOFF_MAX_SECONDS = 4.0
DEFAULT_TOKEN_MARGIN_SECONDS = 60
# D1's table: 503 (and the gateways' 502/504) may be retried; 500 and every 4xx may not.
RETRY_STATUSES = frozenset({502, 503, 504})
# What a non-idempotent POST may be retried on: D1 says 503 means "not processed, retry later";
# a gateway's 502/504 may hide a request D1 did process.
POST_RETRY_STATUSES = frozenset({503})
# Failures that leave a request unsent: the only ones a non-idempotent POST is retried after.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

ENDPOINT_TOKEN = "token"
ENDPOINT_STATUS = "productionStatus"
ENDPOINT_TRACK = "track"
ENDPOINT_ORDER = "order"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def build_ssl_context(
    *, client_cert: str | Path | None, client_key: str | Path | None, ca_file: str | None = None
) -> ssl.SSLContext:
    """A verifying TLS context, presenting the issuer's client certificate when given (mTLS)."""
    if bool(client_cert) != bool(client_key):
        raise D1NotConfigured(detail="client certificate and client key go together")
    context = ssl.create_default_context(cafile=ca_file or certifi.where())
    if client_cert and client_key:
        context.load_cert_chain(certfile=str(client_cert), keyfile=str(client_key))
    return context


class D1Client:
    """Async client for D1's banking API. One instance per process; close with `aclose()`."""

    def __init__(
        self,
        *,
        api_url: str,
        auth_url: str,
        issuer_id: str,
        key_id: str,
        private_key_pem: str,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS,
        token_margin_seconds: int = DEFAULT_TOKEN_MARGIN_SECONDS,
        assertion_lifetime_seconds: int = DEFAULT_ASSERTION_LIFETIME_SECONDS,
        clock: Clock = _utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        observe: CallObserver | None = None,
    ) -> None:
        if not issuer_id or not key_id or not private_key_pem:
            raise D1NotConfigured(detail="issuer id, key id and private key are required")
        try:
            self._private_key = load_es256_private_key(private_key_pem)
        except ValueError as exc:
            raise D1NotConfigured(detail=f"private key unusable: {exc}") from None
        self.api_url = api_url.rstrip("/")
        self.auth_url = auth_url.rstrip("/")
        self.issuer_id = issuer_id
        self.key_id = key_id
        self.max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._assertion_lifetime = assertion_lifetime_seconds
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._observe = observe
        self.ssl_context = build_ssl_context(
            client_cert=client_cert, client_key=client_key, ca_file=ca_file
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=self.ssl_context,
            transport=transport,
            headers={"accept": "application/json", "user-agent": "d1-slack"},
        )
        self._tokens = TokenCache(self._fetch_token, clock, token_margin_seconds)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> D1Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def ensure_token(self) -> None:
        """Hold a valid token (fetched when none is cached): `d1bot check --online` proves the
        key, the key id and the auth URL with it; raises the `D1Error` that says why not."""
        await self._tokens.get()

    # ------------------------------------------------------------------ the calls

    def _card_url(self, card_id: str, tail: str) -> str:
        # Refused before any I/O (D1InvalidField): the id goes into a URL path and D1's logs.
        card_id = check_card_id(card_id)
        return f"{self.api_url}/issuers/{self.issuer_id}/physicalCards/{card_id}/{tail}"

    async def production_status(self, card_id: str) -> ProductionStatus:
        """`GET .../productionStatus`. Accepts D1's documented body and, as some guide pages
        describe, a notification operation, bare or as `{"operations": [op]}`."""
        response = await self._call(
            ENDPOINT_STATUS, "GET", self._card_url(card_id, "productionStatus")
        )
        body = _json(response, ENDPOINT_STATUS)
        try:
            return parse_production_status(body)
        except (ValidationError, ValueError) as exc:
            raise D1UnexpectedResponse(
                status=response.status_code,
                endpoint=ENDPOINT_STATUS,
                correlation_id=response.request.headers.get("x-correlation-id"),
                detail=f"unreadable productionStatus body: {type(exc).__name__}",
            ) from None

    async def track(self, card_id: str, request: BaseModel | Mapping[str, Any]) -> None:
        """`POST .../track` (tracking hub). Results arrive as STANDALONE_TRACKING notifications."""
        url = self._card_url(card_id, "track")
        given = request.model_dump(by_alias=True) if isinstance(request, BaseModel) else request
        body = normalise_track_request(given)  # D1's formats, or D1InvalidField naming the field
        await self._call(ENDPOINT_TRACK, "POST", url, json=body)

    async def order_card(
        self, card_id: str, request: CardOrderRequest | Mapping[str, Any]
    ) -> CardOperationResponse:
        """`POST .../operations:production`: order a physical card (202 `{operationId}`)."""
        url = self._card_url(card_id, "operations:production")
        if isinstance(request, CardOrderRequest):
            body: Any = request.to_wire()
        else:
            body = dict(request)
        response = await self._call(ENDPOINT_ORDER, "POST", url, json=body)
        try:
            return CardOperationResponse.model_validate(_json(response, ENDPOINT_ORDER))
        except ValidationError:
            raise D1UnexpectedResponse(
                status=response.status_code, endpoint=ENDPOINT_ORDER, detail="no operationId"
            ) from None

    # ------------------------------------------------------------------ token

    async def _fetch_token(self) -> TokenResponse:
        assertion = mint_assertion(
            issuer_id=self.issuer_id,
            key_id=self.key_id,
            private_key=self._private_key,
            now=self._clock(),
            lifetime_seconds=self._assertion_lifetime,
        )
        response = await self._send_with_retries(
            ENDPOINT_TOKEN,
            "POST",
            f"{self.auth_url}/oauth2/token",
            correlation_id=_correlation_id(),
            idempotent=True,  # asking again only mints another token
            data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion},
        )
        try:
            return token_answer(_json(response, ENDPOINT_TOKEN))
        except ValueError as exc:
            raise D1UnexpectedResponse(
                status=response.status_code, endpoint=ENDPOINT_TOKEN, detail=str(exc)
            ) from None

    # ------------------------------------------------------------------ transport

    async def _call(
        self, endpoint: str, method: str, url: str, *, json: Any = None
    ) -> httpx.Response:
        """An authorised banking call: token, retries, one refresh on 401, error mapping."""
        send = functools.partial(
            self._send_with_retries,
            endpoint,
            method,
            url,
            correlation_id=_correlation_id(),
            idempotent=method == "GET",
            json=json,
        )
        token = await self._tokens.get()
        try:
            return await send(token=token)
        except D1Unauthorized as exc:
            if exc.error_code not in (None, "AUTHORIZER_UNAUTHORIZED"):
                raise
            log.info("D1 refused the access token (%s); fetching a new one", exc.correlation_id)
            self._tokens.discard(token)
            return await send(token=await self._tokens.get())

    async def _send_with_retries(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        correlation_id: str,
        idempotent: bool,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """Send, retrying as D1's table allows: an idempotent request after connection errors,
        timeouts and 502/503/504; any other only when it never left, or on 503."""
        headers = {"x-correlation-id": correlation_id}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        attempt = 0
        outcome = "error"
        try:
            while True:
                try:
                    response = await self._http.request(
                        method, url, json=json, data=data, headers=headers
                    )
                except httpx.TransportError as exc:  # connection errors and timeouts
                    if attempt < self.max_retries and (idempotent or isinstance(exc, NEVER_SENT)):
                        attempt += 1
                        await self._backoff(attempt)
                        continue
                    outcome = "unavailable"
                    raise D1Unavailable(
                        endpoint=endpoint,
                        correlation_id=correlation_id,
                        detail=f"{type(exc).__name__} after {attempt + 1} attempts",
                    ) from None
                retry_on = RETRY_STATUSES if idempotent else POST_RETRY_STATUSES
                if response.status_code in retry_on and attempt < self.max_retries:
                    attempt += 1
                    await self._backoff(attempt)
                    continue
                if response.is_success:
                    outcome = "ok"
                    return response
                error = _error_from(response, endpoint, correlation_id)
                outcome = _outcome_label(error)
                raise error
        finally:
            if self._observe is not None:
                self._observe(endpoint, outcome, time.perf_counter() - started)

    async def _backoff(self, attempt: int) -> None:
        ceiling = min(self._backoff_max, self._backoff_base * (2 ** (attempt - 1)))
        await self._sleep(ceiling / 2 + self._rng.uniform(0, ceiling / 2))


# ---------------------------------------------------------------------- pure helpers


def _correlation_id() -> str:
    return uuid.uuid4().hex


def _json(response: httpx.Response, endpoint: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise D1UnexpectedResponse(
            status=response.status_code, endpoint=endpoint, detail="body is not JSON"
        ) from None


def _error_from(response: httpx.Response, endpoint: str, correlation_id: str) -> D1Error:
    code: str | None = None
    detail: str | None = None
    try:
        body = D1ErrorBody.model_validate(response.json())
        code, detail = body.errorCode, body.error
    except (ValueError, ValidationError):
        pass
    return error_for_status(response.status_code)(
        status=response.status_code,
        error_code=code,
        correlation_id=correlation_id,
        detail=detail,
        endpoint=endpoint,
        # 500 is final in D1's table: "try again in a minute" would be the wrong advice.
        user_message=MSG_D1_FAILED if response.status_code == 500 else None,
    )


def _outcome_label(error: D1Error) -> str:
    return {
        "D1BadRequest": "bad_request",
        "D1Unauthorized": "unauthorized",
        "D1Forbidden": "forbidden",
        "D1NotFound": "not_found",
        "D1Unavailable": "unavailable",
    }.get(type(error).__name__, "error")


__all__ = ["D1Client", "build_ssl_context", "parse_production_status"]
