"""`/card digest ...` end to end: signed requests to `POST /slack/events`, replies read from
LocalSlack's response_url, and `digest post` delivered by the real outbox worker through the
real slack_sdk client to LocalSlack."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bot.delivery.worker import OutboxWorker
from storage.repositories.schedules import get_schedule
from tests.scheduled_support import op, record
from tests.slack_signing import TEAM_ID
from tests.test_outbox_support import drain
from tests.test_slack_app import slack_stack


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
