"""Delivery decisions of the outbox, kept apart from its I/O: how a Slack failure is classified,
how long to back off, and the per-channel pacer that keeps us under Slack's posting limit."""

from __future__ import annotations

import asyncio
import math
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


class SlackArrivalClock:
    """When did Slack receive a post? Read from the `ts` Slack returns: the time, on Slack's
    clock, at which it recorded the message (epoch seconds to the microsecond).

    For a post sent at `sent` and answered at `answered` (our monotonic clock), Slack's clock
    minus ours lies between `ts - answered` and `ts - sent`. The largest `ts - answered` seen
    recently is a lower bound on that offset, so `ts` minus it is never earlier than the real
    arrival: pacing from it never brings two posts closer together on Slack's side than pacing
    from the answer would, and it costs only the quickest recent answer's way back instead of
    every answer's (under a burst, tens of milliseconds per post). The bound is kept over the
    last one or two windows of `window` seconds, so that drift between the two clocks cannot
    make an old bound too high. Whatever `ts` says, the arrival is clamped between `sent` and
    `answered`; without a usable `ts` it is `answered`."""

    def __init__(self, *, window: float = 60.0) -> None:
        self.window = window
        self._window_start: float | None = None
        self._current = -math.inf  # largest ts - answered in this window
        self._previous = -math.inf  # and in the one before

    def _observe(self, offset: float, at: float) -> None:
        if self._window_start is None or at - self._window_start >= 2 * self.window:
            self._window_start, self._previous, self._current = at, -math.inf, -math.inf
        elif at - self._window_start >= self.window:
            self._window_start, self._previous, self._current = at, self._current, -math.inf
        self._current = max(self._current, offset)

    def arrival(self, ts: str | None, *, sent: float, answered: float) -> float:
        """Our-clock time no earlier than Slack's arrival of the post answered with `ts`."""
        try:
            slack_time = float(ts) if ts is not None else math.nan
        except ValueError:
            slack_time = math.nan
        if not math.isfinite(slack_time):
            return answered
        self._observe(slack_time - answered, answered)
        offset = max(self._current, self._previous)
        return min(answered, max(sent, slack_time - offset))


class ChannelPacer:
    """At most `rate` posts per second to each channel, and none before a `Retry-After` that
    Slack gave for it. Slack measures arrivals, so the interval is counted from the previous
    post's arrival at Slack as its `ts` tells it (`SlackArrivalClock`), or from the moment its
    answer came back when there is no `ts` (an error, a method that returns none): an answer is
    always later than its request's arrival, so a loaded event loop cannot bunch two posts up
    on Slack's side. Times are the event loop's monotonic clock."""

    def __init__(self, rate_per_second: float, *, max_wait: float) -> None:
        self.interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self.max_wait = max_wait
        self.arrivals = SlackArrivalClock()
        self._next_free: dict[str, float] = {}

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wait_for(self, channel: str) -> float:
        """Seconds until `channel` may receive a post."""
        return max(0.0, self._next_free.get(channel, 0.0) - self.now())

    async def acquire(self, channel: str) -> None:
        """Wait for the channel's turn, or raise `Deferred` when the wait is longer than
        `max_wait` (the row is released rather than holding a worker slot)."""
        wait = self.wait_for(channel)
        if wait > self.max_wait:
            raise Deferred(wait, "paced")
        if wait > 0:
            await asyncio.sleep(wait)
        # Until `done`, nobody else may post here (one post in flight per channel).
        self._next_free[channel] = self.now() + max(self.max_wait, self.interval)

    def done(self, channel: str, *, sent: float | None = None, ts: str | None = None) -> None:
        """The post to `channel`, sent at `sent`, was answered (with the message's `ts` when
        Slack recorded it): the next one may go `interval` after its arrival."""
        answered = self.now()
        arrival = (
            answered if sent is None else self.arrivals.arrival(ts, sent=sent, answered=answered)
        )
        self._next_free[channel] = arrival + self.interval

    def block(self, channel: str, seconds: float) -> None:
        """Slack asked us to wait `seconds` before the next post to `channel`."""
        self._next_free[channel] = max(self._next_free.get(channel, 0.0), self.now() + seconds)

    def forget_idle(self) -> None:
        """Drop channels that are free again (keeps memory bounded)."""
        now = self.now()
        for channel in [c for c, t in self._next_free.items() if t <= now]:
            del self._next_free[channel]
