"""ES256 keys and the JWT-bearer assertion the issuer signs to get a D1 access token.

D1 (RFC 7523 grant) accepts only ES256 assertions whose header names the issuer's provisioned
key (`kid`) and whose claims say `iss` = `sub` = issuerId, with `exp` at most 15 minutes ahead.
Pure functions (no I/O, the caller passes the time), and `TokenCache`, which holds the access
token and makes concurrent callers share one refresh.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from d1.models import TokenResponse

Clock = Callable[[], datetime]
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_SECONDS = 15 * 60
DEFAULT_ASSERTION_LIFETIME_SECONDS = 5 * 60


def generate_es256_keypair() -> tuple[str, str]:
    """A fresh P-256 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def load_es256_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key and check it is a P-256 key (D1 accepts ES256 only)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the D1 private key must be an EC P-256 key (ES256)")
    return key


def mint_assertion(
    *,
    issuer_id: str,
    key_id: str,
    private_key: ec.EllipticCurvePrivateKey | str,
    now: datetime,
    lifetime_seconds: int = DEFAULT_ASSERTION_LIFETIME_SECONDS,
    audience: str | None = None,
) -> str:
    """A signed JWT-bearer assertion for D1's token endpoint."""
    if not 0 < lifetime_seconds <= MAX_ASSERTION_LIFETIME_SECONDS:
        raise ValueError("assertion lifetime must be between 1 second and 15 minutes")
    if isinstance(private_key, str):
        private_key = load_es256_private_key(private_key)
    issued_at = int(now.timestamp())
    claims: dict[str, object] = {
        "iss": issuer_id,
        "sub": issuer_id,
        "iat": issued_at,
        "exp": issued_at + lifetime_seconds,
        "jti": uuid.uuid4().hex,
    }
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": key_id})


DEFAULT_TOKEN_LIFETIME_SECONDS = 900  # D1's tokens live 15 minutes


def token_answer(body: Any) -> TokenResponse:
    """D1's token answer, read leniently: `expires_in` may come as an integer, a fraction
    (`899.5`) or a string (`"900"`); it is rounded down to whole seconds (a token is never
    kept longer than D1 said). Fields we do not use (`expires_at`, `scope`, ...) are not
    interpreted. ValueError when there is no usable token or lifetime."""
    if not isinstance(body, Mapping):
        raise ValueError("token answer is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("no access_token")
    raw = body.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS)
    try:
        seconds = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise ValueError("expires_in is not a number") from None
    if isinstance(raw, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("expires_in is not a positive number")
    token_type = body.get("token_type")
    return TokenResponse(
        access_token=token,
        token_type=token_type if isinstance(token_type, str) else "Bearer",
        expires_in=max(1, math.floor(seconds)),
    )


@dataclass
class _CachedToken:
    value: str
    refresh_after: datetime


class TokenCache:
    """The access token, refreshed by at most one caller at a time (others wait and reuse it)."""

    def __init__(self, fetch: Callable[[], Awaitable[TokenResponse]], clock: Clock, margin: int):
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._token: _CachedToken | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_after:
            return token.value
        return None

    async def get(self) -> str:
        value = self._fresh()
        if value is not None:
            return value
        async with self._lock:  # the first caller fetches; the others wait and reuse
            value = self._fresh()
            if value is not None:
                return value
            answer = await self._fetch()
            lifetime = max(answer.expires_in - self._margin, answer.expires_in // 2, 1)
            self._token = _CachedToken(
                answer.access_token, self._clock() + timedelta(seconds=lifetime)
            )
            return answer.access_token

    def discard(self, value: str) -> None:
        """Forget `value` (D1 refused it); a newer token fetched meanwhile is kept."""
        if self._token is not None and self._token.value == value:
            self._token = None


__all__ = [
    "DEFAULT_ASSERTION_LIFETIME_SECONDS",
    "JWT_BEARER_GRANT",
    "MAX_ASSERTION_LIFETIME_SECONDS",
    "TokenCache",
    "generate_es256_keypair",
    "load_es256_private_key",
    "mint_assertion",
    "token_answer",
]
