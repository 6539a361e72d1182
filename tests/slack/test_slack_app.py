"""`/card` end to end: signed requests to `POST /slack/events` on a real server, the real
slack_sdk client talking to the LocalSlack stand-in, a real SQLite file, and (for D1 calls) the
D1 sandbox over real HTTP. Replies are read from what the stand-in's response_url received."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.dev.localslack import LocalSlack
from bot.runtime import Runtime
from bot.server import create_app
from bot.settings import Settings
from storage.repositories import subscriptions
from storage.tables import AuditRecord, SubscriptionRemovalRecord
from tests.servers import serve_asgi, wait_for
from tests.slack_signing import (
    SIGNING_SECRET,
    TEAM_ID,
    action_body,
    command_body,
    post_signed,
)

PAN = "4111111111111111"


@dataclass
class SlackStack:
    """The bot served on loopback, with LocalSlack behind its Slack client."""

    slack: LocalSlack
    runtime: Runtime
    url: str
    http: httpx.AsyncClient

    async def command(
        self, text: str, *, user_id: str = "U1", channel_id: str = "C1"
    ) -> httpx.Response:
        body = command_body(
            text, response_url=self.slack.response_url(), user_id=user_id, channel_id=channel_id
        )
        return await post_signed(self.http, self.url, body)

    async def press(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str = "U1",
        channel_id: str = "C1",
        message: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body = action_body(
            action_id,
            value,
            response_url=self.slack.response_url(),
            user_id=user_id,
            channel_id=channel_id,
            message=message,
        )
        return await post_signed(self.http, self.url, body)

    async def reply(self, number: int = 1, *, timeout: float = 15) -> dict[str, Any]:
        """The `number`-th body posted to a response_url (waits for it)."""
        await wait_for(
            lambda: len(self.slack.responses) >= number,
            timeout=timeout,
            message=f"response #{number}",
        )
        return self.slack.responses[number - 1]

    async def ask(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Run a command and return its reply."""
        expected = len(self.slack.responses) + 1
        response = await self.command(text, **kwargs)
        assert response.status_code == 200, response.text
        return await self.reply(expected)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": SIGNING_SECRET,
        "d1bot_workspace_id": TEAM_ID,  # the stand-in's auth.test names another team
        "d1_timeout_seconds": 2.0,
        "d1_max_retries": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def slack_stack(
    engine: Engine, *, d1_client: Any = None, **settings: Any
) -> AsyncIterator[SlackStack]:
    async with LocalSlack() as slack:  # before the app: Bolt calls auth.test
        runtime = Runtime(
            settings=make_settings(**settings),
            engine=engine,
            d1_client=d1_client,
            slack_client=AsyncWebClient(token="xoxb-test", base_url=slack.base_url),
        )
        async with (
            serve_asgi(create_app(runtime, run_background=False)) as base,
            httpx.AsyncClient(timeout=10) as http,
        ):
            yield SlackStack(slack=slack, runtime=runtime, url=f"{base}/slack/events", http=http)


def audit_rows(engine: Engine) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(session.exec(select(AuditRecord).order_by(AuditRecord.id)).all())


def everything_sent(slack: LocalSlack) -> str:
    return json.dumps([c.body for c in slack.calls]) + json.dumps(slack.responses)


# --------------------------------------------------------------------------- request checks


