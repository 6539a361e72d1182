"""`/card subscribe` checks the channel with Slack first (over real HTTP, through the served
app): a private channel the bot is not in, an archived channel or a direct message is refused
with a sentence and no subscription; a public channel the bot is not in is joined; subscribing
again ends a delivery pause, and so do the bot invited back and the channel unarchived;
`/card list` shows a pause."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine

from bot.dev.localslack.methods import BOT_USER_ID
from storage.repositories import pauses, subscriptions
from tests.servers import wait_for
from tests.slack.test_slack_app import slack_stack
from tests.slack_signing import TEAM_ID, post_signed


def _followed(engine: Engine, channel: str) -> list[str]:
    return [
        s.card_id
        for s in subscriptions.subscriptions_of_card(engine, card_id="card-1")
        if s.channel_id == channel
    ]


@pytest.mark.parametrize(
    ("channel", "declare", "says"),
    [
        ("G1", {"is_private": True, "bot_is_member": False}, "/invite @D1 Cards"),
        ("C3", {"is_archived": True}, "archived"),
        ("D1", None, "channels only"),
    ],
)
async def test_subscribe_is_refused_where_the_bot_cannot_post(
    engine: Engine, channel: str, declare: dict[str, bool] | None, says: str
) -> None:
    async with slack_stack(engine) as stack:
        if declare is not None:
            stack.slack.add_channel(channel, **declare)
        reply = await stack.ask("subscribe card-1", channel_id=channel)
        assert says in reply["text"]
    assert _followed(engine, channel) == []


async def test_subscribe_joins_a_public_channel_and_works_in_a_private_one_it_is_in(
    engine: Engine,
) -> None:
    async with slack_stack(engine) as stack:
        stack.slack.add_channel("C2", bot_is_member=False)
        stack.slack.add_channel("G2", is_private=True)
        joined = await stack.ask("subscribe card-1", channel_id="C2")
        private = await stack.ask("subscribe card-1", channel_id="G2")
        assert "Subscribed" in joined["text"] and "Subscribed" in private["text"]
        assert [c.body["channel"] for c in stack.slack.calls_to("conversations.join")] == ["C2"]
        assert (await stack.runtime.slack_client.chat_postMessage(channel="C2", text="x"))["ok"]
    assert _followed(engine, "C2") == ["card-1"] and _followed(engine, "G2") == ["card-1"]


async def test_list_shows_a_pause_and_subscribing_again_ends_it(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        await stack.ask("subscribe card-1", channel_id="C1")
        pauses.pause_channel(
            engine,
            workspace_id=TEAM_ID,
            channel_id="C1",
            reason="not_in_channel",
            now=datetime.now(timezone.utc),
        )
        listed = await stack.ask("list", channel_id="C1")
        assert "paused" in listed["text"] and "removed" in listed["text"]
        again = await stack.ask("subscribe card-1", channel_id="C1")
        assert "resume" in again["text"]
        assert pauses.channel_pause(engine, workspace_id=TEAM_ID, channel_id="C1") is None
        listed = await stack.ask("list", channel_id="C1")
        assert "paused" not in listed["text"]


def _event(event: dict[str, str], n: int) -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": TEAM_ID,
            "api_app_id": "A0TEST",
            "type": "event_callback",
            "event_id": f"Ev{n}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
            "event": event,
        }
    )


async def test_the_bot_invited_back_or_the_channel_unarchived_ends_the_pause(
    engine: Engine,
) -> None:
    def pause(channel: str) -> None:
        pauses.pause_channel(
            engine, workspace_id=TEAM_ID, channel_id=channel, reason="not_in_channel",
            now=datetime.now(timezone.utc),
        )  # fmt: skip

    def paused(channel: str) -> bool:
        return pauses.channel_pause(engine, workspace_id=TEAM_ID, channel_id=channel) is not None

    async with slack_stack(engine) as stack:
        pause("C1")
        pause("C2")
        someone = {"type": "member_joined_channel", "user": "U2", "channel": "C1"}
        unarchived = {"type": "channel_unarchive", "channel": "C2", "user": "U2"}
        bot = {"type": "member_joined_channel", "user": BOT_USER_ID, "channel": "C1"}
        for n, event in enumerate((someone, unarchived)):
            answer = await post_signed(stack.http, stack.url, _event(event, n))
            assert answer.status_code == 200
        await wait_for(lambda: not paused("C2"), message="the unarchived channel resumed")
        assert paused("C1")  # someone else joining changes nothing
        answer = await post_signed(stack.http, stack.url, _event(bot, 3))
        assert answer.status_code == 200
        await wait_for(lambda: not paused("C1"), message="the bot's channel resumed")


async def test_app_home_names_the_paused_channels(engine: Engine) -> None:
    pauses.pause_channel(
        engine, workspace_id=TEAM_ID, channel_id="C7", reason="not_in_channel",
        now=datetime.now(timezone.utc),
    )  # fmt: skip
    async with slack_stack(engine) as stack:
        opened = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}
        answer = await post_signed(stack.http, stack.url, _event(opened, 9))
        assert answer.status_code == 200
        await wait_for(lambda: stack.slack.calls_to("views.publish"), message="views.publish")
        view = json.dumps(stack.slack.calls_to("views.publish")[0].body["view"])
        assert "Updates paused" in view and "<#C7>" in view and "removed" in view
