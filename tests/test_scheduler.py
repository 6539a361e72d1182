"""Scheduled digests: two scheduler instances on one database send each digest exactly once,
missed runs after downtime become ONE late digest with a note, schedules survive restarts, and
`/card digest ...` works end to end through `digest_command`."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from bot.scheduled.digest import digest_command
from bot.scheduled.jobs import send_digest_if_due
from bot.scheduled.scheduler import Scheduler, install
from bot.scheduled.schedules import DigestSchedule, digest_due
from storage.repositories.jobs import claim_run, runs_of
from storage.repositories.schedules import get_schedule
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


async def test_digest_command_show_post_schedule_off(engine) -> None:
    record(
        engine,
        op("card-9", "CARD_SHIPPED", NOW - timedelta(hours=2), shipment_status="FAILED_ATTEMPT"),
    )
    clock = FixedClock(NOW)
    runtime = make_runtime(engine, clock, **SETTINGS)
    runtime.outbox_wakeup = asyncio.Event()
    scheduler = install(runtime)
    await scheduler.start()
    try:
        text, blocks, to_channel = await digest_command(
            runtime, workspace_id="T1", channel_id="CTEAM", user_id="U7", action="show", args=[]
        )
        assert to_channel is False and blocks and "1 new exceptions" in text
        assert "card-9" in json.dumps(blocks)
        assert outbox_rows(engine, channel_id="CTEAM") == []  # shown to the asker only

        text, blocks, to_channel = await digest_command(
            runtime, workspace_id="T1", channel_id="CTEAM", user_id="U7", action="post", args=[]
        )
        assert to_channel is False and "Posting" in text
        assert runtime.outbox_wakeup.is_set()
        [posted] = outbox_rows(engine, channel_id="CTEAM")
        assert posted["kind"] == "message" and "card-9" in json.dumps(posted["payload"])

        text, _, to_channel = await digest_command(
            runtime,
            workspace_id="T1",
            channel_id="CTEAM",
            user_id="U7",
            action="schedule",
            args=["9:30", "America/New_York"],
        )
        assert to_channel is True
        assert "<@U7> scheduled this channel's daily digest at 09:30 (America/New_York)" in text
        assert "Next one: Tue 10 Jun 09:30" in text
        stored = get_schedule(engine, workspace_id="T1", channel_id="CTEAM")
        assert stored is not None and (stored.time_of_day, stored.enabled) == ("09:30", True)
        await wait_for(
            lambda: "digest:T1:CTEAM" in {s.job_name for s in scheduler.digest_schedules},
            message="the live scheduler to pick up the schedule",
        )

        text, _, to_channel = await digest_command(
            runtime, workspace_id="T1", channel_id="CTEAM", user_id="U7", action="off", args=[]
        )
        assert to_channel is True and "turned this channel's daily digest off" in text
        await wait_for(
            lambda: "digest:T1:CTEAM" not in {s.job_name for s in scheduler.digest_schedules},
            message="the live scheduler to drop the schedule",
        )
        # The default channel can be turned off too, and stays off after a restart.
        await digest_command(
            runtime, workspace_id="T1", channel_id="CDIGEST", user_id="U7", action="off", args=[]
        )
    finally:
        await scheduler.stop()
    restarted = Scheduler(make_runtime(engine, clock, **SETTINGS))
    await restarted.start()
    try:
        assert restarted.digest_schedules == []
    finally:
        await restarted.stop()


async def test_digest_command_refuses_bad_input_clearly(engine) -> None:
    runtime = make_runtime(engine, FixedClock(NOW), **SETTINGS)
    for args, expected in (
        (["25:00"], "HH:MM"),
        (["08:00", "Mars/Olympus"], "IANA"),
        ([], "Tell me when"),
    ):
        text, _, to_channel = await digest_command(
            runtime, workspace_id="T1", channel_id="C1", user_id="U1", action="schedule", args=args
        )
        assert expected in text and to_channel is False
    assert get_schedule(engine, workspace_id="T1", channel_id="C1") is None
    text, _, _ = await digest_command(
        runtime, workspace_id="T1", channel_id="C1", user_id="U1", action="launch", args=[]
    )
    assert "/card digest" in text


async def test_scheduler_health_follows_its_lifecycle(engine) -> None:
    runtime = make_runtime(engine, FixedClock(NOW), **SETTINGS)
    install(runtime)
    [task] = [t for t in runtime.background if t.name == "scheduler"]
    assert not task.is_healthy()
    await task.start()
    assert task.is_healthy()
    await task.stop()
    assert not task.is_healthy()
