"""Access control in front of every `/card` listener (Bolt middleware): buttons are refused like
the command and audited under their own action, the App Home stays open, and a slow Slack
never makes the ack miss Slack's 3 seconds. Signed requests to the real app, LocalSlack behind
its client."""

from __future__ import annotations

import json
import time

from sqlalchemy.engine import Engine

from bot.render import actions
from storage.repositories import subscriptions
from tests.servers import wait_for
from tests.slack.test_slack_app import audit_rows, slack_stack
from tests.slack_signing import TEAM_ID, post_signed

ACK_LIMIT_SECONDS = 3.0  # Slack's deadline for acknowledging a slash command
# Slower than the ack limit, so that waiting for Slack would miss it; not much slower: LocalSlack
# finishes a held answer before it stops, so a longer hold only delays the end of the test.
SLOW_SLACK_SECONDS = ACK_LIMIT_SECONDS + 0.25


async def test_buttons_are_refused_outside_allowed_channels(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_channels="C1") as stack:
        response = await stack.press(actions.SUBSCRIBE, "card-1", channel_id="C2")
        assert response.status_code == 200
        refused = await stack.reply(1)
        assert "not enabled in this channel" in refused["text"]
        assert refused["response_type"] == "ephemeral"
        await stack.press(actions.SUBSCRIBE, "card-1", channel_id="C1")
        assert "Subscribed" in (await stack.reply(2))["text"]
    assert [
        s.channel_id for s in subscriptions.subscriptions_of_card(engine, card_id="card-1")
    ] == ["C1"]
    rows = [(a.action, a.channel_id, a.outcome) for a in audit_rows(engine)]
    assert rows == [("button_subscribe", "C2", "not_allowed"), ("button_subscribe", "C1", "ok")]


async def test_a_refused_user_is_refused_before_the_button_value_is_read(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_usergroups="S1") as stack:
        stack.slack.set_usergroup("S1", ["U1"])
        await stack.press(actions.REFRESH, "", user_id="U2")
        assert "not in a user group" in (await stack.reply(1))["text"]
        await stack.press(actions.REFRESH, "", user_id="U1")
        assert "out of date" in (await stack.reply(2))["text"]
    outcomes = [(a.action, a.user_id, a.outcome) for a in audit_rows(engine)]
    assert outcomes == [
        ("button_refresh", "U2", "not_allowed"),
        ("button_refresh", "U1", "invalid"),
    ]


async def test_app_home_is_published_whatever_the_allowlists(engine: Engine) -> None:
    async with slack_stack(
        engine, d1bot_allowed_channels="C1", d1bot_allowed_usergroups="S1"
    ) as stack:
        event = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "api_app_id": "A0TEST",
            "type": "event_callback",
            "event_id": "Ev2",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "UD1BOT", "is_bot": True}],
            "event": {"type": "app_home_opened", "user": "U9", "channel": "D9", "tab": "home"},
        }
        response = await post_signed(stack.http, stack.url, json.dumps(event))
        assert response.status_code == 200
        await wait_for(lambda: stack.slack.calls_to("views.publish"), message="views.publish")
        assert stack.slack.calls_to("usergroups.users.list") == []
    assert audit_rows(engine) == []


async def test_slow_usergroup_lookup_fails_closed_within_the_ack_limit(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_usergroups="S1,S2") as stack:
        stack.slack.set_usergroup("S1", ["U1"])
        stack.slack.set_usergroup("S2", ["U2"])
        assert "/card status" in json.dumps(await stack.ask("help", user_id="U1"))
        stack.slack.delay_answers(SLOW_SLACK_SECONDS)  # S2 is not cached: its lookup waits
        started = time.monotonic()
        response = await stack.command("help", user_id="U2")
        assert response.status_code == 200
        assert time.monotonic() - started < ACK_LIMIT_SECONDS
        refused = await stack.reply(2)
        assert "check your user groups" in refused["text"]
    assert [a.outcome for a in audit_rows(engine)] == ["ok", "not_allowed"]
