"""What the worker does with a row Slack did not take, by the class of the error
(`bot.delivery.slack_errors`): retry later, pause the channel, pause all delivery, or a dead
letter. `Outcomes` is a part of `bot.delivery.worker.OutboxWorker`, which provides the engine,
the Slack calls and the claim these rely on (declared below for the type checker)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from bot.delivery.slack_calls import SlackCalls
from bot.delivery.slack_errors import (
    UNKNOWN_ERROR_RETRIES,
    AppUnauthorized,
    ChannelUnavailable,
    Deferred,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
    UnknownError,
    backoff_seconds,
    dead_letter_label,
)
from bot.metrics import DEAD_LETTERS
from bot.render import slacktext
from storage.repositories import claims, pauses
from storage.repositories.claims import ClaimedRow

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.settings import Settings

log = logging.getLogger(__name__)

AUTH_CHECK_SECONDS = 60.0  # while the token is refused: an ERROR line and an auth.test this often
# What a channel-level error means, in the notice to the exceptions channel.
CHANNEL_REASONS = {
    "not_in_channel": "I was removed from it",
    "channel_not_found": "it is private and I am not a member, or it was deleted",
    "is_archived": "it was archived",
}


def pause_notice(channel_id: str, reason: str) -> dict[str, Any]:
    """The one notice about a paused channel, for the exceptions channel."""
    why = CHANNEL_REASONS.get(reason) or (
        f"Slack refuses my posts there ({slacktext.escape(reason)})"
    )
    return slacktext.message_payload(
        f":warning: Card updates for {slacktext.channel(channel_id)} are paused: {why}. They "
        f"wait, nothing is lost: invite me back with `/invite @D1 Cards` (or unarchive the "
        f"channel), or run `/card subscribe` there again, and they are delivered.",
        [],
    )


class Outcomes:
    """Settling a failed row (see the module docstring)."""

    engine: Engine
    runtime: Runtime
    settings: Settings
    slack: SlackCalls
    name: str
    backoff_base: float
    backoff_cap: float
    auth_check_seconds: float
    # Set while Slack refuses the app's token or scopes: nothing is claimed until it is None.
    app_paused: str | None
    _auth_check_at: float

    async def _failed(self, row: ClaimedRow, failure: DeliveryError) -> None:
        now = self.runtime.clock()
        if isinstance(failure, RateLimited):  # the method is paused app-wide by SlackCalls
            await self._retry(row, now + timedelta(seconds=failure.retry_after), failure, False)
            return
        if isinstance(failure, Deferred):
            await self._retry(row, now + timedelta(seconds=failure.seconds), None, False)
            return
        if isinstance(failure, ChannelUnavailable):
            await asyncio.to_thread(self._pause_channel, row, failure.error, now)
            await self._retry(row, now, failure, False)  # waits with its channel
            return
        if isinstance(failure, AppUnauthorized):
            self.pause_app(failure.error)
            await self._retry(row, now, failure, False)
            return
        attempts = row.attempts + 1
        if isinstance(failure, TransientError):
            bound = (
                UNKNOWN_ERROR_RETRIES + 1
                if isinstance(failure, UnknownError)
                else self.settings.d1bot_outbox_max_attempts
            )
            if attempts < bound:
                delay = backoff_seconds(attempts, base=self.backoff_base, cap=self.backoff_cap)
                at = now + timedelta(seconds=max(delay, failure.retry_after))
                await self._retry(row, at, failure, True)
                return
        await self._dead(row, failure, attempts, now)

    async def _dead(
        self, row: ClaimedRow, failure: DeliveryError, attempts: int, now: datetime
    ) -> None:
        if isinstance(failure, PermanentError):
            reason = error = failure.error
        elif isinstance(failure, UnknownError):
            reason, error = "unknown_error", failure.error  # the error text as Slack gave it
        else:
            reason, error = "max_attempts", f"max_attempts: {failure.error}"
        dead = await asyncio.to_thread(
            claims.mark_dead, self.engine, row_id=row.id, worker=self.name, now=now, error=error
        )
        if not dead:
            return
        DEAD_LETTERS.labels(reason=dead_letter_label(reason)).inc()
        log.warning(
            "outbox row %s (%s) to channel %s is a dead letter after %d attempts: %s",
            row.id,
            row.kind,
            row.channel_id,
            attempts,
            error,
        )

    async def _retry(
        self, row: ClaimedRow, at: datetime, failure: DeliveryError | None, count: bool
    ) -> None:
        await asyncio.to_thread(
            claims.retry_later,
            self.engine,
            row_id=row.id,
            worker=self.name,
            next_attempt_at=at,
            error=failure.error if failure else None,
            count_attempt=count,
        )

    def _pause_channel(self, row: ClaimedRow, reason: str, now: datetime) -> None:
        """Pause the channel's delivery, with ONE notice naming it in the exceptions channel
        (in the log when that channel is the broken one, or there is none)."""
        alerts = self.settings.d1bot_exceptions_channel
        notice_to = alerts if alerts and alerts != row.channel_id else None
        paused = pauses.pause_channel(
            self.engine,
            workspace_id=row.workspace_id,
            channel_id=row.channel_id,
            reason=reason,
            now=now,
            notice_channel=notice_to,
            notice=pause_notice(row.channel_id, reason),
        )
        if not paused:
            return
        log.warning(
            "delivery to channel %s is paused (%s)%s",
            row.channel_id,
            reason,
            ""
            if notice_to
            else ": it is the exceptions channel, or there is none, so only this log line says so",
        )
        self.runtime.wake_outbox()

    # ------------------------------------------------------------------ the app's token

    def pause_app(self, error: str) -> None:
        """Slack refuses the app itself: stop claiming (no attempts burned), readiness goes
        red, and `auth.test` is asked every `auth_check_seconds` until it succeeds."""
        if self.app_paused is None:
            self.app_paused = error
            self._auth_check_at = asyncio.get_running_loop().time() + self.auth_check_seconds
            log.error(
                "Slack refuses the bot token (%s): all delivery is paused until auth.test "
                "succeeds (checked every %.0f s) or the server restarts with a working token",
                error,
                self.auth_check_seconds,
            )

    async def check_auth_when_due(self) -> None:
        """While paused for the token: one `auth.test` (and one ERROR line) per interval."""
        loop = asyncio.get_running_loop()
        if self.app_paused is None or loop.time() < self._auth_check_at:
            return
        self._auth_check_at = loop.time() + self.auth_check_seconds
        try:
            await self.slack.call("auth.test")
        except DeliveryError as failure:
            log.error(
                "Slack still refuses the bot token (%s): all delivery is paused",
                failure.error if isinstance(failure, AppUnauthorized) else self.app_paused,
            )
            return
        log.warning("Slack accepts the bot token again: delivery resumes")
        self.app_paused = None


__all__ = ["AUTH_CHECK_SECONDS", "Outcomes", "pause_notice"]
