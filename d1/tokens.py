"""ES256 keys and the JWT-bearer assertion the issuer signs to get a D1 access token.

D1 (RFC 7523 grant) accepts only ES256 assertions whose header names the issuer's provisioned
key (`kid`) and whose claims say `iss` = `sub` = issuerId, with `exp` at most 15 minutes ahead.
Pure functions: no I/O, the caller passes the time.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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


__all__ = [
    "DEFAULT_ASSERTION_LIFETIME_SECONDS",
    "JWT_BEARER_GRANT",
    "MAX_ASSERTION_LIFETIME_SECONDS",
    "generate_es256_keypair",
    "load_es256_private_key",
    "mint_assertion",
]
