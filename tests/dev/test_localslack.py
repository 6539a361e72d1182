"""The Slack stand-in, driven by the real slack_sdk AsyncWebClient over loopback HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.dev.localslack import BOT_USER_ID, TEAM_ID, Call, LocalSlack, render_message_text


@pytest.fixture
async def slack():
    async with LocalSlack() as stand_in:
        yield stand_in


def client_for(slack: LocalSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.base_url)


async def test_base_url_and_auth_test(slack: LocalSlack) -> None:
    assert slack.base_url.startswith("http://127.0.0.1:") and slack.base_url.endswith("/api/")
    answer = await client_for(slack).auth_test()
    assert answer["user_id"] == BOT_USER_ID and answer["team_id"] == TEAM_ID
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_missing_or_wrong_token_is_refused(slack: LocalSlack) -> None:
    with pytest.raises(SlackApiError) as bad:
        await AsyncWebClient(token="nope", base_url=slack.base_url).auth_test()
    assert bad.value.response["error"] == "invalid_auth"
    async with httpx.AsyncClient() as http:
        answer = (await http.post(slack.base_url + "auth.test")).json()
    assert answer == {"ok": False, "error": "not_authed"}


async def test_post_thread_broadcast_update_and_permalink(slack: LocalSlack) -> None:
    client = client_for(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*parent*"}}]
    parent = await client.chat_postMessage(channel="C1", text="parent", blocks=blocks)
    reply = await client.chat_postMessage(
        channel="C1", text="reply", thread_ts=parent["ts"], reply_broadcast=True
    )
    assert reply["ts"] > parent["ts"]
    await client.chat_update(channel="C1", ts=parent["ts"], text="parent v2", blocks=blocks)
    link = await client.chat_getPermalink(channel="C1", message_ts=reply["ts"])

    messages = slack.messages(channel="C1")
    assert [m["text"] for m in messages] == ["parent v2", "reply"]
    assert messages[0]["blocks"] == blocks and messages[0]["updates"] == 1
    assert messages[1]["thread_ts"] == parent["ts"] and messages[1]["reply_broadcast"] is True
    assert slack.thread("C1", parent["ts"]) == [messages[1]]
    assert f"thread_ts={parent['ts']}" in link["permalink"]
    post = slack.calls_to("chat.postMessage")[0]
    assert post.body["blocks"] == blocks and post.channel == "C1" and post.status == 200


async def test_reply_to_unknown_thread_and_unknown_message(slack: LocalSlack) -> None:
    client = client_for(slack)
    with pytest.raises(SlackApiError) as no_thread:
        await client.chat_postMessage(channel="C1", text="x", thread_ts="1.000001")
    assert no_thread.value.response["error"] == "thread_not_found"
    with pytest.raises(SlackApiError) as no_message:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert no_message.value.response["error"] == "message_not_found"


async def test_unknown_method(slack: LocalSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).api_call("reactions.add", json={"channel": "C1"})
    assert err.value.response["error"] == "unknown_method"


async def test_scripted_failures_in_order(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.fail_next("chat.postMessage", status=500, count=2)
    slack.fail_next("chat.postMessage", status=429, retry_after=2)
    slack.fail_next("chat.postMessage", error="not_in_channel")
    seen = []
    for _ in range(4):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text="x")
        seen.append((err.value.response.status_code, err.value.response["error"]))
    assert seen == [
        (500, "internal_error"),
        (500, "internal_error"),
        (429, "ratelimited"),
        (200, "not_in_channel"),
    ]
    assert slack.calls_to("chat.postMessage")[2].status == 429
    # The call after the 429 came sooner than its Retry-After allowed: it is recorded as early.
    assert slack.early_calls == [slack.calls_to("chat.postMessage")[3]]
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    assert len(slack.messages(channel="C1")) == 1


async def test_retry_after_header(slack: LocalSlack) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).chat_postMessage(channel="C1", text="x")
    assert err.value.response.headers["retry-after"] == "3"


async def test_enforced_rate_limit_is_per_channel(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.enforce_rate_limit(per_channel_per_second=1.0)
    await client.chat_postMessage(channel="C1", text="a")
    await client.chat_postMessage(channel="C2", text="a")  # another channel: allowed
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="b")
    assert err.value.response.status_code == 429
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert [m["text"] for m in slack.messages(channel="C1")] == ["a"]


async def test_channels_membership_and_archive(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.add_channel("C1", name="cards", members=["U1", "U2"])
    slack.add_channel("C2", bot_is_member=False)
    slack.add_channel("C3", is_archived=True)
    info = await client.conversations_info(channel="C1")
    assert info["channel"]["name"] == "cards" and info["channel"]["is_member"] is True
    for channel, error in (("C2", "not_in_channel"), ("C3", "is_archived")):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=channel, text="x")
        assert err.value.response["error"] == error


async def test_private_channels_join_and_archive_as_slack_answers(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.add_channel("G1", is_private=True, bot_is_member=False)
    slack.add_channel("G2", is_private=True)
    slack.add_channel("C2", bot_is_member=False)
    for call in (
        client.conversations_info(channel="G1"),
        client.chat_postMessage(channel="G1", text="x"),
        client.conversations_join(channel="G1"),
    ):
        with pytest.raises(SlackApiError) as hidden:  # the bot cannot see it at all
            await call
        assert hidden.value.response["error"] == "channel_not_found"
    info = (await client.conversations_info(channel="G2"))["channel"]
    assert info["is_private"] is True and info["is_member"] is True
    public = (await client.conversations_info(channel="C2"))["channel"]
    assert public["is_private"] is False and public["is_member"] is False
    await client.conversations_join(channel="C2")
    assert (await client.chat_postMessage(channel="C2", text="joined"))["ok"]
    slack.set_archived("C2", archived=True)
    with pytest.raises(SlackApiError) as archived:
        await client.chat_postMessage(channel="C2", text="x")
    assert archived.value.response["error"] == "is_archived"
    slack.set_bot_membership("G1", member=True)
    assert (await client.chat_postMessage(channel="G1", text="invited"))["ok"]


async def test_a_deleted_parent_answers_as_slack_does(slack: LocalSlack) -> None:
    client = client_for(slack)
    parent = await client.chat_postMessage(channel="C1", text="parent")
    await client.chat_delete(channel="C1", ts=parent["ts"])
    assert slack.messages(channel="C1") == []
    with pytest.raises(SlackApiError) as reply:
        await client.chat_postMessage(channel="C1", text="x", thread_ts=parent["ts"])
    assert reply.value.response["error"] == "thread_not_found"
    with pytest.raises(SlackApiError) as update:
        await client.chat_update(channel="C1", ts=parent["ts"], text="x")
    assert update.value.response["error"] == "message_not_found"
    other = await client.chat_postMessage(channel="C1", text="other")
    slack.delete_message("C1", other["ts"])  # as an agent would
    with pytest.raises(SlackApiError) as again:
        await client.chat_delete(channel="C1", ts=other["ts"])
    assert again.value.response["error"] == "message_not_found"


async def test_oversize_messages_are_refused(slack: LocalSlack) -> None:
    client = client_for(slack)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    for kwargs, error in (
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": "x", "blocks": [section] * 51}, "invalid_blocks"),
        ({"text": "x", "blocks": [long_section]}, "invalid_blocks"),
    ):
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel="C1", **kwargs)
        assert refused.value.response["error"] == error
    assert (await client.chat_postMessage(channel="C1", text="x", blocks=[section] * 50))["ok"]


async def test_workspace_and_tier_3_limits(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.enforce_rate_limit(None, workspace_per_minute=4, update_per_minute=2)
    first = await client.chat_postMessage(channel="C1", text="1")
    await client.chat_postMessage(channel="C2", text="2")
    await client.chat_update(channel="C1", ts=first["ts"], text="1b")
    await client.chat_update(channel="C1", ts=first["ts"], text="1c")
    with pytest.raises(SlackApiError) as tier3:  # the third update in a minute
        await client.chat_update(channel="C1", ts=first["ts"], text="1d")
    assert tier3.value.response.status_code == 429
    assert 55 <= int(tier3.value.response.headers["retry-after"]) <= 60
    with pytest.raises(SlackApiError) as workspace:  # the fifth post or update in a minute
        await client.chat_postMessage(channel="C3", text="3")
    assert workspace.value.response.status_code == 429
    assert slack.rate_limited == 2 and slack.messages(channel="C3") == []
    # Coming back before the Retry-After is noticed.
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C4", text="4")
    assert slack.early_calls == [slack.calls_to("chat.postMessage")[-1]]


async def test_usergroups_dm_ephemeral_and_views(slack: LocalSlack) -> None:
    client = client_for(slack)
    slack.set_usergroup("S1", ["U1", "U2"])
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError):
        await client.usergroups_users_list(usergroup="S9")
    dm = await client.conversations_open(users="U1")
    with pytest.raises(SlackApiError) as tab_off:  # the manifest's Messages tab is off
        await client.chat_postMessage(channel=dm["channel"]["id"], text="hello")
    assert tab_off.value.response["error"] == "messages_tab_disabled"
    slack.enable_messages_tab()
    await client.chat_postMessage(channel=dm["channel"]["id"], text="hello")
    assert slack.messages(channel="DU1")[0]["text"] == "hello"
    await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert slack.ephemerals(channel="C1")[0]["user"] == "U1"
    await client.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    assert slack.views["U1"]["type"] == "home"


async def test_response_url_sink(slack: LocalSlack) -> None:
    url = slack.response_url()
    answer = await AsyncWebhookClient(url).send(text="done", response_type="ephemeral")
    assert answer.status_code == 200
    assert slack.responses == [{"text": "done", "response_type": "ephemeral"}]
    async with httpx.AsyncClient() as http:
        stranger = await http.post(slack.root_url + "/response/unknown", json={"text": "x"})
    assert stranger.status_code == 404 and len(slack.responses) == 1
    assert [(c.method, c.status) for c in slack.calls] == [
        ("response_url", 200),
        ("response_url", 404),
    ]


async def test_get_form_bodies_and_paths_slack_does_not_serve(slack: LocalSlack) -> None:
    """Requests other than JSON posts: GET with query parameters, form bodies (slack_sdk sends
    `blocks` there as a JSON string), and unknown paths or verbs."""
    client = client_for(slack)
    info = await client.api_call("conversations.info", http_verb="GET", params={"channel": "C1"})
    assert info["channel"]["id"] == "C1"
    assert slack.calls[-1].body == {"channel": "C1"}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*form*"}}]
    form = await client.api_call(
        "chat.postMessage", data={"channel": "C2", "text": "form", "blocks": json.dumps(blocks)}
    )
    assert form["ok"]
    posted = slack.messages(channel="C2")[0]
    assert posted["text"] == "form" and posted["blocks"] == blocks
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{slack.root_url}/elsewhere")).status_code == 404
        assert (await http.delete(slack.base_url + "auth.test")).status_code == 405
        assert (await http.get(slack.response_url())).status_code == 405
    assert [c.method for c in slack.calls] == ["conversations.info", "chat.postMessage"]


async def test_on_call_hook_and_readable_rendering() -> None:
    seen: list[Call] = []
    async with LocalSlack(on_call=seen.append) as slack:
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": "Card c-1"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Status: *Shipped*"},
                "fields": [{"type": "mrkdwn", "text": "*Carrier*\nUPS"}],
            },
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}}
                ],
            },
        ]
        parent = await client_for(slack).chat_postMessage(channel="C1", text="x", blocks=blocks)
        await client_for(slack).chat_postMessage(
            channel="C1", text="in thread", thread_ts=parent["ts"]
        )
    text = render_message_text(seen[0])
    assert "chat.postMessage -> C1" in text and "== Card c-1 ==" in text
    assert "Status: *Shipped*" in text and "- *Carrier* UPS" in text and "[Acknowledge]" in text
    assert f"thread {parent['ts']}" in render_message_text(seen[1])
    assert "in thread" in render_message_text(seen[1])
