"""`Sandbox`: a local D1 (state, lifecycle, tokens, notification delivery) behind one object.

The HTTP surface lives in `d1.sandbox.app` (built here, over what this object offers); this
module holds what both the routes and tests drive directly (see `d1/sandbox/__init__.py` for the
contract). Configuration, request records and refusals live in `d1.sandbox.base`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette

from d1.carddata import mask_pan
from d1.models import Address, CardOrderRequest, track_request_adapter
from d1.sandbox import lifecycle
from d1.sandbox.app import build_app
from d1.sandbox.base import OrderRefused, RequestRecord, SandboxConfig, UnknownCard
from d1.sandbox.delivery import Notifier, Refusal
from d1.sandbox.faults import Faults
from d1.sandbox.keys import generate_es256_keypair
from d1.sandbox.lifecycle import CardState
from d1.sandbox.scenarios import DEFAULT_SCENARIO, scenario_for_card_id

log = logging.getLogger("d1.sandbox")


def _address_wire(address: dict[str, Any] | None) -> dict[str, Any] | None:
    """An address in D1's wire names (accepts snake_case, camelCase and `postalCode`)."""
    if not address:
        return None
    values = dict(address)
    for alias in ("postalCode", "postal_code"):
        if alias in values:
            values.setdefault("zipCode", values.pop(alias))
    return Address.model_validate(values).to_wire() or None


