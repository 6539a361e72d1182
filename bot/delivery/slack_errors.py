"""The one Slack error table: every Slack error the bot can meet, in one of six classes, and
what each class means for a message (retry with backoff, wait for `Retry-After`, pause the
channel, give up on the message, pause all delivery, or post a new parent), plus the bounded
labels metrics use.

Pure: the worker (`bot.delivery.worker`) and the Slack listeners read their decisions here."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError

# Slack is briefly unwell: back off (honouring any `Retry-After`) and try again.
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# The bot cannot post in this channel until people there act: pause the channel.
CHANNEL_ERRORS = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
    }
)
# This message can never be posted as it is: dead letter with the reason, never retried.
MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "invalid_arguments",
        "no_text",
        "too_many_attachments",
        "missing_event",
        "direct_messages_disabled",
        "messages_tab_disabled",
        "cannot_dm_bot",
        "user_not_found",
        "user_disabled",
    }
)
# The app itself cannot post (token, scopes, workspace): pause all delivery.
APP_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "team_access_not_granted",
        "ekm_access_denied",
        "not_allowed_token_type",
    }
)
# A stored parent message is gone from Slack (deleted): post a new one.
PARENT_GONE_ERRORS = frozenset({"thread_not_found", "message_not_found", "cant_update_message"})
# Errors that mean the bot cannot post in the channel until someone invites it.
NOT_IN_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found"})
# Errors not in the table are retried this often before the row is a dead letter.
UNKNOWN_ERROR_RETRIES = 3


class DeliveryError(Exception):
    """A send did not succeed; subclasses say what to do about it."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class PermanentError(DeliveryError):
    """Give up now (dead letter). Its subclasses say more than that."""


class MessageRejected(PermanentError):
    """Slack refuses this message as it is: dead letter with the reason, never retried."""


class ChannelUnavailable(PermanentError):
    """The channel refuses the bot: pause the channel's delivery (nothing is retried or lost
    until the pause ends)."""


class AppUnauthorized(PermanentError):
    """The token or the app's scopes are refused: pause all delivery."""


class ParentGone(DeliveryError):
    """The card's parent message was deleted: post a new parent and continue under it."""


class TransientError(DeliveryError):
    """Try again later, with backoff (at least `retry_after`), up to the attempt bound."""

    def __init__(self, error: str, *, retry_after: float = 0.0) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class UnknownError(TransientError):
    """An error not in the table: `UNKNOWN_ERROR_RETRIES` retries, then a dead letter that
    keeps the error text."""


class RateLimited(DeliveryError):
    """Slack said 429 (or `ratelimited`): nothing goes to `method` before `retry_after`."""

    def __init__(self, retry_after: float, method: str = "") -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after
        self.method = method


class Deferred(DeliveryError):
    """Not now, and not a failure: release the row for `seconds` without counting an attempt."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


def classify_slack_error(
    *, status: int, error: str | None, retry_after: str | None, method: str = ""
) -> DeliveryError:
    """What a failed Slack Web API answer means for the message."""
    if status == 429 or error == "ratelimited":
        return RateLimited(parse_retry_after(retry_after), method)
    wait = parse_retry_after(retry_after) if retry_after is not None else 0.0
    if status >= 500:
        return TransientError(f"http_{status}", retry_after=wait)
    code = error or f"http_{status}"
    if code in TRANSIENT_ERRORS:
        return TransientError(code, retry_after=wait)
    if code in CHANNEL_ERRORS:
        return ChannelUnavailable(code)
    if code in MESSAGE_ERRORS:
        return MessageRejected(code)
    if code in APP_ERRORS:
        return AppUnauthorized(code)
    if code in PARENT_GONE_ERRORS:
        return ParentGone(code)
    return UnknownError(code, retry_after=wait)


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
    if isinstance(failure, ParentGone):
        return "parent_gone"
    if failure.error.startswith("http_5") or failure.error in TRANSIENT_ERRORS:
        return "server_error"
    return "error"


DEAD_LETTER_LABELS = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive",
     "msg_too_long", "invalid_blocks", "invalid_arguments", "missing_event", "max_attempts",
     "token_revoked", "unknown_error", "direct_messages_disabled"}
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
