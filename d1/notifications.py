"""D1's notification callback, the pure part: parse a body into operations (naming the first bad
field), and the credentials D1 presents (Basic at our token endpoint, Bearer on notifications).

No I/O here: `bot/intake/routes.py` reads the request and answers; this module decides.

Tokens we issue are self-verifying: `d1n1.<expires_unix>.<nonce>.<mac>`, the MAC an HMAC-SHA256
keyed from the client secret. Any replica holding the same secret accepts any replica's tokens,
and changing the secret revokes every token at once. All comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from d1.models import Operation, OperationsEnvelope, TokenResponse, parse_operations

FIELD_INVALID_FORMAT = "FIELD_INVALID_FORMAT"
FIELD_INVALID_VALUE = "FIELD_INVALID_VALUE"
TOKEN_PREFIX = "d1n1"
_KEY_LABEL = b"d1bot notification bearer token v1"


# --------------------------------------------------------------------------- parsing


class NotificationRejected(ValueError):
    """A body that cannot be accepted: D1-style error code and the first bad field."""

    def __init__(self, error_code: str, field: str) -> None:
        super().__init__(f"{error_code}: {field}")
        self.error_code = error_code
        self.field = field

    def body(self) -> dict[str, str]:
        return {"errorCode": self.error_code, "error": self.field}


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("operations", 0, "details", "shipment", "lastUpdatedAt")` -> the JSON path
    `operations[0].details.shipment.lastUpdatedAt`. Only names and indexes: never values."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def parse_body(raw: bytes, *, issuer_id: str | None = None) -> list[Operation]:
    """The operations of a callback body (`{"operations": [...]}` or one operation object).

    Raises NotificationRejected naming the first bad field; the whole body is rejected when any
    operation is bad, so that D1's retry delivers it whole rather than half-stored. When
    `issuer_id` is given, an operation naming another issuer is refused."""
    parsed = _parse_valid(raw)
    if parsed is not None:
        operations, bulk = parsed
    else:
        operations, bulk = _parse_judged(raw)
    if issuer_id is not None:
        for index, op in enumerate(operations):
            if op.issuer_id is not None and op.issuer_id != issuer_id:
                where = f"operations[{index}].issuerId" if bulk else "issuerId"
                raise NotificationRejected(FIELD_INVALID_VALUE, where)
    return operations


def _parse_valid(raw: bytes) -> tuple[list[Operation], bool] | None:
    """The common case in one step: pydantic parses and validates the bytes together (faster
    than `json.loads` then validating the objects). Only when the outcome is sure to be what
    `_parse_judged` would decide: the body validates, and whether it is bulk is known (a
    top-level `operations` key; its name cannot hide behind escapes when there are none). None
    otherwise (invalid, a NUL escape, undecidable): then `_parse_judged` decides and names the
    field."""
    if b"\\u0000" in raw:
        return None
    try:
        if b'"operations"' in raw:  # bulk, or a single operation with such a string value
            return OperationsEnvelope.model_validate_json(raw).operations, True
        if b"\\u" not in raw:  # no escapes: no key can spell "operations"
            return [Operation.model_validate_json(raw)], False
    except ValidationError:
        pass
    return None


def _parse_judged(raw: bytes) -> tuple[list[Operation], bool]:
    """`parse_body` step by step (`json.loads`, then the model): names the first bad field."""
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotificationRejected(FIELD_INVALID_FORMAT, "body") from exc
    if not isinstance(body, dict):
        raise NotificationRejected(FIELD_INVALID_FORMAT, "body")
    if "operations" in body and not isinstance(body["operations"], list):
        raise NotificationRejected(FIELD_INVALID_FORMAT, "operations")
    try:
        operations = parse_operations(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {"loc": ()}
        raise NotificationRejected(FIELD_INVALID_FORMAT, field_path(first["loc"])) from None
    # JSON can carry a NUL only as the escape \u0000 (a raw control character is invalid), so
    # a body without that text holds none; with it, the walk finds where.
    nul = _first_nul(body, ()) if b"\\u0000" in raw else None
    if nul is not None:  # PostgreSQL text cannot hold NUL; no D1 field has one
        raise NotificationRejected(FIELD_INVALID_FORMAT, field_path(nul))
    return operations, "operations" in body


def _first_nul(value: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    """Where the first string (or key) holding a NUL character is, if any."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = (*loc, key) if "\x00" in key else _first_nul(item, (*loc, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_nul(item, (*loc, index))
            if found is not None:
                return found
    return None


