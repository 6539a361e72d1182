"""`/card digest ...` end to end: signed requests to `POST /slack/events`, replies read from
LocalSlack's response_url, and `digest post` delivered by the real outbox worker through the
real slack_sdk client to LocalSlack."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from bot.delivery.worker import OutboxWorker
from bot.scheduled.scheduler import Scheduler, install
from storage.repositories.schedules import get_schedule
from tests.delivery.outbox_support import drain
from tests.scheduled_support import FixedClock, op, record
from tests.servers import wait_for
from tests.slack.test_slack_app import slack_stack
from tests.slack_signing import TEAM_ID


async def test_card_digest_end_to_end(engine) -> None:
    now = datetime.now(timezone.utc)
    record(
        engine,
        op(
            "card-77",
            "CARD_SHIPPED",
            now - timedelta(hours=2),
            shipment_status="EXCEPTION",
            message="Refused by recipient",
        ),
    )
    async with slack_stack(engine, d1bot_timezone="Europe/Paris") as stack:
        reply = await stack.ask("digest", channel_id="C1")
        shown = json.dumps(reply)
        assert "Daily card digest" in shown and "card-77" in shown
        assert "Refused by recipient" in shown
        assert stack.slack.messages(channel="C1") == []  # only the asker saw it

        reply = await stack.ask("digest schedule 07:30 Europe/Paris", channel_id="C1")
        assert "scheduled this channel's daily digest at 07:30 (Europe/Paris)" in reply["text"]
        stored = get_schedule(engine, workspace_id=TEAM_ID, channel_id="C1")
        assert stored is not None and stored.time_of_day == "07:30"

        reply = await stack.ask("digest post", channel_id="C1")
        assert "Posting the digest" in reply["text"]
        await drain(OutboxWorker(stack.runtime, client=stack.runtime.slack_client), engine)
        [posted] = stack.slack.messages(channel="C1")
        assert "Daily card digest" in json.dumps(posted) and "card-77" in json.dumps(posted)

        reply = await stack.ask("digest off", channel_id="C1")
        assert "turned this channel's daily digest off" in reply["text"]
        stored = get_schedule(engine, workspace_id=TEAM_ID, channel_id="C1")
        assert stored is not None and stored.enabled is False


async def test_digest_schedule_and_off_reach_the_live_scheduler(engine) -> None:
    """Ported from tests/scheduled/test_scheduler.py, through Slack: a schedule set or turned off by
    `/card digest` is picked up by this process's scheduler, and "off" survives a restart."""
    paris_8am = datetime(2025, 6, 10, 6, 0, 30, tzinfo=timezone.utc)  # a Tuesday
    settings = {
        "d1bot_workspace_id": TEAM_ID,
        "d1bot_digest_channel": "CDIGEST",
        "d1bot_timezone": "Europe/Paris",
    }
    async with slack_stack(engine, **settings) as stack:
        stack.runtime.clock = FixedClock(paris_8am)
        stack.runtime.outbox_wakeup = asyncio.Event()
        scheduler = install(stack.runtime)
        await scheduler.start()
        try:
            reply = await stack.ask("digest schedule 9:30 America/New_York", channel_id="CTEAM")
            text = reply["text"]
            assert "<@U1> scheduled this channel's daily digest at 09:30 (America/New_York)" in text
            assert "Next one: Tue 10 Jun 09:30" in text
            await wait_for(
                lambda: (
                    f"digest:{TEAM_ID}:CTEAM" in {s.job_name for s in scheduler.digest_schedules}
                ),
                message="the live scheduler to pick up the schedule",
            )
            reply = await stack.ask("digest post", channel_id="CTEAM")
            assert "Posting" in reply["text"] and stack.runtime.outbox_wakeup.is_set()

            await stack.ask("digest off", channel_id="CTEAM")
            await wait_for(
                lambda: all(s.channel_id != "CTEAM" for s in scheduler.digest_schedules),
                message="the live scheduler to drop the schedule",
            )
            await stack.ask("digest off", channel_id="CDIGEST")  # the configured default too
        finally:
            await scheduler.stop()
        restarted = Scheduler(stack.runtime)
        await restarted.start()
        try:
            assert restarted.digest_schedules == []
        finally:
            await restarted.stop()


async def test_bad_digest_schedules_are_refused_clearly_and_store_nothing(engine) -> None:
    async with slack_stack(engine) as stack:
        for text, expected in (
            ("digest schedule 25:00", "`HH:MM`"),
            ("digest schedule 08:00 Mars/Olympus", "IANA"),
            ("digest schedule", "takes a time"),
            ("digest schedule 08:00 Europe/Paris now", "takes a time"),
            ("digest launch", "/card help"),
        ):
            reply = await stack.ask(text)
            assert expected in reply["text"] and reply["response_type"] == "ephemeral"
    assert get_schedule(engine, workspace_id=TEAM_ID, channel_id="C1") is None
