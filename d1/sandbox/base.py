"""What the sandbox's parts share: its configuration, the record of an API request, and the
refusals the service raises and the HTTP routes translate into D1's errors.

A leaf: `service` (the state), `app` (the HTTP surface) and `delivery` (the notifications) all
import it, and it imports none of them, so they never import each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from d1.sandbox.scenarios import DEFAULT_SCENARIO

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SandboxConfig:
    """How the sandbox behaves. Only `issuer_id` and `key_id` matter for most tests."""

    issuer_id: str = "issuer-001"
    key_id: str = "key-1"
    public_key_pem: str | None = None  # None: the sandbox generates a pair (issuer_private_key_pem)
    callback_url: str | None = None  # e.g. f"{bot}/notifications/d1/v2/issuers/issuer-001/cards"
    callback_client_id: str | None = None
    callback_client_secret: str | None = None
    callback_static_token: str | None = None
    callback_token_url: str | None = None  # default: /oauth2/token at the callback's origin
    seed: int = 1
    # D1 delivers at least once and out of order: by default the sandbox does too.
    duplicate_rate: float = 0.1
    shuffle: bool = True
    batch_size: int = 10
    body_shape: str = "mixed"  # "bulk" {"operations": [...]}, "single" (one bare op), "mixed"
    auto_advance_seconds: float | None = None  # None: cards move only when told
    default_scenario: str = DEFAULT_SCENARIO  # for cards first seen through the HTTP API
    token_ttl_seconds: int = 900
    token_expires_in: Any = None  # what the token answer says (None: token_ttl_seconds)
    # "operation": answer like a notification operation; "envelope": {"operations": [op]}
    status_shape: str = "productionStatus"
    strict: bool = False  # check every request against D1's spec files; refuse a mismatch
    delivery_max_attempts: int = 50
    delivery_backoff_seconds: float = 0.05
    delivery_backoff_max_seconds: float = 2.0
    clock: Clock = field(default=_utc_now, repr=False)


@dataclass
class RequestRecord:
    """One API request the sandbox received (headers lower-cased)."""

    path: str
    method: str
    headers: dict[str, str]
    body: Any = None


class UnknownCard(KeyError):
    pass


class OrderRefused(Exception):
    """The card was already ordered with another issuerRequestId (403 OPERATION_NOT_ALLOWED)."""


__all__ = ["Clock", "OrderRefused", "RequestRecord", "SandboxConfig", "UnknownCard"]