class Sandbox:
    """A local D1. Build it, serve `sandbox.app`, and drive the lifecycle from tests."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.issuer_private_key_pem: str | None = None
        if self.config.public_key_pem is None:
            self.issuer_private_key_pem, self.config.public_key_pem = generate_es256_keypair()
        self.public_keys: dict[str, str] = {self.config.key_id: self.config.public_key_pem}
        self.faults = Faults()
        self.cards: dict[str, CardState] = {}
        self.requests: list[RequestRecord] = []
        self.violations: list[str] = []  # strict mode: requests that do not conform to D1's spec
        self.token_requests = 0
        self.emitted: list[dict[str, Any]] = []
        self._tokens: dict[str, tuple[str, datetime]] = {}  # access token -> (issuer, expiry)
        self._orders: dict[str, tuple[str | None, str]] = {}  # card -> (issuerRequestId, opId)
        self.notifier = Notifier(
            config_of=lambda: self.config, faults=self.faults, seed=self.config.seed
        )
        self._app: Starlette | None = None

    # ------------------------------------------------------------------ contract API

    @property
    def app(self) -> Starlette:
        """The Starlette ASGI app; its lifespan runs delivery and auto-advance in background."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    @property
    def delivered(self) -> list[tuple[list[dict[str, Any]], int]]:
        """Every delivery attempt: (operations, HTTP status; 0 when no answer came)."""
        return self.notifier.delivered

    @property
    def refused(self) -> list[Refusal]:
        """Deliveries the callback refused with a 4xx: lost (D1 does not retry them)."""
        return self.notifier.refused

    def now(self) -> datetime:
        return self.config.clock()

    def set_callback(
        self,
        url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        static_token: str | None = None,
        token_url: str | None = None,
    ) -> None:
        """Point notifications at a callback (usable after the sandbox started)."""
        self.config.callback_url = url
        self.config.callback_client_id = client_id
        self.config.callback_client_secret = client_secret
        self.config.callback_static_token = static_token
        self.config.callback_token_url = token_url
        self.notifier.wake()

    def create_card(
        self,
        card_id: str,
        scenario: str = DEFAULT_SCENARIO,
        masked_pan: str | None = "************1234",
        name: str | None = "JANE DOE",
        address: dict[str, Any] | None = None,
        carrier: str = "fedex",
    ) -> CardState:
        """Seed a card D1 knows (status CARD_PROD_REQUESTED, no notification yet)."""
        card = lifecycle.new_card(
            card_id=card_id,
            issuer_id=self.config.issuer_id,
            scenario=scenario,
            seed=self.config.seed,
            masked_pan=mask_pan(masked_pan) if masked_pan else None,
            name=name,
            address=_address_wire(address),
            carrier=carrier,
            now=self.now(),
        )
        self.cards[card_id] = card
        return card

    async def order(self, card_id: str, request: CardOrderRequest | dict[str, Any]) -> str:
        """What `operations:production` does: create the card if new, record the order, emit
        CARD_PROD_REQUESTED. Idempotent on issuerRequestId; returns the operationId."""
        body = request.to_wire() if isinstance(request, CardOrderRequest) else dict(request)
        request_id = body.get("issuerRequestId")
        previous = self._orders.get(card_id)
        if previous is not None:
            if request_id is not None and previous[0] == request_id:
                return previous[1]
            raise OrderRefused(card_id)
        card = self.cards.get(card_id)
        if card is None or not card.runs:
            card = self.create_card(
                card_id, scenario=scenario_for_card_id(card_id, self.config.default_scenario)
            )
        elif card.ordered:
            raise OrderRefused(card_id)
        lifecycle.apply_order(card, body)
        operation_id = card.runs[0].operation_id
        self._orders[card_id] = (request_id, operation_id)
        self._queue(lifecycle.advance(card, self.now()))
        return operation_id

    def advance(self, card_id: str) -> list[dict[str, Any]]:
        """One lifecycle step for the card (its first step is the order's REQUESTED)."""
        card = self._card(card_id)
        emitted = lifecycle.advance(card, self.now())
        self._queue(emitted)
        return emitted

    def advance_all(self) -> list[dict[str, Any]]:
        """One step for every card that can move."""
        emitted: list[dict[str, Any]] = []
        for card_id, card in list(self.cards.items()):
            if card.can_move:
                emitted.extend(self.advance(card_id))
        return emitted

    def run_scenario(self, card_id: str) -> list[dict[str, Any]]:
        """Every remaining step of the card, queued at once."""
        card = self._card(card_id)
        emitted: list[dict[str, Any]] = []
        while card.can_move:
            emitted.extend(self.advance(card_id))
        return emitted

    def track(self, card_id: str, request: Any) -> list[dict[str, Any]]:
        """What `track` does (tracking hub); a card unknown to the sandbox is produced outside
        D1, so it is created on the fly."""
        model = (
            request
            if hasattr(request, "tracking_type")
            else track_request_adapter.validate_python(request)
        )
        body = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        card = self.cards.get(card_id) or self.create_card(card_id, scenario="external")
        emitted = lifecycle.start_tracking(card, body, self.now())
        self._queue(emitted)
        return emitted

    async def flush(self, timeout: float = 10) -> None:
        """Deliver everything queued now; returns once the callback acknowledged it."""
        async with asyncio.timeout(timeout):
            await self.notifier.deliver_pending()

    def status_of(self, card_id: str) -> dict[str, Any]:
        """The productionStatus body the API would answer (KeyError: unknown card)."""
        body = lifecycle.status_body(self._card(card_id))
        if body is None:
            raise UnknownCard(card_id)
        return body

    def operation_status_of(self, card_id: str) -> dict[str, Any]:
        """The status as a notification operation (the shape some D1 guide pages describe)."""
        card = self._card(card_id)
        for op in reversed(self.emitted):
            if op["cardId"] == card_id:
                return op
        raise UnknownCard(card.card_id)

    # ------------------------------------------------------------------ tokens

    def issue_token(self, issuer_id: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl_seconds
        self._tokens[token] = (issuer_id, self.now() + timedelta(seconds=ttl))
        self.token_requests += 1
        return token, ttl

    def token_issuer(self, token: str) -> str | None:
        """The issuer an access token belongs to, or None if unknown or expired."""
        entry = self._tokens.get(token)
        if entry is None or self.now() >= entry[1]:
            return None
        return entry[0]

    def revoke_tokens(self) -> None:
        """Make every issued token invalid (tests of refresh-on-401)."""
        self._tokens.clear()

    # ------------------------------------------------------------------ background

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Background delivery and auto-advance while the block runs (the app's lifespan)."""
        tasks = [asyncio.create_task(self.notifier.run_forever(), name="sandbox-delivery")]
        if self.config.auto_advance_seconds:
            tasks.append(asyncio.create_task(self._auto_advance(), name="sandbox-advance"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _auto_advance(self) -> None:
        interval = self.config.auto_advance_seconds or 1.0
        while True:
            await asyncio.sleep(interval)
            self.advance_all()

    # ------------------------------------------------------------------ internals

    def _card(self, card_id: str) -> CardState:
        card = self.cards.get(card_id)
        if card is None:
            raise UnknownCard(card_id)
        return card

    def _queue(self, operations: list[dict[str, Any]]) -> None:
        self.emitted.extend(operations)
        self.notifier.enqueue(operations)


__all__ = ["OrderRefused", "RequestRecord", "Sandbox", "SandboxConfig", "UnknownCard"]
