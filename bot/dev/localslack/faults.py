"""Scripted faults and Slack's rate limits (about one post per second per channel, the app's
posts and updates per minute in the workspace, `chat.update` as a Tier 3 method): what refuses
a call before any method runs, so that delivery code meets the 500s, 429s and `ok: false`
answers it must survive.

It also notices a client that comes back before the `Retry-After` it was given
(`early_calls`), which a well-behaved client never does.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass

from bot.dev.localslack.calls import Answer, Call

# Methods whose posting rate Slack limits per channel (about one message per second).
RATE_LIMITED_METHODS = frozenset({"chat.postMessage"})
# Methods counted together against the app's limit in the whole workspace.
WORKSPACE_METHODS = frozenset({"chat.postMessage", "chat.update"})
TIER3_PER_MINUTE = 50  # chat.update
MINUTE = 60.0


def _ratelimited(retry_after: int) -> Answer:
    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}


@dataclass
class Failure:
    """One `fail_next` script: how to fail, how many more times, after how many successes."""

    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    remaining: int = 1
    skip: int = 0


class Faults:
    """The failures scripted so far and the rate limit in force (see the module docstring)."""

    def __init__(self) -> None:
        self.early_calls: list[Call] = []  # arrived before a Retry-After we gave had elapsed
        self._failures: dict[str, deque[Failure]] = defaultdict(deque)
        self._rate: float | None = None
        self._rate_tolerance = 0.0
        self._last_post: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._workspace_per_minute: int | None = None
        self._update_per_minute: int | None = None
        self._accepted: deque[float] = deque()  # workspace-counted calls, last minute
        self._updates: deque[float] = deque()  # chat.update calls, last minute
        self.rate_limited = 0  # 429s answered by an enforced limit (not by a script)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        count: int = 1,
        skip: int = 0,
    ) -> None:
        if status == 200 and error is None:
            error = "internal_error"
        if status == 429 and retry_after is None:
            retry_after = 1
        self._failures[method].append(
            Failure(status=status, error=error, retry_after=retry_after, remaining=count, skip=skip)
        )

    def enforce_rate_limit(
        self,
        per_channel_per_second: float | None,
        tolerance: float,
        *,
        workspace_per_minute: int | None = None,
        update_per_minute: int | None = None,
    ) -> None:
        self._rate = per_channel_per_second
        self._rate_tolerance = tolerance
        self._workspace_per_minute = workspace_per_minute
        self._update_per_minute = update_per_minute

    def refusal(self, call: Call) -> Answer | None:
        """The answer that refuses `call` (a scripted fault, or a post that comes too soon),
        or None to let its method run. Notes early calls on the way."""
        channel = call.channel
        rate_key = f"{call.method}:{channel}" if channel else call.method
        now = call.at
        not_before = max(
            self._not_before.get(rate_key, 0.0), self._not_before.get(call.method, 0.0)
        )
        if now < not_before:
            self.early_calls.append(call)

        failure = self._take_failure(call.method)
        if failure is not None:
            if failure.status == 429:
                wait = float(failure.retry_after or 1)
                self._not_before[rate_key] = now + wait
                return _ratelimited(math.ceil(wait))
            if failure.status != 200:
                return failure.status, {"ok": False, "error": "internal_error"}, {}
            return 200, {"ok": False, "error": failure.error}, {}

        if call.method in RATE_LIMITED_METHODS and channel and self._rate:
            interval = 1.0 / self._rate
            last = self._last_post.get(channel)
            if last is not None and now - last < interval - self._rate_tolerance:
                wait = interval - (now - last)
                self._not_before[rate_key] = last + interval - self._rate_tolerance
                self.rate_limited += 1
                return _ratelimited(max(1, math.ceil(wait)))
        if call.method in WORKSPACE_METHODS:
            refused = self._over_minute(self._accepted, self._workspace_per_minute, now)
            if call.method == "chat.update" and refused is None:
                refused = self._over_minute(self._updates, self._update_per_minute, now)
            if refused is not None:
                self._not_before[call.method] = now + refused
                self.rate_limited += 1
                return _ratelimited(max(1, math.ceil(refused)))
        return None

    def _over_minute(self, seen: deque[float], limit: int | None, now: float) -> float | None:
        """Seconds to wait when `limit` calls were already accepted in the last minute."""
        if not limit:
            return None
        while seen and seen[0] <= now - MINUTE + self._rate_tolerance:
            seen.popleft()
        if len(seen) < limit:
            return None
        return seen[-limit] + MINUTE - self._rate_tolerance - now

    def accepted(self, call: Call) -> None:
        """`call` was answered `ok`: a post starts the channel's next rate interval, and
        counts against the workspace's minute."""
        channel = call.channel
        if call.method in RATE_LIMITED_METHODS and channel:
            self._last_post[channel] = call.at
        if call.method in WORKSPACE_METHODS:
            self._accepted.append(call.at)
            if call.method == "chat.update":
                self._updates.append(call.at)

    def clear_early_calls(self) -> None:
        self.early_calls.clear()

    def _take_failure(self, method: str) -> Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        if failure.skip > 0:
            failure.skip -= 1
            return None
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.popleft()
        return failure
