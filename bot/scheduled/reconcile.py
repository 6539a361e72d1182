"""Reconciliation with D1: when notifications went missing, ask D1's productionStatus and record
what changed as a synthetic event (source "reconciliation"), announced like any other change.

Two ways in: a periodic run over subscribed, unfinished cards that went quiet (each card asked
at most once per quiet period across replicas), and on demand for cards in which intake saw a
gap (`runtime.gap_listeners`). Calls are rate-limited and run a few at a time. Retrying a call
is the D1 client's job alone (`d1.client`: D1's table, bounded, with backoff), so this module
never retries one itself: a run whose call finds D1 unavailable stops and gives the untried cards
back, periodic ones to the next interval, gap ones to a gap run after a backoff that grows while
D1 stays down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bot import metrics
from bot.runtime import Runtime
from d1.client import D1Client
from d1.errors import D1Error, D1NotFound, D1Unavailable
from d1.models import Operation, ProductionStatus
from storage.repositories.intake import record_operations
from storage.repositories.reconcile import claim_quiet_cards, projections, release_claims
from storage.tables import SOURCE_RECONCILIATION

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# Between gap runs that found D1 down: 2 s, 4 s, 8 s ... up to a minute.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 60.0

# --------------------------------------------------------------------------- pure parts


def differs(answer: ProductionStatus, status: str | None, shipment_status: str | None) -> bool:
    """Whether D1's answer tells us something our projection does not show."""
    if answer.status != status:
        return True
    theirs = answer.shipment.status if answer.shipment is not None else None
    return theirs is not None and theirs != shipment_status


