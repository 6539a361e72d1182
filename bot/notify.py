"""Delivery decisions of the outbox, kept apart from its I/O: how a Slack failure is classified,
how long to back off, and the per-channel pacer that keeps us under Slack's posting limit."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

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


class ChannelPacer:
    """At most `rate` posts per second to each channel, and none before a `Retry-After` that
    Slack gave for it. The interval is counted from the moment the previous post's answer came
    back (`done`), not from when it was sent: Slack measures arrivals, and an answer is always
    later than its request's arrival, so a loaded event loop cannot bunch two posts up on
    Slack's side. Times are the event loop's monotonic clock."""

    def __init__(self, rate_per_second: float, *, max_wait: float) -> None:
        self.interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self.max_wait = max_wait
        self._next_free: dict[str, float] = {}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def wait_for(self, channel: str) -> float:
        """Seconds until `channel` may receive a post."""
        return max(0.0, self._next_free.get(channel, 0.0) - self._now())

    async def acquire(self, channel: str) -> None:
        """Wait for the channel's turn, or raise `Deferred` when the wait is longer than
        `max_wait` (the row is released rather than holding a worker slot)."""
        wait = self.wait_for(channel)
        if wait > self.max_wait:
            raise Deferred(wait, "paced")
        if wait > 0:
            await asyncio.sleep(wait)
        # Until `done`, nobody else may post here (one post in flight per channel).
        self._next_free[channel] = self._now() + max(self.max_wait, self.interval)

    def done(self, channel: str) -> None:
        """The post to `channel` was answered: the next one may go `interval` from now."""
        self._next_free[channel] = self._now() + self.interval

    def block(self, channel: str, seconds: float) -> None:
        """Slack asked us to wait `seconds` before the next post to `channel`."""
        self._next_free[channel] = max(self._next_free.get(channel, 0.0), self._now() + seconds)

    def forget_idle(self) -> None:
        """Drop channels that are free again (keeps memory bounded)."""
        now = self._now()
        for channel in [c for c, t in self._next_free.items() if t <= now]:
            del self._next_free[channel]
