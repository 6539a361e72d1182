"""The sandbox's HTTP surface: D1's token, productionStatus, track and card-order endpoints.

Paths mirror D1's: the banking API under `/banking/v1`, the token API under `/authz/v1`, so a bot
points `D1_API_URL` at `{base}/banking/v1` and `D1_AUTH_URL` at `{base}/authz/v1`. Errors are
D1's `{"errorCode", "error"}` bodies. A few `/sandbox/...` routes help people drive it by hand.

In strict mode (`SandboxConfig.strict`, `d1bot sandbox --strict`) every request is first checked
against D1's spec files (`d1.sandbox.strict`); a mismatch is logged as an error, kept in
`violations` and answered 400 `{"errorCode": "FIELD_INVALID_FORMAT", "error": "strict: ..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d1.models import CardOrderRequest, track_request_adapter
from d1.patterns import CARD_ID
from d1.sandbox.base import OrderRefused, RequestRecord, SandboxConfig, UnknownCard
from d1.sandbox.checks import order_refusal, track_refusal
from d1.sandbox.delivery import Notifier
from d1.sandbox.faults import Faults
from d1.sandbox.keys import AssertionRejected, verify_assertion
from d1.sandbox.lifecycle import CardState
from d1.tokens import JWT_BEARER_GRANT

CARD_BASE = "/banking/v1/issuers/{issuer_id}/physicalCards/{card_id}"
log = logging.getLogger("d1.sandbox")
# Told of each request (method, path, lower-cased headers, raw body): its problems, if any.
RequestCheck = Callable[[str, str, dict[str, str], bytes], list[str]]


def d1_error(status: int, error_code: str, error: str) -> JSONResponse:
    return JSONResponse({"errorCode": error_code, "error": error}, status_code=status)


class SandboxLike(Protocol):
    """What the routes need of a sandbox (`d1.sandbox.service.Sandbox` builds its app with
    `build_app(self)`): named here so that this module does not import the service."""

    config: SandboxConfig
    faults: Faults
    requests: list[RequestRecord]
    violations: list[str]
    public_keys: dict[str, str]
    notifier: Notifier

    @property
    def cards(self) -> Mapping[str, CardState]: ...
    def now(self) -> datetime: ...
    def issue_token(self, issuer_id: str) -> tuple[str, int]: ...
    def token_issuer(self, token: str) -> str | None: ...
    def status_of(self, card_id: str) -> dict[str, Any]: ...
    def operation_status_of(self, card_id: str) -> dict[str, Any]: ...
    def track(self, card_id: str, request: Any) -> list[dict[str, Any]]: ...
    async def order(self, card_id: str, request: CardOrderRequest | dict[str, Any]) -> str: ...
    def advance(self, card_id: str) -> list[dict[str, Any]]: ...
    def running(self) -> AbstractAsyncContextManager[None]: ...


class _Api:
    """Route handlers bound to one sandbox."""

    def __init__(self, sandbox: SandboxLike, check: RequestCheck | None) -> None:
        self.sb = sandbox
        self.check = check

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.sb.requests.append(RequestRecord(request.url.path, request.method, headers, body))
        return body

    async def _strict(self, request: Request) -> Response | None:
        """Strict mode: the request against D1's spec files; a mismatch is refused loudly."""
        if self.check is None:
            return None
        headers = {k.lower(): v for k, v in request.headers.items()}
        problems = self.check(request.method, request.url.path, headers, await request.body())
        if not problems:
            return None
        violation = f"{request.method} {request.url.path}: " + "; ".join(problems)
        self.sb.violations.append(violation)
        log.error("STRICT: a request does not conform to D1's spec files: %s", violation)
        return d1_error(400, "FIELD_INVALID_FORMAT", f"strict: {violation}")

    async def _fault(self, endpoint: str) -> Response | None:
        delay = self.sb.faults.take_delay(endpoint)
        if delay:
            await asyncio.sleep(delay)
        failure = self.sb.faults.take_failure(endpoint)
        if failure is not None:
            return d1_error(failure.status, failure.error_code, "scripted failure")
        return None

    def _authorise(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        issuer = self.sb.token_issuer(token.strip()) if scheme.lower() == "bearer" else None
        if issuer is None:
            return d1_error(401, "AUTHORIZER_UNAUTHORIZED", "missing, unknown or expired token")
        if issuer != request.path_params["issuer_id"]:
            return d1_error(403, "AUTHORIZER_FORBIDDEN", "token issued to another issuer")
        if not CARD_ID.fullmatch(request.path_params["card_id"]):
            return d1_error(400, "FIELD_INVALID_FORMAT", "cardId")
        return None

    async def _guard(self, request: Request, endpoint: str) -> tuple[Any, Response | None]:
        body = await self._record(request)
        refused = (await self._strict(request)) or (await self._fault(endpoint))
        return body, refused or self._authorise(request)

    # ------------------------------------------------------------------ endpoints

    async def token(self, request: Request) -> Response:
        await self._record(request)
        failure = (await self._strict(request)) or (await self._fault("token"))
        if failure is not None:
            return failure
        # Form-encoded (RFC 6749); parsed here to need no multipart library.
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()
        }
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return d1_error(400, "FIELD_INVALID_VALUE", "grant_type")
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not assertion:
            return d1_error(400, "FIELD_INVALID_FORMAT", "assertion")
        try:
            claims = verify_assertion(
                assertion,
                issuer_id=self.sb.config.issuer_id,
                public_keys=self.sb.public_keys,
                now=self.sb.now(),
            )
        except AssertionRejected as exc:
            return d1_error(exc.status, exc.error_code, exc.error)
        token, ttl = self.sb.issue_token(str(claims["iss"]))
        expires_in = self.sb.config.token_expires_in
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ttl if expires_in is None else expires_in,
                "scope": "banking",
            },
            headers={"cache-control": "no-store"},
        )

    async def production_status(self, request: Request) -> Response:
        _, refused = await self._guard(request, "productionStatus")
        if refused is not None:
            return refused
        card_id = request.path_params["card_id"]
        try:
            shape = self.sb.config.status_shape
            if shape == "operation":
                return JSONResponse(self.sb.operation_status_of(card_id))
            if shape == "envelope":
                return JSONResponse({"operations": [self.sb.operation_status_of(card_id)]})
            return JSONResponse(self.sb.status_of(card_id))
        except UnknownCard:
            return d1_error(404, "CARD_NOT_FOUND", "unknown cardId")

    async def track(self, request: Request) -> Response:
        body, refused = await self._guard(request, "track")
        if refused is not None:
            return refused
        refusal = track_refusal(body)
        if refusal is not None:
            return d1_error(*refusal)
        model = track_request_adapter.validate_python(body)
        emitted = self.sb.track(request.path_params["card_id"], model)
        return JSONResponse({"operationId": emitted[0]["operationId"]}, status_code=202)

    async def order(self, request: Request) -> Response:
        body, refused = await self._guard(request, "order")
        if refused is not None:
            return refused
        refusal = order_refusal(body)
        if refusal is not None:
            return d1_error(*refusal)
        model = CardOrderRequest.model_validate(body)
        try:
            operation_id = await self.sb.order(request.path_params["card_id"], model)
        except OrderRefused:
            return d1_error(403, "OPERATION_NOT_ALLOWED", "card already ordered")
        return JSONResponse({"operationId": operation_id}, status_code=202)

    # ------------------------------------------------------------------ helpers for people

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "cards": len(self.sb.cards)})

    async def list_cards(self, request: Request) -> Response:
        cards = [
            {"cardId": c.card_id, "scenario": c.scenario, "status": c.status, "canMove": c.can_move}
            for c in self.sb.cards.values()
        ]
        notifier = self.sb.notifier
        return JSONResponse(
            {
                "cards": cards,
                "pendingNotifications": notifier.pending,
                # refused with a 4xx (D1 does not retry them) or given up on: lost
                "lostNotifications": notifier.lost,
                "strictViolations": len(self.sb.violations),
            }
        )

    async def advance_card(self, request: Request) -> Response:
        card_id = request.path_params["card_id"]
        try:
            emitted = self.sb.advance(card_id)
        except UnknownCard:
            return d1_error(404, "CARD_NOT_FOUND", "unknown cardId")
        return JSONResponse({"emitted": emitted})


def build_app(sandbox: SandboxLike) -> Starlette:
    check: RequestCheck | None = None
    if sandbox.config.strict:
        from d1.sandbox.strict import request_problems  # needs jsonschema and regex

        check = request_problems
    api = _Api(sandbox, check)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sandbox.running():
            yield

    routes = [
        Route("/authz/v1/oauth2/token", api.token, methods=["POST"]),
        Route(f"{CARD_BASE}/productionStatus", api.production_status, methods=["GET"]),
        Route(f"{CARD_BASE}/track", api.track, methods=["POST"]),
        Route(f"{CARD_BASE}/operations:production", api.order, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/sandbox/cards", api.list_cards, methods=["GET"]),
        Route("/sandbox/cards/{card_id}/advance", api.advance_card, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


__all__ = ["SandboxLike", "build_app", "d1_error"]
