"""Scheduled digests: two scheduler instances on one database send each digest exactly once,
missed runs after downtime become ONE late digest with a note, and schedules survive restarts
(`/card digest ...` end to end: tests/slack/test_digest_slack.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from bot.scheduled.jobs import send_digest_if_due
from bot.scheduled.scheduler import RETRY_FAILED_RUN_SECONDS, STUCK_JOB_ID, Scheduler, install
from bot.scheduled.schedules import DigestSchedule, digest_due
from storage.db import make_engine
from storage.repositories.jobs import claim_run, runs_of
from tests.scheduled_support import FixedClock, make_runtime, op, outbox_rows, record
from tests.servers import wait_for

UTC = timezone.utc
# Tuesday 10 June 2025, 08:00:30 in Paris (CEST, UTC+2).
NOW = datetime(2025, 6, 10, 6, 0, 30, tzinfo=UTC)
YESTERDAY_RUN = datetime(2025, 6, 9, 6, 0, tzinfo=UTC)
TODAY_RUN = datetime(2025, 6, 10, 6, 0, tzinfo=UTC)
SETTINGS = {
    "d1bot_digest_channel": "CDIGEST",
    "d1bot_digest_time": "08:00",
    "d1bot_timezone": "Europe/Paris",
}
JOB = "digest:T1:CDIGEST"


def _digests(engine) -> list[dict]:
    return outbox_rows(engine, channel_id="CDIGEST", kind="message")


def test_digest_due_rules() -> None:
    schedule = DigestSchedule("T1", "C1", "08:00", "Europe/Paris")
    # First ever run: owed when the timer fires, not on a catch-up look.
    assert digest_due(schedule, now=NOW, last_claimed=None, fired=True) == (TODAY_RUN, 1)
    assert digest_due(schedule, now=NOW, last_claimed=None, fired=False) is None
    # Already claimed by some replica: nothing owed.
    assert digest_due(schedule, now=NOW, last_claimed=TODAY_RUN, fired=True) is None
    # Down for three days: one run owed, three missed.
    three_days_ago = TODAY_RUN - timedelta(days=3)
    assert digest_due(schedule, now=NOW, last_claimed=three_days_ago, fired=False) == (
        TODAY_RUN,
        3,
    )
    # A schedule set after today's time owes nothing today.
    later = DigestSchedule("T1", "C1", "08:00", "Europe/Paris", since=NOW)
    assert digest_due(later, now=NOW, last_claimed=None, fired=False) is None


async def test_two_instances_send_the_scheduled_digest_once(any_engine) -> None:
    record(any_engine, op("card-1", "CARD_PROD_REQUESTED", NOW - timedelta(hours=3)))
    clock = FixedClock(NOW)
    first = Scheduler(make_runtime(any_engine, clock, **SETTINGS))
    second = Scheduler(make_runtime(any_engine, clock, **SETTINGS))
    await first.start()
    await second.start()
    try:
        # A fresh install: the start-up catch-up sends nothing; the 08:00 timer fires on both.
        assert _digests(any_engine) == []
        first.trigger(JOB)
        second.trigger(JOB)
        await wait_for(lambda: len(runs_of(any_engine, job_name=JOB)) == 1, message="a claim")
        await asyncio.gather(
            asyncio.to_thread(
                send_digest_if_due, first.runtime, first.digest_schedules[0], fired=True
            ),
            asyncio.to_thread(
                send_digest_if_due, second.runtime, second.digest_schedules[0], fired=True
            ),
        )
        await first.sync()
        await second.sync()
    finally:
        await first.stop()
        await second.stop()
    rows = _digests(any_engine)
    assert len(rows) == 1
    assert "Sent late" not in json.dumps(rows[0]["payload"])
    [run] = runs_of(any_engine, job_name=JOB)
    assert run["scheduled_for"] == TODAY_RUN and run["outcome"] == "ok"


async def test_missed_runs_become_one_late_digest(any_engine) -> None:
    # The service ran until Friday's digest, then was down until Tuesday 11:15 Paris time.
    claim_run(
        any_engine,
        job_name=JOB,
        scheduled_for=YESTERDAY_RUN - timedelta(days=3),
        instance="old",
        now=YESTERDAY_RUN - timedelta(days=3),
    )
    clock = FixedClock(datetime(2025, 6, 10, 9, 15, tzinfo=UTC))
    replicas = [Scheduler(make_runtime(any_engine, clock, **SETTINGS)) for _ in range(2)]
    await asyncio.gather(*(r.start() for r in replicas))
    try:
        await asyncio.gather(*(r.sync() for r in replicas))
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    rows = _digests(any_engine)
    assert len(rows) == 1
    text = json.dumps(rows[0]["payload"])
    assert "Sent late: the service was down at 08:00 (Europe/Paris)." in text
    assert "4 scheduled digests were missed" in text
    # A restart later that day sends nothing more.
    clock.advance(hours=2)
    again = Scheduler(make_runtime(any_engine, clock, **SETTINGS))
    await again.start()
    await again.stop()
    assert len(_digests(any_engine)) == 1


async def test_scheduler_health_follows_its_lifecycle(engine) -> None:
    runtime = make_runtime(engine, FixedClock(NOW), **SETTINGS)
    install(runtime)
    [task] = [t for t in runtime.background if t.name == "scheduler"]
    assert not task.is_healthy()
    await task.start()
    assert task.is_healthy()
    await task.stop()
    assert not task.is_healthy()


async def test_a_run_that_fails_is_tried_again_within_a_minute(tmp_path) -> None:
    """The database is away when the stuck-card check runs (a file that cannot be opened): the
    scheduler keeps running and the check comes back in a minute, not a whole interval later."""
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'd1bot.db'}")
    runtime = make_runtime(engine, FixedClock(NOW), d1bot_stuck_check_interval_minutes=600)
    scheduler = Scheduler(runtime)
    await scheduler.start()
    try:
        first = scheduler.next_run_at(STUCK_JOB_ID)  # the first check, 5 s after the start

        def retried_soon() -> bool:
            due = scheduler.next_run_at(STUCK_JOB_ID)
            soon = datetime.now(UTC) + timedelta(seconds=RETRY_FAILED_RUN_SECONDS + 1)
            return due is not None and due != first and due <= soon

        await wait_for(retried_soon, timeout=30, message="the failed check rescheduled soon")
        assert scheduler.is_healthy()
    finally:
        await scheduler.stop()
        engine.dispose()
