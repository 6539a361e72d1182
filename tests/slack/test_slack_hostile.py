"""`POST /slack/events` against an outsider and a careless caller: another workspace gets a
polite refusal and no data; headers and bodies Bolt cannot read get a 4xx (never a 500 or an
ERROR traceback); and at LOG_LEVEL=DEBUG, through commands, buttons and events, the log holds
no PAN, cardholder name, address, response URL or token. Real server, LocalSlack, D1 sandbox."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from bot.dev.localslack import TEAM_ID as LOCAL_TEAM_ID
from bot.dev.localslack import LocalSlack
from bot.logs import PAYLOAD_DROPPED
from bot.render import actions
from bot.runtime import Runtime
from bot.server import create_app
from bot.settings import Settings
from bot.slack.workspace import FOREIGN_WORKSPACE, is_foreign
from tests.logcapture import captured_logs
from tests.servers import serve_asgi, wait_for
from tests.slack.test_slack_app import audit_rows, slack_stack
from tests.slack.test_slack_app_d1 import _shipped_card, d1_stack
from tests.slack_signing import (
    SIGNING_SECRET,
    TEAM_ID,
    action_body,
    command_body,
    post_signed,
    signed_headers,
)

PAN = "4111111111111111"

# --------------------------------------------------------------------------- foreign workspaces


async def test_a_command_from_another_workspace_is_refused_without_data(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        body = command_body("list", response_url=stack.slack.response_url(), team_id="T0OUTSIDER")
        answer = await post_signed(stack.http, stack.url, body)
        assert answer.status_code == 200 and not answer.content
        refusal = await stack.reply(1)
        assert refusal == {
            "text": FOREIGN_WORKSPACE,
            "response_type": "ephemeral",
            "replace_original": False,
        }
        own = await stack.ask("list")  # the installed workspace is still served
        assert "follows no cards" in own["text"]
    assert len(stack.slack.responses) == 2
    assert [a.workspace_id for a in audit_rows(engine)] == [TEAM_ID]


async def test_a_button_from_another_workspace_is_refused_without_data(engine: Engine) -> None:
    async with d1_stack(engine) as (sandbox, stack):
        _shipped_card(sandbox, "card-1")
        value = actions.encode_value(actions.ActionValue("card-1"))
        body = action_body(
            actions.SHARE, value, response_url=stack.slack.response_url(), team_id="T0OUTSIDER"
        )
        answer = await post_signed(stack.http, stack.url, body)
        assert answer.status_code == 200
        refusal = await stack.reply(1)
        assert refusal["text"] == FOREIGN_WORKSPACE and refusal["response_type"] == "ephemeral"
        sent = json.dumps([c.body for c in stack.slack.calls]) + json.dumps(stack.slack.responses)
        assert "card-1" not in sent and "chat.postMessage" not in {
            c.method for c in stack.slack.calls
        }
    assert audit_rows(engine) == []


@contextlib.asynccontextmanager
async def _stack_without_override(engine: Engine) -> AsyncIterator[tuple[LocalSlack, str]]:
    """The bot as deployed: no D1BOT_WORKSPACE_ID, so the team is auth.test's."""
    async with LocalSlack() as slack:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            slack_bot_token="xoxb-test",
            slack_signing_secret=SIGNING_SECRET,
        )
        runtime = Runtime(
            settings=settings,
            engine=engine,
            slack_client=AsyncWebClient(token="xoxb-test", base_url=slack.base_url),
        )
        async with serve_asgi(create_app(runtime, run_background=False)) as base:
            yield slack, f"{base}/slack/events"


async def test_the_installed_workspace_is_the_one_auth_test_names(engine: Engine) -> None:
    async with _stack_without_override(engine) as (slack, url), httpx.AsyncClient() as http:
        ours = command_body("help", response_url=slack.response_url(), team_id=LOCAL_TEAM_ID)
        theirs = command_body("help", response_url=slack.response_url(), team_id=TEAM_ID)
        refused = await post_signed(http, url, theirs)
        assert refused.status_code == 200
        await wait_for(lambda: slack.responses, message="the refusal")
        served = await post_signed(http, url, ours)
        assert served.status_code == 200
        await wait_for(lambda: len(slack.responses) == 2, message="the help reply")
        assert slack.responses[0]["text"] == FOREIGN_WORKSPACE
        assert "/card status" in json.dumps(slack.responses[1])
    assert slack.calls_to("auth.test")