def synthetic_operation(card_id: str, answer: ProductionStatus, now: datetime) -> Operation:
    """D1's answer as a PRODUCE operation: identified by what it reports (the same finding
    twice is a duplicate), timed at the shipment's last update or else now."""
    shipment = answer.shipment
    when = shipment.last_updated_at if shipment and shipment.last_updated_at else now
    fingerprint = json.dumps(
        [
            answer.status,
            shipment.status if shipment else None,
            shipment.message if shipment else None,
            shipment.last_updated_at.isoformat() if shipment and shipment.last_updated_at else None,
            None if shipment and shipment.last_updated_at else now.isoformat(),
        ]
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    details: dict[str, Any] = {"status": answer.status}
    if answer.reason:
        details["reason"] = answer.reason
    if answer.production_site:
        details["productionSite"] = answer.production_site
    if answer.due_date:
        details["dueDate"] = answer.due_date.isoformat()
    if shipment is not None:
        details["shipment"] = shipment.to_wire()
    return Operation.model_validate(
        {
            "operationId": f"reconcile-{card_id}-{digest}",
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": card_id,
            "startTime": when.isoformat(),
            "endTime": when.isoformat(),
            "details": details,
        }
    )


def period_start(now: datetime, period: timedelta) -> datetime:
    """The start of the fixed period (counted from the epoch) that holds `now`."""
    seconds = int(period.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc)


@dataclass
class ReconcileReport:
    """What a run did, for logs, metrics and tests."""

    asked: int = 0
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    not_found: int = 0
    failed: int = 0
    given_back: int = 0


class D1Down(Exception):
    """D1 stayed unavailable through the client's retries: stop this run."""


# --------------------------------------------------------------------------- the reconciler


class Reconciler:
    """Asks D1 about cards and records differences; one per process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        sleep: Sleep = asyncio.sleep,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._limit = asyncio.Semaphore(max(1, settings.d1bot_reconcile_concurrency))
        self._interval = 1.0 / settings.d1bot_reconcile_rate_per_second
        self._pace_lock = asyncio.Lock()
        self._next_call_at = 0.0
        self._gaps: set[str] = set()
        self._gaps_lock = threading.Lock()
        self._gap_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gap_task: asyncio.Task[None] | None = None
        self._gap_give_backs = 0  # consecutive gap runs that found D1 down

    # ------------------------------------------------------------------ on demand (gaps)

    def request(self, card_id: str) -> None:
        """A gap listener: ask D1 about `card_id` soon. Safe from any thread."""
        with self._gaps_lock:
            self._gaps.add(card_id)
        loop, event = self._loop, self._gap_event
        if loop is None or event is None:
            return  # picked up when the gap loop starts
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._gap_event = asyncio.Event()
        if self._gaps:
            self._gap_event.set()
        self._gap_task = asyncio.create_task(self._gap_loop(), name="reconcile-gaps")

    async def stop(self) -> None:
        if self._gap_task is not None:
            self._gap_task.cancel()
            try:
                await self._gap_task
            except asyncio.CancelledError:
                pass
            self._gap_task = None

    async def _gap_loop(self) -> None:
        assert self._gap_event is not None
        while True:
            await self._gap_event.wait()
            self._gap_event.clear()
            with self._gaps_lock:
                cards, self._gaps = sorted(self._gaps), set()
            if not cards:
                continue
            try:
                report = await self.check_cards(cards)
                metrics.JOB_RUNS.labels(job="reconcile_gap", outcome="ok").inc()
                log.info("reconciled %d gap card(s): %d changed", report.asked, len(report.changed))
            except Exception:
                metrics.JOB_RUNS.labels(job="reconcile_gap", outcome="failed").inc()
                log.exception("reconciling gap cards failed")

    # ------------------------------------------------------------------ periodic

    async def run_quiet(self) -> ReconcileReport:
        """Ask about subscribed, unfinished cards quiet for longer than the quiet period."""
        settings = self.runtime.settings
        now = self.runtime.clock()
        quiet = timedelta(minutes=settings.d1bot_reconcile_quiet_minutes)
        period = period_start(now, quiet)
        cards = await asyncio.to_thread(
            claim_quiet_cards,
            self.runtime.engine,
            quiet_before=now - quiet,
            period_start=period,
            instance=self.runtime.instance,
            now=now,
            limit=settings.d1bot_reconcile_batch,
        )
        return await self.check_cards(cards, period=period)

    # ------------------------------------------------------------------ asking D1

    async def check_cards(
        self, card_ids: list[str], *, period: datetime | None = None
    ) -> ReconcileReport:
        """Ask D1 about each card (bounded, paced) and record what differs."""
        report = ReconcileReport()
        client = self.runtime.d1_client
        if not card_ids or client is None:
            return report
        down = asyncio.Event()
        untried: list[str] = []

        async def one(card_id: str) -> None:
            async with self._limit:
                if down.is_set():
                    untried.append(card_id)
                    return
                try:
                    answer = await self._ask(client, card_id)
                except D1Down:
                    down.set()
                    untried.append(card_id)
                    return
                except D1NotFound:
                    report.not_found += 1
                    return
                except D1Error as exc:
                    report.failed += 1
                    log.warning("productionStatus failed during reconciliation: %s", exc)
                    return
                report.asked += 1
                if await self._record_if_different(card_id, answer):
                    report.changed.append(card_id)
                else:
                    report.unchanged += 1

        await asyncio.gather(*(one(card_id) for card_id in card_ids))
        if untried:
            log.warning("D1 unavailable: %d card(s) left for the next run", len(untried))
            if period is not None:
                await asyncio.to_thread(
                    release_claims, self.runtime.engine, card_ids=untried, period_start=period
                )
            else:
                with self._gaps_lock:
                    self._gaps.update(untried)
                self._retry_gaps_later()
            report.given_back = len(untried)
        elif period is None:
            self._gap_give_backs = 0
        return report

    def _retry_gaps_later(self) -> None:
        """Wake the gap loop again after a backoff that grows while D1 stays down, so given-back
        gap cards do not wait for another card's gap or the next quiet-period run."""
        if self._loop is None or self._gap_event is None:
            return
        delay = min(self._backoff_max, self._backoff_base * 2**self._gap_give_backs)
        self._gap_give_backs += 1
        self._loop.call_later(delay, self._gap_event.set)

    async def _pace(self) -> None:
        async with self._pace_lock:
            loop = asyncio.get_running_loop()
            wait = self._next_call_at - loop.time()
            if wait > 0:
                await self._sleep(wait)
            self._next_call_at = max(loop.time(), self._next_call_at) + self._interval

    async def _ask(self, client: D1Client, card_id: str) -> ProductionStatus:
        """One paced productionStatus call. The client has already retried what D1's table lets
        it retry; D1 still unavailable after that ends the run (`D1Down`)."""
        await self._pace()
        try:
            return await client.production_status(card_id)
        except D1Unavailable:
            raise D1Down() from None

    async def _record_if_different(self, card_id: str, answer: ProductionStatus) -> bool:
        runtime = self.runtime
        settings = runtime.settings

        def work() -> bool:
            status, shipment_status = projections(runtime.engine, [card_id]).get(
                card_id, (None, None)
            )
            if not differs(answer, status, shipment_status):
                return False
            now = runtime.clock()
            result = record_operations(
                runtime.engine,
                [synthetic_operation(card_id, answer, now)],
                received_at=now,
                workspace_id=settings.d1bot_workspace_id,
                exceptions_channel=settings.d1bot_exceptions_channel,
                extra_exception_statuses=settings.extra_exception_statuses,
                source=SOURCE_RECONCILIATION,
            )
            return bool(result.new_event_ids)

        changed = await asyncio.to_thread(work)
        if changed:
            runtime.wake_outbox()
        return changed


__all__ = [
    "ReconcileReport",
    "Reconciler",
    "differs",
    "period_start",
    "synthetic_operation",
]
