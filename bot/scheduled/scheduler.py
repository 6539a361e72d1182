"""APScheduler 3.x in the server process: one cron job per digest channel, and interval jobs
for the stuck-card check, reconciliation and a schedule sync.

The database is the source of truth: every run is claimed there before it happens (so replicas
never repeat one), and the sync job (at start, then every minute, and at once after `/card
digest schedule|off`) reloads the schedules and sends any digest that was missed while the
service was down or paused: ONE late digest with a note, never a silent skip, never a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import metrics
from bot.runtime import BackgroundTask, Runtime
from bot.scheduled.jobs import check_stuck, prune_old_rows, reconcile_quiet, send_digest_if_due
from bot.scheduled.reconcile import Reconciler
from bot.scheduled.schedules import DigestSchedule, effective_schedules
from storage.repositories.schedules import list_schedules

log = logging.getLogger(__name__)

SYNC_SECONDS = 60
# APScheduler still runs a digest that fires this late (a busy loop, a suspended VM); later
# than that, the next sync sends it with a "late" note.
DIGEST_MISFIRE_GRACE_SECONDS = 15 * 60
# A stuck-card check, reconciliation or retention run that failed (the database away, say) is
# tried again this soon instead of a whole interval (15 min, 30 min, 6 h) later.
RETRY_FAILED_RUN_SECONDS = 60
SYNC_JOB_ID = "sync"
STUCK_JOB_ID = "stuck"
RECONCILE_JOB_ID = "reconcile"
RETENTION_JOB_ID = "retention"


class Scheduler:
    """The process's scheduled work. `start()`/`stop()` run with the ASGI lifespan."""

    def __init__(self, runtime: Runtime, *, reconciler: Reconciler | None = None) -> None:
        self.runtime = runtime
        self.reconciler = reconciler or Reconciler(runtime)
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._digests: dict[str, DigestSchedule] = {}
        self._sync_lock = asyncio.Lock()
        self._running: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        settings = self.runtime.settings
        self._scheduler.start()
        soon = datetime.now(timezone.utc)
        self._scheduler.add_job(
            self.sync,
            IntervalTrigger(seconds=SYNC_SECONDS),
            id=SYNC_JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=SYNC_SECONDS,
        )
        self._scheduler.add_job(
            self.run_stuck_check,
            IntervalTrigger(minutes=settings.d1bot_stuck_check_interval_minutes),
            id=STUCK_JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=soon + timedelta(seconds=5),
        )
        self._scheduler.add_job(
            self.run_reconcile,
            IntervalTrigger(minutes=settings.d1bot_reconcile_interval_minutes),
            id=RECONCILE_JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=soon + timedelta(seconds=10),
        )
        self._scheduler.add_job(
            self.run_retention,
            IntervalTrigger(hours=6),  # the run itself is claimed once a day
            id=RETENTION_JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=soon + timedelta(seconds=30),
        )
        await self.reconciler.start()
        await self.sync()

    async def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.reconciler.stop()

    def is_healthy(self) -> bool:
        return bool(self._scheduler.running)

    # ------------------------------------------------------------------ schedules

    @property
    def digest_schedules(self) -> list[DigestSchedule]:
        return list(self._digests.values())

    def request_sync(self) -> None:
        """Reload schedules now (after `/card digest schedule|off` in this process)."""
        task = asyncio.get_running_loop().create_task(self.sync())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def sync(self) -> None:
        """Make the cron jobs match the stored schedules, then send any missed digest."""
        async with self._sync_lock:
            try:
                wanted = await asyncio.to_thread(self._load)
                self._apply(wanted)
                for schedule in wanted:
                    await asyncio.to_thread(send_digest_if_due, self.runtime, schedule, fired=False)
            except Exception:
                metrics.JOB_RUNS.labels(job="sync", outcome="failed").inc()
                log.exception("syncing digest schedules failed")

    def _load(self) -> list[DigestSchedule]:
        settings = self.runtime.settings
        stored = [
            (s.workspace_id, s.channel_id, s.time_of_day, s.timezone, s.enabled, s.updated_at)
            for s in list_schedules(self.runtime.engine)
        ]
        return effective_schedules(
            default_channel=settings.d1bot_digest_channel,
            default_workspace_id=settings.d1bot_workspace_id,
            default_time=settings.d1bot_digest_time,
            default_timezone=settings.d1bot_timezone,
            stored=stored,
        )

    def _apply(self, wanted: list[DigestSchedule]) -> None:
        by_id = {schedule.job_name: schedule for schedule in wanted}
        for job_id in list(self._digests):
            if job_id not in by_id:
                self._scheduler.remove_job(job_id)
                del self._digests[job_id]
        for job_id, schedule in by_id.items():
            current = self._digests.get(job_id)
            if current is not None and (current.time_of_day, current.timezone) == (
                schedule.time_of_day,
                schedule.timezone,
            ):
                self._digests[job_id] = schedule
                continue
            at = schedule.at
            self._scheduler.add_job(
                self.run_digest,
                CronTrigger(hour=at.hour, minute=at.minute, timezone=schedule.zone),
                args=[job_id],
                id=job_id,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=DIGEST_MISFIRE_GRACE_SECONDS,
            )
            self._digests[job_id] = schedule
            log.info("digest for %s at %s %s", job_id, schedule.time_of_day, schedule.timezone)

    def next_run_at(self, job_id: str) -> datetime | None:
        """When the job runs next (operations and tests); None for an unknown job."""
        job = self._scheduler.get_job(job_id)
        return None if job is None else job.next_run_time

    def _again_soon(self, job_id: str) -> None:
        """A run failed: the next one in `RETRY_FAILED_RUN_SECONDS`, unless it is due sooner
        (its run of the period is claimed when it succeeds, so a retry never runs it twice)."""
        job = self._scheduler.get_job(job_id)
        soon = datetime.now(timezone.utc) + timedelta(seconds=RETRY_FAILED_RUN_SECONDS)
        if job is not None and (job.next_run_time is None or job.next_run_time > soon):
            job.modify(next_run_time=soon)

    def trigger(self, job_id: str) -> None:
        """Run a job now (operations and tests); its normal schedule continues after."""
        job = self._scheduler.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        job.modify(next_run_time=datetime.now(timezone.utc))

    # ------------------------------------------------------------------ job bodies

    async def run_digest(self, job_id: str) -> None:
        schedule = self._digests.get(job_id)
        if schedule is None:
            return
        try:
            await asyncio.to_thread(send_digest_if_due, self.runtime, schedule, fired=True)
        except Exception:
            metrics.DIGEST_RUNS.labels(outcome="failed").inc()
            log.exception("digest for %s failed", schedule.channel_id)
            return
        self.runtime.wake_outbox()

    async def run_stuck_check(self) -> None:
        try:
            result = await asyncio.to_thread(check_stuck, self.runtime)
        except Exception:
            log.exception("stuck-card check failed")
            self._again_soon(STUCK_JOB_ID)
            return
        if result is not None and result.enqueued:
            self.runtime.wake_outbox()

    async def run_retention(self) -> None:
        try:
            await asyncio.to_thread(prune_old_rows, self.runtime)
        except Exception:
            metrics.JOB_RUNS.labels(job="retention", outcome="failed").inc()
            log.exception("retention run failed")
            self._again_soon(RETENTION_JOB_ID)

    async def run_reconcile(self) -> None:
        try:
            await reconcile_quiet(self.runtime, self.reconciler)
        except Exception:
            log.exception("reconciliation run failed")
            self._again_soon(RECONCILE_JOB_ID)


def install(runtime: Runtime) -> Scheduler:
    """Add the scheduler to the runtime's background tasks, and reconciliation of gaps to its
    gap listeners. `D1BOT_SCHEDULER_ENABLED=false` leaves a replica out of scheduled work."""
    scheduler = Scheduler(runtime)
    runtime.schedule_listeners.append(scheduler.request_sync)
    if runtime.settings.d1bot_scheduler_enabled:
        runtime.gap_listeners.append(scheduler.reconciler.request)
        runtime.background.append(
            BackgroundTask(
                name="scheduler",
                start=scheduler.start,
                stop=scheduler.stop,
                is_healthy=scheduler.is_healthy,
            )
        )
    return scheduler


__all__ = ["Scheduler", "install"]
