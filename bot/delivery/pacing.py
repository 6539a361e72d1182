"""The per-channel pacer that keeps posts under Slack's limit of about one a second per channel
(a `Retry-After` pauses a whole method: `bot.delivery.budget`)."""

from __future__ import annotations

import asyncio

from bot.delivery.slack_errors import Deferred


class ChannelPacer:
    """At most `rate` posts per second to each channel. The interval is counted from the moment
    the previous post's answer came back: always later than its arrival at Slack, so two posts
    can never bunch up on Slack's side. Times are the event loop's monotonic clock."""

    def __init__(self, rate_per_second: float, *, max_wait: float) -> None:
        self.interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self.max_wait = max_wait
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

    def done(self, channel: str) -> None:
        """The post to `channel` was answered: the next one may go `interval` from now."""
        self._next_free[channel] = self.now() + self.interval

    def forget_idle(self) -> None:
        """Drop channels that are free again (keeps memory bounded)."""
        now = self.now()
        for channel in [c for c, t in self._next_free.items() if t <= now]:
            del self._next_free[channel]
