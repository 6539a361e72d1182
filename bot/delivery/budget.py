"""The app's Slack budget for the whole workspace: how many `chat.postMessage` and
`chat.update` calls may leave, together, in any minute (`D1BOT_WORKSPACE_RATE_PER_MINUTE`),
spread evenly (no more than rate/12 + 3 in any 5 s), `chat.update` under its own Tier 3 limit,
and the app-wide pause of a method after Slack answered it with a rate limit.

Slots are handed out first come, first served, each at the earliest moment no window would be
exceeded; a caller whose slot is further away than `max_wait` gets `Deferred` instead (its row
is released, not counted as an attempt). Times are the event loop's monotonic clock."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from bot.delivery.slack_errors import Deferred

BUDGETED_METHODS = frozenset({"chat.postMessage", "chat.update"})
# chat.update is a Tier 3 method (about 50 a minute): stay under it on its own.
CHAT_UPDATE_PER_MINUTE = 45
MINUTE = 60.0
SPREAD_SECONDS = 5.0


def windows_for(per_minute: int) -> tuple[tuple[float, int], ...]:
    """The (seconds, calls) windows a rate per minute means: the minute, and its even spread."""
    return ((MINUTE, per_minute), (SPREAD_SECONDS, per_minute // 12 + 3))


def earliest_slot(slots: deque[float], windows: Sequence[tuple[float, int]], now: float) -> float:
    """The earliest time at or after `now` (and after every slot handed out) at which one more
    call keeps every window: at most `calls` in any `seconds`."""
    at = max(now, slots[-1]) if slots else now
    for seconds, calls in windows:
        if len(slots) >= calls:
            at = max(at, slots[-calls] + seconds)
    return at


class WorkspaceBudget:
    """See the module docstring."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_wait: float,
        update_per_minute: int = CHAT_UPDATE_PER_MINUTE,
    ) -> None:
        self.windows = windows_for(per_minute) if per_minute > 0 else ()
        self.update_windows = ((MINUTE, update_per_minute),) if update_per_minute > 0 else ()
        self.max_wait = max_wait
        self._slots: deque[float] = deque(maxlen=max(1, per_minute))
        self._updates: deque[float] = deque(maxlen=max(1, update_per_minute))
        self._paused_until: dict[str, float] = {}

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def pause(self, method: str, seconds: float) -> None:
        """Slack answered `method` with a rate limit: nothing of it leaves before `seconds`."""
        until = self.now() + seconds
        self._paused_until[method] = max(self._paused_until.get(method, 0.0), until)

    def paused_for(self, method: str) -> float:
        """Seconds until `method` may be called again (0 when it is not paused)."""
        return max(0.0, self._paused_until.get(method, 0.0) - self.now())

    def room(self, within: float) -> int:
        """How many more posts could get a slot within `within` seconds (at most 500)."""
        if not self.windows:
            return 0 if self.paused_for("chat.postMessage") >= within else 500
        now = self.now()
        limit = now + within
        start = now + self.paused_for("chat.postMessage")  # a rate-limit pause first
        trial = deque(self._slots, maxlen=self._slots.maxlen)
        count = 0
        while count < 500:
            at = earliest_slot(trial, self.windows, start)
            if at >= limit:
                break
            trial.append(at)
            count += 1
        return count

    def wait_for(self, method: str) -> float:
        """Seconds until one call of `method` could go, without taking its slot."""
        now = self.now()
        return self._earliest(method, now) - now

    def _earliest(self, method: str, now: float) -> float:
        at = now + self.paused_for(method)
        if method in BUDGETED_METHODS:
            at = max(at, earliest_slot(self._slots, self.windows, now))
            if method == "chat.update":
                at = max(at, earliest_slot(self._updates, self.update_windows, now))
        return at

    async def acquire(self, method: str) -> None:
        """Wait for a slot for one call of `method`, or raise `Deferred` when it is further
        away than `max_wait`."""
        now = self.now()
        at = self._earliest(method, now)
        if at - now > self.max_wait:
            raise Deferred(at - now, "budget" if method in BUDGETED_METHODS else "ratelimited")
        if method in BUDGETED_METHODS:
            self._slots.append(at)
            if method == "chat.update":
                self._updates.append(at)
        if at > now:
            await asyncio.sleep(at - now)
        await self.wait_out_pause(method)  # a rate limit answered while this call waited

    async def wait_out_pause(self, method: str) -> None:
        """Wait for the end of a rate-limit pause of `method`, or raise `Deferred` when it is
        further away than `max_wait`."""
        paused = self.paused_for(method)
        if paused > self.max_wait:
            raise Deferred(paused, "ratelimited")
        if paused > 0:
            await asyncio.sleep(paused)


__all__ = [
    "BUDGETED_METHODS",
    "CHAT_UPDATE_PER_MINUTE",
    "WorkspaceBudget",
    "earliest_slot",
    "windows_for",
]
