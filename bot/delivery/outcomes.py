"""What the worker does with a row Slack did not take, by the class of the error
(`bot.delivery.slack_errors`): retry later, pause the channel, pause all delivery, or a dead
letter; and how every settlement is written, also while the database is unreachable (`settle`).
`Outcomes` is a part of `bot.delivery.worker.OutboxWorker`, which provides the engine, the Slack
calls and the claim these rely on (declared below for the type checker)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.delivery.slack_calls import SlackCalls
from bot.delivery.slack_errors import (
    UNKNOWN_ERROR_RETRIES,
    AppUnauthorized,
    ChannelUnavailable,
    Deferred,
    DeliveryError,
    MessageRejected,
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
    from bot.delivery.kinds import Sender
    from bot.runtime import Runtime
    from bot.settings import Settings

log = logging.getLogger(__name__)

# What a database that cannot be reached (network cut, restart, failover) raises.
DATABASE_AWAY = (OperationalError, InterfaceError)
DATABASE_RETRY_SECONDS = 1.0  # a row the database failed while it was being sent: again after
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

    if TYPE_CHECKING:

        def sender(self, kind: str) -> Sender | None: ...

    # Settlements the database refused (unreachable), by row id: those rows stay in hand, their
    # leases renewed, and are settled before anything else is claimed (`settle_owed`).
    owed_settlements: OrderedDict[int, Callable[[], Any]]

    async def settle(self, write: Callable[..., Any], *, row_id: int, **values: Any) -> Any:
        """Run a settling write (`claims.mark_sent`, `retry_later`, `mark_dead`) for a row this
        worker holds. When the database cannot be reached the write is owed instead of lost:
        the row is not left to wait out its lease (nor posted again when Slack had it), it is
        settled as soon as the database answers. Returns the write's answer, None when owed."""
        write_now = functools.partial(write, self.engine, row_id=row_id, worker=self.name, **values)
        try:
            return await asyncio.to_thread(write_now)
        except DATABASE_AWAY as exc:
            log.warning(
                "outbox row %s: the database is unreachable (%s): settled when it answers",
                row_id,
                type(exc).__name__,
            )
            self.owed_settlements[row_id] = write_now
            return None

    async def settle_owed(self) -> bool:
        """The settlements the database refused, oldest first; False while it still does."""
        while self.owed_settlements:
            row_id, write_now = next(iter(self.owed_settlements.items()))
            try:
                settled = await asyncio.to_thread(write_now)
            except DATABASE_AWAY:
                return False
            del self.owed_settlements[row_id]
            if not settled:  # its lease expired and another worker took it over
                log.warning("outbox row %s was settled late: another worker holds it", row_id)
        log.warning("outbox: the database answers again, every row in hand is settled")
        return True

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
        dead = await self.settle(claims.mark_dead, row_id=row.id, now=now, error=error)
        if dead is False:
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
        await self.settle(
            claims.retry_later,
            row_id=row.id,
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

    # ------------------------------------------------------------------ one row: send, settle

    async def _deliver_guarded(self, row: ClaimedRow) -> None:
        try:
            await self._deliver(row)
        except DATABASE_AWAY as exc:  # not the message's fault: again soon, no attempt counted
            log.info("outbox row %s: the database is unreachable (%s)", row.id, type(exc).__name__)
            await self._failed(row, Deferred(DATABASE_RETRY_SECONDS, "database_unavailable"))
        except Exception:  # a bug must not lose the row: it is retried, boundedly
            log.exception("outbox row %s failed unexpectedly", row.id)
            await self._failed(row, TransientError("internal_error"))

    async def _deliver(self, row: ClaimedRow) -> None:
        send = self.sender(row.kind)
        try:
            if send is None:
                raise MessageRejected(f"unknown_kind:{row.kind}")
            slack_ts, followup = await send(row)
        except DeliveryError as failure:
            await self._failed(row, failure)
            return
        try:  # owed, not retried, while the database is away: a retry would post it again
            sent = await self.settle(
                claims.mark_sent, row_id=row.id, now=self.runtime.clock(), slack_ts=slack_ts
            )
        except Exception:
            log.exception("outbox row %s was sent but could not be recorded", row.id)
            return
        if sent is False:
            log.warning("outbox row %s was sent after its claim expired", row.id)
        if followup is not None:
            try:
                await followup()
            except DeliveryError as failure:  # best effort: the next event corrects it
                log.info("follow-up of outbox row %s failed: %s", row.id, failure.error)

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


__all__ = [
    "AUTH_CHECK_SECONDS",
    "DATABASE_AWAY",
    "DATABASE_RETRY_SECONDS",
    "Outcomes",
    "pause_notice",
]
