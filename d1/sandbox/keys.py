"""The sandbox's token endpoint logic: verify an issuer's ES256 JWT-bearer assertion as D1 does.

D1 picks the issuer's provisioned public key by the assertion's `kid`, accepts ES256 only, and
requires `iss` = `sub` = issuerId and an `exp` at most 15 minutes ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jwt

from d1.tokens import MAX_ASSERTION_LIFETIME_SECONDS, generate_es256_keypair

CLOCK_SKEW_SECONDS = 30


@dataclass
class AssertionRejected(Exception):
    """Why an assertion was refused, as D1 would answer it."""

    status: int
    error_code: str
    error: str


def verify_assertion(
    assertion: str, *, issuer_id: str, public_keys: dict[str, str], now: datetime
) -> dict[str, object]:
    """The assertion's claims when it is valid; raises `AssertionRejected` otherwise."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise AssertionRejected(400, "FIELD_INVALID_FORMAT", "assertion") from None
    if header.get("alg") != "ES256":
        raise AssertionRejected(401, "AUTHORIZER_UNAUTHORIZED", "assertion alg must be ES256")
    public_key = public_keys.get(str(header.get("kid")))
    if public_key is None:
        raise AssertionRejected(401, "AUTHORIZER_UNAUTHORIZED", "unknown kid")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["ES256"],
            # Time claims are checked below against the sandbox's clock (tests move it).
            options={
                "require": ["iss", "sub", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise AssertionRejected(401, "AUTHORIZER_UNAUTHORIZED", "bad signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AssertionRejected(400, "FIELD_INVALID_FORMAT", exc.claim) from None
    except jwt.PyJWTError:
        raise AssertionRejected(400, "FIELD_INVALID_FORMAT", "assertion") from None
    if claims.get("iss") != issuer_id or claims.get("sub") != issuer_id:
        raise AssertionRejected(401, "AUTHORIZER_UNAUTHORIZED", "iss/sub is not the issuer")
    now_ts = now.timestamp()
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise AssertionRejected(400, "FIELD_INVALID_FORMAT", "exp")
    if exp <= now_ts - CLOCK_SKEW_SECONDS:
        raise AssertionRejected(401, "AUTHORIZER_UNAUTHORIZED", "assertion expired")
    if exp > now_ts + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise AssertionRejected(400, "FIELD_INVALID_VALUE", "exp is more than 15 minutes ahead")
    return claims


__all__ = ["AssertionRejected", "generate_es256_keypair", "verify_assertion"]
