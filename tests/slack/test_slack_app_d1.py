"""`/card` commands and buttons that call D1: the D1 sandbox over real HTTP behind the bot,
signed Slack requests in, LocalSlack recording everything the bot sends."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from bot.render import actions
from d1.models import parse_operations
from storage.repositories import subscriptions
from storage.repositories.intake import record_operations
from tests.d1_fixtures import make_client, running_sandbox
from tests.servers import wait_for
from tests.slack.test_slack_app import SlackStack, audit_rows, everything_sent, slack_stack

ADDRESS = {"line1": "12 Analytical Street", "city": "Londinium", "zipCode": "N1 9GU"}


@contextlib.asynccontextmanager
async def d1_stack(engine: Engine, **client_options: Any) -> AsyncIterator[tuple[Any, SlackStack]]:
    async with running_sandbox() as (sandbox, base_url):
        options = {"max_retries": 0, "timeout": 3.0, **client_options}
        client = make_client(base_url, sandbox, **options)
        try:
            async with slack_stack(engine, d1_client=client) as stack:
                yield sandbox, stack
        finally:
            await client.aclose()


def _shipped_card(sandbox: Any, card_id: str) -> None:
    sandbox.create_card(card_id, scenario="happy", name="ADA LOVELACE", address=ADDRESS)
    for _ in range(12):
        sandbox.advance(card_id)
        if "shipment" in sandbox.status_of(card_id):
            break


async def test_status_shows_the_personal_view_with_buttons(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        _shipped_card(sandbox, "card-1")
        reply = await stack.ask("status card-1")
        text = json.dumps(reply)
        assert reply["response_type"] == "ephemeral"
        assert "Card card-1" in text
        assert "************1234" in text
        assert "ADA LOVELACE" in text and "Analytical" in text  # ephemeral: the agent only
        assert "Shipment status" in text and "Last updated" in text
        ids = [
            e["action_id"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]
        ]
        assert ids == [actions.SUBSCRIBE, actions.REFRESH, actions.SHARE, actions.TIMELINE]
        # nothing personal went anywhere but the response_url
        channel_calls = json.dumps(
            [c.body for c in stack.slack.calls if c.method != "response_url"]
        )
        assert "ADA" not in channel_calls
    assert [(a.action, a.card_id, a.outcome) for a in audit_rows(engine)] == [
        ("status", "card-1", "ok")
    ]


async def test_share_posts_without_name_or_address_and_refresh_replaces(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        _shipped_card(sandbox, "card-1")
        value = actions.encode_value(actions.ActionValue("card-1"))
        await stack.press(actions.SHARE, value, channel_id="C7", user_id="U3")
        confirmation = await stack.reply(1)
        assert "Shared" in confirmation["text"]
        posted = stack.slack.messages(channel="C7")
        assert len(posted) == 1
        shared = json.dumps(posted[0])
        assert "card-1" in shared and "shared by <@U3>" in shared
        assert "ADA" not in shared and "LOVELACE" not in shared
        assert "Analytical" not in shared and "N1 9GU" not in shared and "Londinium" not in shared

        await stack.press(actions.REFRESH, value)
        refreshed = await stack.reply(2)
        assert refreshed["replace_original"] is True
        assert "Card card-1" in json.dumps(refreshed)
    assert [a.action for a in audit_rows(engine)] == ["button_share", "button_refresh"]


async def test_share_when_bot_is_not_in_channel_says_invite(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        _shipped_card(sandbox, "card-1")
        stack.slack.add_channel("C8", bot_is_member=False)
        await stack.press(actions.SHARE, "card-1", channel_id="C8")
        reply = await stack.reply(1)
        assert "/invite" in reply["text"]
    assert audit_rows(engine)[0].outcome == "not_in_channel"


async def test_unknown_card_is_a_sentence(engine: Engine) -> None:
    async with d1_stack(engine) as (_sandbox, stack):
        reply = await stack.ask("status no-such-card")
        assert "D1 has no card *no-such-card*" in reply["text"]  # names what was not found
        assert "Traceback" not in everything_sent(stack.slack)
    assert audit_rows(engine)[0].outcome == "d1_not_found"


async def test_d1_503_reply_says_d1_is_not_answering(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        sandbox.create_card("card-1")
        sandbox.faults.fail_next("productionStatus", status=503, count=3)
        reply = await stack.ask("status card-1")
        assert "D1 is not answering" in reply["text"]
    assert audit_rows(engine)[0].outcome == "d1_unavailable"


async def test_slow_d1_never_delays_the_ack(engine: Engine) -> None:
    async with d1_stack(engine, timeout=2.0) as (sandbox, stack):
        sandbox.create_card("card-1")
        sandbox.faults.delay_next("productionStatus", seconds=3)
        response = await stack.command("status card-1")
        # Slack got its answer while D1 was still thinking: nothing has been replied yet
        assert response.status_code == 200
        assert stack.slack.responses == []
        reply = await stack.reply(1)
        assert "D1 is not answering" in reply["text"]


async def test_track_calls_d1_confirms_and_subscribes(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        reply = await stack.ask("track ext-1 production productionSite=PARIS", channel_id="C3")
        assert "Asked D1 to track" in reply["text"]
        track_calls = [r for r in sandbox.requests if r.path.endswith("/ext-1/track")]
        assert len(track_calls) == 1
        shipment = await stack.ask(
            "track ext-2 shipment trackingNumber=1Z999 shipmentDate=2024-05-31 "
            "postalCode=75001 countryCode=FR",
            channel_id="C3",
        )
        assert "Asked D1 to track" in shipment["text"]
    subs = subscriptions.list_for_channel(engine, workspace_id="T0TEST", channel_id="C3")
    assert [s.subscription.card_id for s in subs] == ["ext-1", "ext-2"]


async def test_track_with_a_bad_field_never_reaches_d1(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        reply = await stack.ask("track ext-1 shipment trackingNumber=1Z999 countryCode=FRANCE")
        assert "`shipmentDate`, `postalCode` are missing" in reply["text"]
        assert not [r for r in sandbox.requests if "track" in r.path]
    assert audit_rows(engine)[0].outcome == "invalid"


def _record_exception(engine: Engine) -> int:
    op = {
        "operationId": "op-1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": "card-x",
        "startTime": "2024-06-01T10:00:00Z",
        "details": {"status": "CARD_PROD_ONHOLD", "productionSite": "PARIS"},
    }
    result = record_operations(
        engine,
        parse_operations(op),
        received_at=datetime(2024, 6, 1, 10, 1, tzinfo=timezone.utc),
        workspace_id="T0TEST",
        exceptions_channel=None,
    )
    return result.new_event_ids[0]


async def test_alert_refresh_and_retrack(engine: Engine) -> None:
    event_id = _record_exception(engine)
    async with d1_stack(engine) as (sandbox, stack):
        sandbox.create_card("card-x", scenario="onhold")
        value = actions.encode_value(actions.ActionValue("card-x", event_id))
        await stack.press(actions.ALERT_REFRESH, value, channel_id="CEX")
        refreshed = await stack.reply(1)
        assert "Card card-x" in json.dumps(refreshed)
        assert refreshed["replace_original"] is False  # the alert itself stays

        await stack.press(actions.ALERT_RETRACK, value, channel_id="CEX")
        retracked = await stack.reply(2)
        assert "Asked D1 to track" in retracked["text"]
        await wait_for(lambda: [r for r in sandbox.requests if r.path.endswith("/card-x/track")])
    assert [a.action for a in audit_rows(engine)] == ["button_alert_refresh", "button_retrack"]
