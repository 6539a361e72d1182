"""The one Slack error table: what a failed Web API answer means for a message (give up, retry
with backoff, wait for `Retry-After`, or just not yet), and the bounded labels metrics use.

Pure: the worker (`bot.delivery.worker`) and the Slack listeners read their decisions here."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError

# Slack errors that no retry will fix: the row goes to the dead letters at once.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "too_many_attachments",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_dm_bot",
        "user_not_found",
        "user_disabled",
        "team_access_not_granted",
        "ekm_access_denied",
        "unknown_method",
        "missing_event",
    }
)
# Errors that mean a stored parent message is gone from Slack.
PARENT_GONE_ERRORS = frozenset({"thread_not_found", "message_not_found", "cant_update_message"})
# Errors that mean the bot cannot post in the channel until someone invites it.
NOT_IN_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found"})


class DeliveryError(Exception):
    """A send did not succeed; subclasses say what to do about it."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class PermanentError(DeliveryError):
    """Give up now (dead letter)."""


class TransientError(DeliveryError):
    """Try again later, with backoff, up to the attempt bound."""


class RateLimited(DeliveryError):
    """Slack said 429: nothing goes to this channel before `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after


class Deferred(DeliveryError):
    """Not now, and not a failure: release the row for `seconds` without counting an attempt."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


def classify_slack_error(
    *, status: int, error: str | None, retry_after: str | None
) -> DeliveryError:
    """What a failed Slack Web API answer means for the message."""
    if status == 429:
        return RateLimited(parse_retry_after(retry_after))
    if status >= 500:
        return TransientError(f"http_{status}")
    code = error or f"http_{status}"
    if code in PERMANENT_ERRORS:
        return PermanentError(code)
    if code == "ratelimited":
        return RateLimited(parse_retry_after(retry_after))
    return TransientError(code)


def parse_retry_after(value: str | None, *, default: float = 1.0) -> float:
    """Seconds from a `Retry-After` header (Slack sends whole seconds); at least one second."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        seconds = default
    return max(1.0, seconds)


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter for the `attempt`-th failure (1-based): a delay drawn
    between half and all of `min(cap, base * 2**(attempt-1))`, so retries of many rows spread."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + 0.5 * rng())



def error_code(exc: SlackApiError) -> str | None:
    """The `error` of an answer the SDK raised for, when it had one."""
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else None


def outcome_label(failure: DeliveryError) -> str:
    if isinstance(failure, RateLimited):
        return "ratelimited"
    if isinstance(failure, PermanentError):
        return "permanent"
    if failure.error.startswith("http_5"):
        return "server_error"
    return "error"


DEAD_LETTER_LABELS = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive",
     "msg_too_long", "invalid_blocks", "missing_event", "max_attempts", "token_revoked"}
)  # fmt: skip


def dead_letter_label(reason: str) -> str:
    """A bounded label value for DEAD_LETTERS."""
    return reason if reason in DEAD_LETTER_LABELS else "other"


def failed_answer(exc: SlackApiError) -> tuple[int, Any, str | None]:
    """Status, body and Retry-After of an answer the SDK raised for (an error, a 429, a 5xx;
    for a body it could not decode, the SDK hands over aiohttp's response instead of its own)."""
    answer = exc.response
    status = getattr(answer, "status_code", None) or getattr(answer, "status", None) or 0
    data = getattr(answer, "data", None)
    headers = getattr(answer, "headers", None) or {}
    return int(status), data if isinstance(data, dict) else None, headers.get("Retry-After")
