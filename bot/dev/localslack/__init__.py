"""A local stand-in for the Slack Web API: real HTTP on loopback, port 0.

Used by the tests (with the real `slack_sdk.AsyncWebClient(base_url=slack.base_url)`) and by
`d1bot demo`. It records every call with its decoded body, keeps the messages of each channel
(with their `ts`, threads and updates), and can be scripted to fail (`fail_next`) or to enforce
Slack's limits (per channel, per workspace, Tier 3 `chat.update`) with `429 Retry-After`; it
answers deleted parents, private and archived channels and oversize messages as Slack does, so
that delivery code is exercised against the failures it must survive rather than against a
mock.

    async with LocalSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages(channel="C1")[0]["text"] == "hi"

Modules: `calls` (the recorded `Call`, body decoding), `workspace` (channels, messages,
threads), `methods` (the Web API methods), `faults` (scripted failures, rate limit),
`serving` (uvicorn and the routes), `stand_in` (`LocalSlack`), `render` (calls as text).
"""

from __future__ import annotations

from bot.dev.localslack.calls import BOT_ID, BOT_USER_ID, PERMALINK_HOST, TEAM_ID, Call
from bot.dev.localslack.faults import RATE_LIMITED_METHODS
from bot.dev.localslack.render import render_message_text
from bot.dev.localslack.stand_in import LocalSlack

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "PERMALINK_HOST",
    "RATE_LIMITED_METHODS",
    "TEAM_ID",
    "Call",
    "LocalSlack",
    "render_message_text",
]