def test_another_enterprise_organisation_is_foreign() -> None:
    def context(**values: Any) -> AsyncBoltContext:
        found = AsyncBoltContext(values)
        found["authorize_result"] = AuthorizeResult(enterprise_id="E0OURS", team_id="T0OURS")
        return found

    assert not is_foreign(context(team_id="T0OURS", enterprise_id="E0OURS"), None)
    assert is_foreign(context(team_id="T0OURS", enterprise_id="E0THEIRS"), None)
    assert is_foreign(context(team_id="T0THEIRS", enterprise_id="E0OURS"), None)
    assert is_foreign(context(enterprise_id="E0THEIRS", is_enterprise_install=True), None)
    assert not is_foreign(context(enterprise_id="E0OURS", is_enterprise_install=True), None)
    assert is_foreign(context(), None)  # a request that names no team
    assert not is_foreign(context(team_id="T0DEMO"), "T0DEMO")  # the override wins


# --------------------------------------------------------------------------- malformed requests


async def test_requests_bolt_cannot_read_get_a_4xx_and_no_traceback(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        body = command_body("help", response_url=stack.slack.response_url())
        good = signed_headers(body)
        nested = "[" * 100_000 + "]" * 100_000
        cases: list[tuple[str, bytes, dict[str, Any]]] = [
            ("letters timestamp", body.encode(), {**good, "X-Slack-Request-Timestamp": "abc"}),
            ("huge timestamp", body.encode(), {**good, "X-Slack-Request-Timestamp": "9" * 40}),
            ("latin-1 timestamp", body.encode(), {**good, "X-Slack-Request-Timestamp": b"\xb9"}),
            ("latin-1 signature", body.encode(), {**good, "X-Slack-Signature": b"v0=\xe9"}),
            ("non-UTF-8 body", b"\xff\xfe" + body.encode(), signed_headers(body)),
            ("payload not JSON", b"payload=%7Bnot", signed_headers("payload=%7Bnot")),
            (
                "JSON list",
                b"[1, 2]",
                signed_headers("[1, 2]", content_type="application/json"),
            ),
            (
                "deep JSON",
                nested.encode(),
                signed_headers(nested, content_type="application/json"),
            ),
            ("huge body", b"x" * (2 * 1024 * 1024), signed_headers("x")),
        ]
        with captured_logs(level="DEBUG") as stream:
            answers = {
                name: await stack.http.post(stack.url, content=raw, headers=headers)
                for name, raw, headers in cases
            }
        statuses = {name: answer.status_code for name, answer in answers.items()}
        assert all(400 <= status < 500 for status in statuses.values()), statuses
        ok = await post_signed(stack.http, stack.url, body)
        assert ok.status_code == 200  # the door still works
    log = stream.getvalue()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


# --------------------------------------------------------------------------- DEBUG logging


async def test_debug_log_of_commands_buttons_and_events_holds_nothing_sensitive(
    engine: Engine,
) -> None:
    with captured_logs(level="DEBUG") as stream:
        async with d1_stack(engine) as (sandbox, stack):
            _shipped_card(sandbox, "card-1")
            personal = await stack.ask("status card-1")
            assert "ADA LOVELACE" in json.dumps(personal)  # the agent did get the personal view
            value = actions.encode_value(actions.ActionValue("card-1"))
            for action in (actions.REFRESH, actions.SHARE, actions.SUBSCRIBE):
                expected = len(stack.slack.responses) + 1
                await stack.press(action, value, channel_id="C5")
                await stack.reply(expected)
            # a forged request: Bolt logs the unverified body of a bad signature at INFO
            url = stack.slack.response_url()
            forged = command_body(f"status 4111+1111+1111+1111 {PAN}", response_url=url)
            refused = await post_signed(stack.http, stack.url, forged, secret="wrong")
            assert refused.status_code == 401
            event = {
                "team_id": TEAM_ID,
                "type": "event_callback",
                "authorizations": [{"team_id": TEAM_ID, "user_id": "UD1BOT", "is_bot": True}],
                "event": {"type": "app_home_opened", "user": "U1", "tab": "home"},
            }
            await post_signed(stack.http, stack.url, json.dumps(event))
            await wait_for(lambda: stack.slack.calls_to("views.publish"), message="App Home")
    log = stream.getvalue()
    assert "Invalid request signature" in log
    # the libraries did log requests and answers, at DEBUG, and lost their payloads
    assert "Sending a request" in log and PAYLOAD_DROPPED in log
    for secret in (
        PAN,
        "4111+1111+1111+1111",
        "ADA LOVELACE",
        "Analytical",
        "Londinium",
        "N1 9GU",
        "xoxb-test",
        SIGNING_SECRET,
        "/response/",  # the stand-in's response URLs
        "response_url=http",
    ):
        assert secret not in log, secret
