"""`GET /healthz` (liveness) and `GET /readyz` (readiness) over real HTTP: a real database, the
Slack stand-in answering `auth.test` to the real slack_sdk client, the outbox worker pausing
all delivery when Slack refuses the token; `d1bot_ready{check}` in `/metrics`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from bot.delivery.worker import install
from bot.dev.localslack import LocalSlack
from bot.main import wire_clients
from bot.runtime import Runtime
from bot.server import create_app
from bot.settings import load_settings
from storage.db import make_engine
from storage.migrate import head_revision
from storage.repositories import pauses
from tests.d1_fixtures import TEST_KEYS
from tests.delivery.outbox_support import WORKSPACE, follow, produce, record
from tests.servers import serve_asgi, wait_for

D1_COMPLETE = {
    "d1_api_url": "http://127.0.0.1:9/banking/v1",
    "d1_auth_url": "http://127.0.0.1:9/authz/v1",
    "d1_issuer_id": TEST_KEYS.issuer_id,
    "d1_key_id": TEST_KEYS.key_id,
    "d1_private_key": TEST_KEYS.private_key_pem,
    "d1_notify_token": "notify-token",
}


def _runtime(engine: Engine, slack: LocalSlack | None, **settings: Any) -> Runtime:
    values: dict[str, Any] = {"d1bot_workspace_id": WORKSPACE, **settings}
    if slack is not None:
        values.update(slack_api_url=slack.base_url)
        values.setdefault("slack_bot_token", "xoxb-test")
    runtime = Runtime(settings=load_settings(**values), engine=engine)
    wire_clients(runtime)
    return runtime


def _ready_samples(text: str) -> dict[str, float]:
    return {
        sample.labels["check"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "d1bot_ready"
        for sample in family.samples
    }


async def test_readyz_lists_every_failed_check_until_all_pass(tmp_path: Path) -> None:
    bare = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    sqlite3.connect(tmp_path / "bare.db").close()
    runtime = _runtime(bare, None)
    async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
        live = await http.get(f"{base}/healthz")
        ready = await http.get(f"{base}/readyz")
        scraped = await http.get(f"{base}/metrics")
    assert live.status_code == 200  # alive: restarting would fix none of it
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unready"
    assert body["failed"] == [
        {
            "check": "database",
            "reason": f"database schema at nothing, not {head_revision()}: run `d1bot migrate`",
        },
        {"check": "slack", "reason": "SLACK_BOT_TOKEN is not set"},
        {
            "check": "d1",
            "reason": "not set: D1_ISSUER_ID, D1_KEY_ID, D1_PRIVATE_KEY, "
            "D1_NOTIFY_CLIENT_ID/D1_NOTIFY_CLIENT_SECRET or D1_NOTIFY_TOKEN",
        },
    ]
    assert _ready_samples(scraped.text) == {"database": 0, "slack": 0, "d1": 0}
    bare.dispose()


async def test_readyz_is_ready_when_every_check_passes(any_engine: Engine) -> None:
    async with LocalSlack(token_prefix="xoxb-") as slack:
        runtime = _runtime(any_engine, slack, **D1_COMPLETE)
        install(runtime)
        async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
            first = await http.get(f"{base}/readyz")
            again = await http.get(f"{base}/readyz")
            scraped = await http.get(f"{base}/metrics")
        auth_tests = len(slack.calls_to("auth.test"))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == {
        "status": "ready",
        "checks": {"database": "ok", "slack": "ok", "d1": "ok", "delivery": "ok"},
    }
    assert auth_tests == 1  # cached: probes do not call Slack each time
    assert _ready_samples(scraped.text) == {"database": 1, "slack": 1, "d1": 1, "delivery": 1}


async def test_readyz_names_a_token_slack_refuses(engine: Engine) -> None:
    async with LocalSlack(token_prefix="xoxb-good") as slack:
        runtime = _runtime(engine, slack, slack_bot_token="xoxb-revoked", **D1_COMPLETE)
        async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
            ready = await http.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == [
        {"check": "slack", "reason": "Slack auth.test refused the token (invalid_auth)"}
    ]
    assert "xoxb-revoked" not in ready.text


async def test_healthz_stays_up_when_the_database_is_away(tmp_path: Path) -> None:
    missing = make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'd1bot.db'}")
    runtime = _runtime(missing, None, **D1_COMPLETE)
    async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
        live = await http.get(f"{base}/healthz")
        ready = await http.get(f"{base}/readyz")
    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["failed"][0] == {
        "check": "database",
        "reason": "database unreachable (OperationalError)",
    }
    assert str(tmp_path) not in ready.text  # driver details stay in the log
    missing.dispose()


async def test_delivery_paused_app_wide_is_unready_a_paused_channel_is_not(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with LocalSlack(token_prefix="xoxb-") as slack:
        runtime = _runtime(engine, slack, d1bot_channel_rate_per_second=100.0, **D1_COMPLETE)
        install(runtime, auth_check_seconds=0.2, poll_seconds=0.05)
        pauses.pause_channel(
            engine,
            workspace_id=WORKSPACE,
            channel_id="C9",
            reason="is_archived",
            now=datetime.now(timezone.utc),
        )
        async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:

            async def failed() -> list[str]:
                answer = await http.get(f"{base}/readyz")
                return [f["check"] for f in answer.json().get("failed", [])]

            assert await failed() == []  # a paused channel leaves the app ready
            slack.fail_next("chat.postMessage", error="token_revoked")
            slack.fail_next("auth.test", error="token_revoked", count=2)
            record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
            runtime.wake_outbox()
            await wait_for(lambda: failed_contains(failed, "delivery"), message="delivery paused")
            live = await http.get(f"{base}/healthz")
            assert live.status_code == 200  # paused, not dead
            await wait_for(lambda: failed_lacks(failed, "delivery"), message="delivery resumed")


async def failed_contains(failed: Any, name: str) -> bool:
    return name in await failed()


async def failed_lacks(failed: Any, name: str) -> bool:
    return name not in await failed()


def test_serve_refuses_invalid_settings_with_the_check_messages(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "D1", "LOG_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        LOG_LEVEL="LOUD",
        SQLITE_SYNCHRONOUS="SOMETIMES",
        SLACK_BOT_TOKEN="xoxb-1-2-refused",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "settings: ERROR: LOG_LEVEL is invalid: Input should be" in done.stderr
    assert "settings: ERROR: SQLITE_SYNCHRONOUS is invalid: Input should be" in done.stderr
    assert "not starting: fix the settings above" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "serve.db").exists()


def test_serve_stops_in_two_lines_when_the_database_cannot_be_migrated(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "D1", "LOG_"))}
    env.update(DATABASE_URL="postgresql://d1bot:db-password@127.0.0.1:1/d1bot")
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "migration failed (OperationalError): `d1bot migrate --verbose` shows why" in done.stderr
    assert "the database could not be migrated (exit status 1)" in done.stderr
    assert "Traceback" not in done.stderr and "db-password" not in done.stderr
