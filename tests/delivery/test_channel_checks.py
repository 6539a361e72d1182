"""`/card subscribe` checks the channel with Slack first (over real HTTP, through the served
app): a private channel the bot is not in, an archived channel or a direct message is refused
with a sentence and no subscription; a public channel the bot is not in is joined; subscribing
again ends a delivery pause; `/card list` shows a pause."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine

from storage.repositories import pauses, subscriptions
from tests.slack.test_slack_app import slack_stack
from tests.slack_signing import TEAM_ID


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