def is_json_content_type(value: str | None) -> bool:
    """`application/json` (any parameters) or a `+json` media type."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class NotifyCredentials:
    """What D1 may present. Empty (nothing configured) refuses everything."""

    client_id: str | None = None
    client_secret: str | None = None
    static_token: str | None = None
    token_ttl_seconds: int = 900

    @property
    def issues_tokens(self) -> bool:
        return bool(self.client_id and self.client_secret)

    @property
    def configured(self) -> bool:
        return self.issues_tokens or bool(self.static_token)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def basic_client_ok(authorization: str | None, creds: NotifyCredentials) -> bool:
    """Whether an `Authorization: Basic` header carries our client id and secret."""
    if not creds.issues_tokens or not authorization:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return False
    # Both comparisons always run: timing says nothing about which one failed.
    id_ok = _equal(client_id, creds.client_id or "")
    secret_ok = _equal(secret, creds.client_secret or "")
    return id_ok and secret_ok


def _mac_key(creds: NotifyCredentials) -> bytes:
    material = f"{creds.client_id}\x00{creds.client_secret}".encode()
    return hmac.new(material, _KEY_LABEL, hashlib.sha256).digest()


def _mac(creds: NotifyCredentials, message: str) -> str:
    digest = hmac.new(_mac_key(creds), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(creds: NotifyCredentials, *, now: datetime) -> TokenResponse:
    """A short-lived Bearer token for D1 (requires client id and secret)."""
    if not creds.issues_tokens:
        raise ValueError("no client credentials configured: tokens cannot be issued")
    expires_at = int(now.timestamp()) + creds.token_ttl_seconds
    nonce = secrets.token_urlsafe(12)
    message = f"{TOKEN_PREFIX}.{expires_at}.{nonce}"
    return TokenResponse(
        access_token=f"{message}.{_mac(creds, message)}",
        token_type="Bearer",
        expires_in=creds.token_ttl_seconds,
        expires_at=expires_at,
    )


def issued_token_ok(token: str, creds: NotifyCredentials, *, now: datetime) -> bool:
    """Whether `token` is one we issued with the current secret and it has not expired."""
    if not creds.issues_tokens:
        return False
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not parts[1].isdigit():
        return False
    message = ".".join(parts[:3])
    if not _equal(parts[3], _mac(creds, message)):
        return False
    return int(parts[1]) > now.timestamp()


def bearer_ok(authorization: str | None, creds: NotifyCredentials, *, now: datetime) -> bool:
    """Whether a notification's `Authorization: Bearer` is the static token or one we issued."""
    token = _bearer_token(authorization)
    if token is None:
        return False
    if creds.static_token and _equal(token, creds.static_token):
        return True
    return issued_token_ok(token, creds, now=now)


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class BearerVerifier:
    """`bearer_ok` for one set of credentials, remembering the issued tokens it verified until
    they expire: D1 presents the same token for its whole life (15 minutes), and checking its
    HMAC on every notification cost 5 us. Only tokens that verified are remembered (at most
    `max_tokens`); any other token is checked in full, constant-time, as by `bearer_ok`."""

    def __init__(self, creds: NotifyCredentials, *, max_tokens: int = 64) -> None:
        self.creds = creds
        self.max_tokens = max_tokens
        self._expiry: dict[str, int] = {}  # verified token -> expires_at (unix seconds)

    def ok(self, authorization: str | None, *, now: datetime) -> bool:
        token = _bearer_token(authorization)
        if token is None:
            return False
        creds = self.creds
        if creds.static_token and _equal(token, creds.static_token):
            return True
        expires = self._expiry.get(token)
        if expires is not None:
            if expires > now.timestamp():
                return True
            del self._expiry[token]
            return False
        if not issued_token_ok(token, creds, now=now):
            return False
        if len(self._expiry) >= self.max_tokens:
            self._expiry.pop(next(iter(self._expiry)))  # the oldest
        self._expiry[token] = int(token.split(".", 2)[1])
        return True


__all__ = [
    "FIELD_INVALID_FORMAT",
    "FIELD_INVALID_VALUE",
    "BearerVerifier",
    "NotificationRejected",
    "NotifyCredentials",
    "basic_client_ok",
    "bearer_ok",
    "field_path",
    "is_json_content_type",
    "issue_token",
    "issued_token_ok",
    "parse_body",
]
