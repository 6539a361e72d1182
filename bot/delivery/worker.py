"""The delivery worker: drains the outbox to Slack, paced, retried, exactly once per row.

Each round first expands the fan-out markers intake wrote into per-subscription outbox rows
(`storage.repositories.fanout`: oldest first, one INSERT ... SELECT, never twice).

The worker claims the due head row of many channels in one transaction (see
`storage.repositories.claims`), delivers them concurrently, and claims again as rows settle
(no round barrier; bursts for one channel are coalesced into one summary first). A row is
settled only after Slack answered: sent (with the returned `ts`), retried later (5xx,
connection errors: exponential backoff with jitter; 429: not before `Retry-After`), held with
its channel (the channel is paused) or with all delivery (the token is refused), or dead
(the message is refused, or too many attempts), visibly: a WARNING log line and
`DEAD_LETTERS{reason}` (`bot.delivery.outcomes`). A settlement the database cannot take (it is
unreachable) is owed and written first when it answers again, before anything new is claimed.
Claims are short leases the worker renews while it holds the rows, so a crashed worker's rows
are taken over within seconds. A parent message's `ts` is committed before anything is posted
in its thread, so a crash cannot post a card's parent twice. docs/delivery.md says which crash
windows remain. Every call goes through the shared `slack_sdk` `AsyncWebClient`; retries are
this worker's, by the Slack error table (`bot.delivery.slack_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery.kinds import MessageKinds, _id, _Round
from bot.delivery.outcomes import AUTH_CHECK_SECONDS, DATABASE_AWAY, Outcomes
from bot.delivery.slack_calls import SlackCalls
from bot.metrics import OUTBOX_DEPTH, OUTBOX_OLDEST_AGE
from bot.runtime import BackgroundTask, Runtime, slack_client_from
from storage.repositories import bursts, channel_settings, claims, health
from storage.repositories import cards as cards_repo
from storage.repositories import fanout as fanout_repo
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from storage.repositories.claims import ClaimedRow

log = logging.getLogger(__name__)


DEFAULT_BATCH_SIZE = 200
DEFAULT_CONCURRENCY = 32
DEFAULT_LEASE_SECONDS = 8.0
DEFAULT_BACKOFF_BASE = 2.0
DEFAULT_BACKOFF_CAP = 600.0
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_MAX_PACING_WAIT = 5.0
CLAIM_PAUSE_SECONDS = 0.1
# An exception alert waits this long for the card's thread to exist, to link to it.
DEFAULT_ALERT_LINK_WAIT = timedelta(seconds=20)


class OutboxWorker(MessageKinds, Outcomes):
    """Delivers outbox rows to Slack (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        client: AsyncWebClient | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        max_pacing_wait: float = DEFAULT_MAX_PACING_WAIT,
        alert_link_wait: timedelta = DEFAULT_ALERT_LINK_WAIT,
        auth_check_seconds: float = AUTH_CHECK_SECONDS,
        name: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings = runtime.settings
        self.slack = SlackCalls(
            client or runtime.slack_client or slack_client_from(self.settings),
            rate_per_second=self.settings.d1bot_channel_rate_per_second,
            max_pacing_wait=max_pacing_wait,
            concurrency=concurrency,
            workspace_rate_per_minute=self.settings.d1bot_workspace_rate_per_minute,
            update_rate_per_minute=self.settings.d1bot_update_rate_per_minute,
        )
        self.max_pacing_wait = max_pacing_wait
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.poll_seconds = poll_seconds
        self.alert_link_wait = alert_link_wait
        self.auth_check_seconds = auth_check_seconds
        self.app_paused: str | None = None
        self._auth_check_at = 0.0
        self._side_tasks: list[asyncio.Task[None]] = []  # lease heartbeat, owed parents
        self.name = (name or f"{runtime.instance}:{secrets.token_hex(3)}")[-64:]
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wakeup = runtime.outbox_wakeup
        self._failed_rounds = 0
        self._settled = asyncio.Event()  # a row in hand was settled (see `_run`)
        self._rounds: dict[int, _Round] = {}  # row id -> what its claim batch prefetched
        # What each parent message shows, as far as this worker knows: a parent already
        # showing the card's current state is not updated again (see `_parent_update`).
        self._parent_shown: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.owed_settlements = OrderedDict()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._wakeup is None:
            self._wakeup = self.runtime.outbox_wakeup = asyncio.Event()
        self._stopping = False
        await self.slack.open()
        self._task = asyncio.create_task(self._run(), name="outbox-worker")
        self._side_tasks = [
            asyncio.create_task(self._heartbeat(), name="outbox-leases"),
            asyncio.create_task(self._owed_parents_loop(), name="outbox-parents"),
        ]

    async def stop(self, *, timeout: float = 30.0) -> None:
        """Finish the rows in hand, then stop (rows not yet claimed stay pending)."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except Exception:  # the loop died: still stop the rest
            log.exception("the outbox loop had failed")
        self._task = None
        for side in self._side_tasks:
            side.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        self._side_tasks = []
        if self.owed_settlements and not await self.settle_owed():
            log.warning(
                "outbox: stopping with %d rows unsettled (the database is unreachable): they "
                "are claimed again when their lease expires",
                len(self.owed_settlements),
            )
        await self.slack.close()

    def is_healthy(self) -> bool:
        """Liveness: red while the worker is down or fails to claim round after round."""
        running = self._task is not None and not self._task.done()
        return running and self._failed_rounds < 5

    def pause_reason(self) -> str | None:
        """Readiness: why all delivery is paused (Slack refuses the token), or None."""
        if self.app_paused is None:
            return None
        return f"Slack refuses the bot token ({self.app_paused}): all delivery is paused"

    async def _heartbeat(self) -> None:
        """Renew the lease on the rows in hand, three times per lease: a live worker keeps
        them however long Slack takes, a dead one loses them one lease after its last beat."""
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            held = list(self._rounds) + list(self.owed_settlements)
            if not held:
                continue
            try:
                await asyncio.to_thread(
                    claims.renew_leases,
                    self.engine,
                    worker=self.name,
                    row_ids=held,
                    lease_until=self.runtime.clock() + self.lease,
                )
            except Exception:
                log.warning("outbox: could not renew the leases on %d rows", len(held),
                            exc_info=True)  # fmt: skip

    async def _owed_parents_loop(self) -> None:
        """Each second, the parent updates the budget postponed (`update_owed_parents`)."""
        failing = False
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.update_owed_parents()
            except Exception as exc:  # a database outage is told once, not every second
                if not (failing and isinstance(exc, DATABASE_AWAY)):
                    log.warning("outbox: postponed parent updates failed", exc_info=True)
                failing = True
            else:
                failing = False

    async def _run(self) -> None:
        """Claim and deliver continuously: new heads are claimed while earlier rows are still
        in flight (no barrier at the end of a round, which would leave slots idle while the
        slowest rows of a round finish), up to `batch_size` rows in hand."""
        assert self._wakeup is not None
        in_flight: set[asyncio.Task[None]] = set()
        gauges_at = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                await self.check_auth_when_due()
                # No more rows than the workspace budget lets go soon: the others would only
                # be claimed to be released again.
                room = self.slack.budget.room(self.max_pacing_wait)
                free = 0 if self.app_paused else min(self.batch_size - len(in_flight), room)
                rows: list[ClaimedRow] = []
                if self.owed_settlements and not await self.settle_owed():
                    free = 0  # the database is still away: nothing new until it answers
                if free > 0:
                    try:
                        rows = await self._claim(limit=free)
                        self._failed_rounds = 0
                    except Exception as exc:
                        self._round_failed(exc)
                for row in rows:
                    task = asyncio.create_task(self._deliver_one(row))
                    in_flight.add(task)
                    task.add_done_callback(self._row_done(in_flight))
                if loop.time() >= gauges_at:
                    gauges_at = loop.time() + 1.0
                    self.slack.pacer.forget_idle()
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(self._update_gauges)
                if self._stopping or (rows and len(rows) == free):
                    continue
                await self._wait_for_work(in_flight, rows_claimed=bool(rows) or free <= 0)
        finally:
            if in_flight:  # finish the rows in hand
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _round_failed(self, exc: Exception) -> None:
        """The traceback once; while the failure lasts (the database away), a line a round."""
        self._failed_rounds += 1
        if self._failed_rounds == 1 or not isinstance(exc, DATABASE_AWAY):
            log.exception("outbox round failed; retrying")
        else:
            log.warning("outbox round failed again (%d in a row): %s", self._failed_rounds,
                        type(exc).__name__)  # fmt: skip

    def _row_done(self, in_flight: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            self._settled.set()

        return done

    async def _wait_for_work(
        self, in_flight: set[asyncio.Task[None]], *, rows_claimed: bool
    ) -> None:
        """Until claiming again may find something: a row in hand settled (its channel's next
        row is now the head), a wakeup, or the next row falls due."""
        assert self._wakeup is not None
        self._wakeup.clear()
        self._settled.clear()
        idle = self.poll_seconds if rows_claimed else await self._idle_seconds()
        waiters = [asyncio.ensure_future(self._wakeup.wait())]
        if in_flight:
            waiters.append(asyncio.ensure_future(self._settled.wait()))
        try:
            await asyncio.wait(waiters, timeout=idle, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
        if in_flight:
            # Let the answers that arrive together settle together: one claim query for many.
            await asyncio.sleep(CLAIM_PAUSE_SECONDS)

    async def _idle_seconds(self) -> float:
        """How long to sleep when nothing was due: until the next row is due, at most a poll."""
        try:
            due = await asyncio.to_thread(repo.next_due_at, self.engine)
        except Exception:  # the database is away: the next claim will say so
            log.warning("outbox: could not read the next due time", exc_info=True)
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        seconds = (due - self.runtime.clock()).total_seconds()
        return min(self.poll_seconds, max(0.01, seconds))

    # ------------------------------------------------------------------ one round

    async def _claim(self, *, limit: int) -> list[ClaimedRow]:
        """Expand the fan-out markers intake wrote (oldest first), coalesce bursts, then
        claim up to `limit` due heads (one per channel) in one transaction and prefetch what
        they need."""
        now = self.runtime.clock()
        await asyncio.to_thread(fanout_repo.expand_all, self.engine)
        await asyncio.to_thread(self._coalesce, now)
        rows = await asyncio.to_thread(
            claims.claim_due,
            self.engine,
            worker=self.name,
            now=now,
            lease_until=now + self.lease,
            limit=limit,
        )
        if rows:
            try:
                prefetched = await asyncio.to_thread(self._prefetch, rows)
            except DATABASE_AWAY:  # the rows are ours now: each reads for itself, or is owed
                prefetched = _Round()
            for row in rows:
                self._rounds[_id(row)] = prefetched
        return rows

    def _ctx(self, row: ClaimedRow) -> _Round:
        """What the row's claim batch prefetched (empty for a row claimed some other way)."""
        return self._rounds.get(row.id or 0) or _Round()

    async def _deliver_one(self, row: ClaimedRow) -> None:
        try:
            await self._deliver_guarded(row)
        except Exception:  # settling failed too: the lease expires and the row is retried
            log.exception("outbox row %s could not be settled", row.id)
        finally:
            self._rounds.pop(row.id or 0, None)

    def _prefetch(self, rows: Sequence[ClaimedRow]) -> _Round:
        card_ids = [r.card_id for r in rows if r.card_id]
        return _Round(
            events=cards_repo.events_by_ids(
                self.engine, ids=[r.event_id for r in rows if r.event_id]
            ),
            cards=cards_repo.cards_by_ids(self.engine, card_ids=card_ids),
            threads=threads_repo.threads_of_keys(
                self.engine,
                keys=[(r.workspace_id, r.channel_id, r.card_id) for r in rows if r.card_id],
            ),
            modes=channel_settings.thread_modes(
                self.engine, keys=[(r.workspace_id, r.channel_id) for r in rows if r.card_id]
            ),
        )

    def _coalesce(self, now: datetime) -> None:
        threshold = self.settings.d1bot_burst_threshold
        for burst in bursts.find_bursts(self.engine, threshold=threshold, now=now):
            summary = bursts.coalesce_burst(
                self.engine,
                workspace_id=burst.workspace_id,
                channel_id=burst.channel_id,
                threshold=threshold,
                now=now,
            )
            if summary is not None:
                log.info(
                    "coalesced %d cards for channel %s into one summary",
                    burst.cards,
                    burst.channel_id,
                )

    def _update_gauges(self) -> None:
        backlog = health.outbox_backlog(engine=self.engine)
        OUTBOX_DEPTH.set(backlog.pending)
        OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds(self.runtime.clock()))


def install(runtime: Runtime, **options: Any) -> OutboxWorker:
    """Run an outbox worker beside the server; it wakes on `runtime.outbox_wakeup`."""
    if runtime.outbox_wakeup is None:
        runtime.outbox_wakeup = asyncio.Event()
    options.setdefault("lease_seconds", runtime.settings.d1bot_outbox_lease_seconds)
    worker = OutboxWorker(runtime, **options)
    runtime.background.append(
        BackgroundTask(
            name="outbox", start=worker.start, stop=worker.stop, is_healthy=worker.is_healthy
        )
    )
    runtime.readiness_checks["delivery"] = worker.pause_reason
    return worker


__all__ = ["OutboxWorker", "install"]
