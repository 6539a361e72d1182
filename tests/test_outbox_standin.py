"""The Slack stand-in served by aiohttp (what the fan-out benchmark uses): the same answers as
under uvicorn, through the real slack_sdk client and real HTTP on loopback."""

from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from bot.dev.localslack import LocalSlack
from storage.repositories import outbox as repo
from tests.test_outbox_support import drain, follow, make_runtime, make_worker, produce, record


async def test_aiohttp_server_answers_like_slack() -> None:
    async with LocalSlack(server="aiohttp") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
        parent = await client.chat_postMessage(channel="C1", text="parent")
        reply = await client.chat_postMessage(channel="C1", text="reply", thread_ts=parent["ts"])
        await client.chat_update(channel="C1", ts=parent["ts"], text="parent, updated")
        assert [m["text"] for m in slack.messages(channel="C1")] == ["parent, updated", "reply"]
        assert slack.thread("C1", parent["ts"])[0]["ts"] == reply["ts"]
        info = await client.api_call(
            "conversations.info", http_verb="GET", params={"channel": "C1"}
        )
        assert info["channel"]["id"] == "C1"
        form = await client.api_call("chat.postMessage", data={"channel": "C2", "text": "form"})
        assert form["ok"] and slack.messages(channel="C2")[0]["text"] == "form"

        slack.enforce_rate_limit(per_channel_per_second=1.0)
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel="C1", text="too soon")
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        slack.enforce_rate_limit(None)
        slack.fail_next("chat.postMessage", status=500)
        with pytest.raises(SlackApiError) as failed:
            await client.chat_postMessage(channel="C3", text="x")
        assert failed.value.response.status_code == 500

        bad = AsyncWebClient(token="nope", base_url=slack.base_url, retry_handlers=[])
        with pytest.raises(SlackApiError, match="invalid_auth"):
            await bad.auth_test()

        async with aiohttp.ClientSession() as http:
            url = slack.response_url()
            async with http.post(url, json={"text": "answer"}) as answer:
                assert answer.status == 200
            async with http.post(f"{slack.root_url}/response/unknown", json={}) as answer:
                assert answer.status == 404
            async with http.get(f"{slack.root_url}/elsewhere") as answer:
                assert answer.status == 404
        assert slack.responses == [{"text": "answer"}]
        assert [c.method for c in slack.calls][-2:] == ["response_url", "response_url"]


async def test_worker_delivers_through_the_aiohttp_server(engine: Engine) -> None:
    for channel in ("C1", "C2", "C3"):
        follow(engine, channel, "card-1")
    async with LocalSlack(server="aiohttp") as slack:
        worker = make_worker(make_runtime(engine, slack), slack)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        for channel in ("C1", "C2", "C3"):
            parent, reply = slack.messages(channel=channel)
            assert reply["thread_ts"] == parent["ts"]
    assert repo.pending_count(engine) == 0


def test_unknown_server_is_refused() -> None:
    with pytest.raises(ValueError, match="uvicorn or aiohttp"):
        LocalSlack(server="tornado")