async def test_bad_signature_and_stale_timestamp_are_401(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        body = command_body("help", response_url=stack.slack.response_url())
        wrong = await post_signed(stack.http, stack.url, body, secret="not-the-secret")
        stale = await post_signed(stack.http, stack.url, body, timestamp=int(time.time()) - 600)
        unsigned = await stack.http.post(stack.url, content=body)
        ok = await post_signed(stack.http, stack.url, body)
        assert (wrong.status_code, stale.status_code, unsigned.status_code) == (401, 401, 401)
        assert ok.status_code == 200
        await stack.reply(1)
        assert len(stack.slack.responses) == 1  # only the signed request was answered


async def test_no_slack_configuration_means_no_route(engine: Engine) -> None:
    runtime = Runtime(
        settings=Settings(_env_file=None),  # type: ignore[call-arg]
        engine=engine,
    )
    async with (
        serve_asgi(create_app(runtime, run_background=False)) as base,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(f"{base}/slack/events", content="x")
    assert response.status_code == 404


# --------------------------------------------------------------------------- commands


async def test_help_lists_every_subcommand(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        reply = await stack.ask("help")
        text = json.dumps(reply)
        for sub in ("status", "track", "subscribe", "unsubscribe", "list", "digest", "help"):
            assert f"/card {sub}" in text
        assert reply["response_type"] == "ephemeral"


def _commands_metric(action: str, outcome: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"action": action, "outcome": outcome}
    return REGISTRY.get_sample_value("d1bot_commands_total", labels) or 0.0


async def test_subscribe_list_unsubscribe(engine: Engine) -> None:
    counted_before = _commands_metric("subscribe", "ok")
    async with slack_stack(engine) as stack:
        first = await stack.ask("subscribe card-1")
        assert "Subscribed" in first["text"]
        again = await stack.ask("subscribe card-1")
        assert "already follows" in again["text"]
        narrowed = await stack.ask("subscribe card-2 exceptions", user_id="U2")
        assert "exceptions" in narrowed["text"]
        other_channel = await stack.ask("subscribe card-3", channel_id="C2")
        assert "Subscribed" in other_channel["text"]

        listed = json.dumps(await stack.ask("list"))
        assert "card-1" in listed and "card-2" in listed and "card-3" not in listed
        assert "<@U1>" in listed and "<@U2>" in listed and "exceptions only" in listed
        assert "no events yet" in listed

        gone = await stack.ask("unsubscribe card-1")
        assert "Unsubscribed" in gone["text"]
        missing = await stack.ask("unsubscribe card-1")
        assert "does not follow" in missing["text"]

    rows = subscriptions.list_for_channel(engine, workspace_id=TEAM_ID, channel_id="C1")
    assert [r.subscription.card_id for r in rows] == ["card-2"]
    assert _commands_metric("subscribe", "ok") - counted_before == 4
    with Session(engine) as session:
        removal = session.exec(select(SubscriptionRemovalRecord)).one()
    assert (removal.card_id, removal.removed_by) == ("card-1", "U1")
    assert "unsubscribe" in removal.reason
    actions = [(a.action, a.card_id, a.outcome) for a in audit_rows(engine)]
    assert ("subscribe", "card-1", "ok") in actions
    assert ("unsubscribe", "card-1", "not_subscribed") in actions
    assert ("list", None, "ok") in actions
    assert all(a.workspace_id == TEAM_ID and a.user_id for a in audit_rows(engine))


async def test_digest_is_not_available_yet_or_answers(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        reply = await stack.ask("digest")
        assert reply["text"]
        assert "Traceback" not in json.dumps(reply)


async def test_bad_command_gets_a_reason_and_help_pointer(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        reply = await stack.ask("status not!a!card")
        assert "not a valid D1 card id" in reply["text"]
        assert "/card help" in reply["text"]
        unknown = await stack.ask("frobnicate")
        assert "/card help" in unknown["text"]
    assert [a.outcome for a in audit_rows(engine)] == ["invalid", "invalid"]


async def test_pan_is_refused_never_echoed_nor_logged(engine: Engine) -> None:
    from tests.logcapture import captured_logs

    with captured_logs(level="DEBUG") as logs:
        async with slack_stack(engine) as stack:
            reply = await stack.ask(f"status {PAN}")
            grouped = await stack.ask("subscribe card-1 4111 1111 1111 1111")
        assert "card number" in reply["text"]
        assert "card number" in grouped["text"]
        for text in (everything_sent(stack.slack), logs.getvalue()):
            assert PAN not in text
            assert "4111 1111 1111 1111" not in text
    rows = audit_rows(engine)
    assert [r.outcome for r in rows] == ["refused_pan", "refused_pan"]
    assert all(r.card_id is None and (r.detail or "") == "" for r in rows)


async def test_channel_allowlist_refuses_other_channels(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_channels="C1,C9") as stack:
        allowed = await stack.ask("subscribe card-1", channel_id="C1")
        refused = await stack.ask("subscribe card-1", channel_id="C2")
        assert "Subscribed" in allowed["text"]
        assert "not enabled in this channel" in refused["text"]
    assert subscriptions.subscriptions_of_card(engine, card_id="card-1")[0].channel_id == "C1"
    assert ("command", "not_allowed") in [(a.action, a.outcome) for a in audit_rows(engine)]


async def test_usergroup_allowlist_checks_membership_through_slack(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_usergroups="S1") as stack:
        stack.slack.set_usergroup("S1", ["U1"])
        allowed = await stack.ask("help", user_id="U1")
        refused = await stack.ask("help", user_id="U2")
        assert "/card status" in json.dumps(allowed)
        assert "not in a user group" in refused["text"]
        # membership is cached briefly: one lookup for both commands
        assert len(stack.slack.calls_to("usergroups.users.list")) == 1


async def test_unknown_usergroup_fails_closed(engine: Engine) -> None:
    async with slack_stack(engine, d1bot_allowed_usergroups="S404") as stack:
        refused = await stack.ask("help")
        assert "check your user groups" in refused["text"]


async def test_d1_not_configured_is_a_sentence(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        reply = await stack.ask("status card-1")
        assert "D1 is not configured" in reply["text"]
    assert audit_rows(engine)[0].outcome == "d1_not_configured"


async def test_subscribe_button(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        response = await stack.press("card_subscribe", "card-9", channel_id="C5")
        assert response.status_code == 200
        reply = await stack.reply(1)
        assert "Subscribed" in reply["text"]
        assert reply["replace_original"] is False
    assert subscriptions.subscriptions_of_card(engine, card_id="card-9")[0].channel_id == "C5"
    assert audit_rows(engine)[0].action == "button_subscribe"


async def test_garbled_button_value_is_refused_politely(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        await stack.press("card_refresh", "")
        reply = await stack.reply(1)
        assert "out of date" in reply["text"]


@pytest.mark.parametrize("text", ["", "   "])
async def test_empty_command_is_help(engine: Engine, text: str) -> None:
    async with slack_stack(engine) as stack:
        reply = await stack.ask(text)
        assert "/card status" in json.dumps(reply)


async def test_digest_subcommands_reach_the_digest_feature(engine: Engine) -> None:
    from storage.tables import DigestScheduleRecord

    async with slack_stack(engine) as stack:
        shown = await stack.ask("digest")
        assert shown["response_type"] == "ephemeral"
        scheduled = await stack.ask("digest schedule 9:15 Europe/Paris")
        assert "Traceback" not in json.dumps(scheduled)
        with Session(engine) as session:
            row = session.exec(select(DigestScheduleRecord)).one()
        assert (row.channel_id, row.time_of_day, row.timezone) == ("C1", "09:15", "Europe/Paris")
        await stack.ask("digest off")
        with Session(engine) as session:
            assert not session.exec(select(DigestScheduleRecord)).one().enabled
    assert [a.action for a in audit_rows(engine)] == ["digest", "digest_schedule", "digest_off"]


def test_build_runtime_wires_slack_and_d1_clients(tmp_path: Any) -> None:
    from bot.main import build_runtime
    from d1.client import D1Client
    from tests.d1_fixtures import sandbox_env

    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        slack_api_url="http://127.0.0.1:9/api",
        **sandbox_env("http://127.0.0.1:9"),
    )
    runtime = build_runtime(settings)
    assert isinstance(runtime.d1_client, D1Client)
    assert runtime.slack_client.base_url == "http://127.0.0.1:9/api/"
    assert "d1-client" in [t.name for t in runtime.background]
    bare = build_runtime(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    assert bare.d1_client is None and bare.slack_client is None
    runtime.engine.dispose()
    bare.engine.dispose()


def test_socket_mode_runs_as_a_background_task(engine: Engine) -> None:
    from bot.server import collect_routes

    runtime = Runtime(settings=make_settings(slack_app_token="xapp-test"), engine=engine)
    paths = [getattr(r, "path", None) for r in collect_routes(runtime)]
    assert "/slack/events" in paths
    assert "slack-socket-mode" in [t.name for t in runtime.background]


async def test_app_home_is_published_and_url_verification_answers(engine: Engine) -> None:
    async with slack_stack(engine) as stack:
        event = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "api_app_id": "A0TEST",
            "type": "event_callback",
            "event_id": "Ev1",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "UD1BOT", "is_bot": True}],
            "event": {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"},
        }
        response = await post_signed(stack.http, stack.url, json.dumps(event))
        assert response.status_code == 200
        await wait_for(lambda: stack.slack.calls_to("views.publish"), message="views.publish")
        published = stack.slack.calls_to("views.publish")[0].body
        assert published["user_id"] == "U1"
        assert "/card status" in json.dumps(published["view"])

        challenge = json.dumps({"type": "url_verification", "challenge": "abc", "token": "t"})
        answered = await post_signed(stack.http, stack.url, challenge)
        assert answered.status_code == 200 and "abc" in answered.text


def test_manifest_declares_command_events_interactivity_and_least_privilege() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "manifest.yml").read_text()
    assert "command: /card" in text
    assert text.count("https://YOUR-HOST/slack/events") == 3  # command, events, interactivity
    assert "home_tab_enabled: true" in text and "app_home_opened" in text
    scopes = text.split("bot:\n", 1)[1].split("settings:", 1)[0]
    names = [line.split("#")[0].strip(" -") for line in scopes.splitlines() if line.strip()]
    assert set(names) == {
        "commands",
        "chat:write",
        "usergroups:read",
        "channels:read",
        "groups:read",
        "channels:join",
    }
    assert not [n for n in names if "history" in n]
