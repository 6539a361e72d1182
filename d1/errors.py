"""What can go wrong when calling D1, as a small exception tree callers can show safely.

    D1Error                      anything the D1 client raises
    ├── D1NotConfigured          issuer id, key id or private key missing (no call was made)
    ├── D1BadRequest      400    FIELD_INVALID_FORMAT, FIELD_INVALID_VALUE, PARSING_ERROR, ...
    │   └── D1InvalidField       a value refused before sending (not in D1's format; no call made)
    ├── D1Unauthorized    401    AUTHORIZER_UNAUTHORIZED after one token refresh; bad assertion
    ├── D1Forbidden       403    AUTHORIZER_FORBIDDEN, OPERATION_NOT_ALLOWED
    ├── D1NotFound        404    unknown issuer or card
    ├── D1Unavailable     5xx, 429, timeouts, connection errors (after the bounded retries);
    │                            500 INTERNAL_ERROR is final and says so
    └── D1UnexpectedResponse     any other status, or a 2xx body the client cannot read

Every error carries D1's `error_code` (when D1 sent one), the HTTP `status` (None when no
answer came), the `correlation_id` sent with the request, and a short `user_message` that is
safe to show a support agent. D1's own `error` text is kept in `detail` for logs only: D1 says
it must not be parsed or shown to end users. `str(error)` is meant for logs and never contains
a full PAN.
"""

from __future__ import annotations

from d1.carddata import redact_pans

MSG_BAD_REQUEST = "D1 did not accept those details; check the values and try again."
MSG_UNAUTHORIZED = "The bot could not sign in to D1; an administrator needs to check its D1 keys."
MSG_FORBIDDEN = "This card product does not allow that."
MSG_NOT_FOUND = "Card not found in D1."
MSG_UNAVAILABLE = "D1 is not answering right now; try again in a minute."
MSG_D1_FAILED = (
    "D1 could not process that request (an error on D1's side); "
    "if it happens again, tell an administrator."
)
MSG_UNEXPECTED = "D1 gave an answer the bot could not read; try again later."
MSG_NOT_CONFIGURED = "D1 is not configured for this bot yet."


def _scrub(text: str) -> str:
    """Mask anything PAN-like in D1's free text before it reaches a log line."""
    return redact_pans(text)


class D1Error(Exception):
    """Base of every D1 client error."""

    default_message = MSG_UNEXPECTED

    def __init__(
        self,
        *,
        status: int | None = None,
        error_code: str | None = None,
        correlation_id: str | None = None,
        detail: str | None = None,
        endpoint: str | None = None,
        user_message: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.correlation_id = correlation_id
        self.detail = _scrub(detail) if detail else detail
        self.endpoint = endpoint
        self.user_message = user_message or self.default_message
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [type(self).__name__]
        if self.endpoint:
            parts.append(f"endpoint={self.endpoint}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code:
            parts.append(f"errorCode={self.error_code}")
        if self.correlation_id:
            parts.append(f"correlationId={self.correlation_id}")
        if self.detail:
            parts.append(f"detail={self.detail!r}")
        return " ".join(parts)


class D1NotConfigured(D1Error):
    default_message = MSG_NOT_CONFIGURED


class D1BadRequest(D1Error):
    default_message = MSG_BAD_REQUEST


class D1InvalidField(D1BadRequest, ValueError):
    """A value we were about to send is not in D1's format and cannot be fixed: refused before
    any call. `field` is D1's name for it; `rule` says what D1 accepts (safe to show)."""

    def __init__(self, field: str, rule: str, *, problem: str = "is not valid") -> None:
        self.field = field
        self.rule = rule
        super().__init__(
            error_code="FIELD_INVALID_FORMAT",
            detail=f"{field} {problem} (checked before calling D1)",
            user_message=f"`{field}` {problem}: D1 needs {rule}.",
        )


class D1Unauthorized(D1Error):
    default_message = MSG_UNAUTHORIZED


class D1Forbidden(D1Error):
    default_message = MSG_FORBIDDEN


class D1NotFound(D1Error):
    default_message = MSG_NOT_FOUND


class D1Unavailable(D1Error):
    default_message = MSG_UNAVAILABLE


class D1UnexpectedResponse(D1Error):
    default_message = MSG_UNEXPECTED


def error_for_status(status: int) -> type[D1Error]:
    """The exception class for a non-2xx HTTP status from D1."""
    if status == 400:
        return D1BadRequest
    if status == 401:
        return D1Unauthorized
    if status == 403:
        return D1Forbidden
    if status == 404:
        return D1NotFound
    if status == 429 or status >= 500:
        return D1Unavailable
    return D1UnexpectedResponse


__all__ = [
    "MSG_D1_FAILED",
    "D1BadRequest",
    "D1Error",
    "D1Forbidden",
    "D1InvalidField",
    "D1NotConfigured",
    "D1NotFound",
    "D1Unauthorized",
    "D1Unavailable",
    "D1UnexpectedResponse",
    "error_for_status",
]
