"""The credentials D1 presents on its notification callback: Basic client credentials at our
token endpoint, then the Bearer token we issued (or a static one) on every notification.

Tokens we issue are self-verifying: `d1n1.<expires_unix>.<nonce>.<mac>`, the MAC an HMAC-SHA256
keyed from the client secret. Any replica holding the same secret accepts any replica's tokens,
and changing the secret revokes every token at once. All comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from d1.models import TokenResponse

TOKEN_PREFIX = "d1n1"
_KEY_LABEL = b"d1bot notification bearer token v1"


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
        expires_at=datetime.fromtimestamp(expires_at, timezone.utc),
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
    "TOKEN_PREFIX",
    "BearerVerifier",
    "NotifyCredentials",
    "basic_client_ok",
    "bearer_ok",
    "issue_token",
    "issued_token_ok",
]
