"""Shared set-up of the delivery tests: a runtime on a real database, the Slack stand-in, and
D1 operations recorded through the real intake repository (which fans them out to the outbox)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from bot.delivery.worker import OutboxWorker
from bot.dev.localslack import LocalSlack
from bot.runtime import Runtime
from bot.settings import load_settings
from d1.models import Operation
from storage.repositories import outbox as repo
from storage.repositories.intake import IntakeResult, record_operations
from storage.repositories.subscriptions import subscribe
from tests.servers import wait_for

WORKSPACE = "T1"
EXCEPTIONS_CHANNEL = "CEXC"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
CARDHOLDER = "Jane Q. Cardholder"
FULL_PAN = "4111111111111111"


def produce(card_id: str, status: str, minutes: int, *, op_id: str | None = None) -> Operation:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return Operation.model_validate(
        {
            "operationId": op_id or f"op-{card_id}",
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": card_id,
            "startTime": at,
            "endTime": at,
            "details": {"status": status, "productionSite": "site-1"},
        }
    )


def shipment(card_id: str, ship_status: str, minutes: int, *, message: str = "") -> Operation:
    """A tracking-hub shipment update with a `signedBy` name that must never reach a channel."""
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return Operation.model_validate(
        {
            "operationId": f"track-{card_id}",
            "operation": "STANDALONE_TRACKING",
            "status": "SUCCESSFUL",
            "cardId": card_id,
            "startTime": at,
            "timestamp": at,
            "details": {
                "trackingType": "SHIPMENT",
                "status": "CARD_SHIPPED",
                "shipment": {
                    "carrier": "ups",
                    "trackingNumber": "1Z999AA10123456784",
                    "status": ship_status,
                    "message": message or ship_status.lower(),
                    "trackingUrl": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
                    "estimatedDeliveryDate": (T0 + timedelta(days=3)).isoformat(),
                    "lastUpdatedAt": at,
                    "signedBy": CARDHOLDER,
                    "lastCheckpoint": {
                        "checkpointTime": at,
                        "city": "Lyon",
                        "countryName": "France",
                        "message": "Departed facility",
                    },
                },
            },
        }
    )


def record(engine: Engine, *ops: Operation) -> IntakeResult:
    return record_operations(
        engine,
        list(ops),
        received_at=datetime.now(timezone.utc),
        workspace_id=WORKSPACE,
        exceptions_channel=EXCEPTIONS_CHANNEL,
    )


def follow(
    engine: Engine, channel: str, card_id: str, *, exceptions_only: bool = False, by: str = "U1"
) -> None:
    subscribe(
        engine,
        workspace_id=WORKSPACE,
        channel_id=channel,
        card_id=card_id,
        created_by=by,
        filter="exceptions" if exceptions_only else "all",
    )


def make_runtime(engine: Engine, slack: LocalSlack, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "slack_bot_token": "xoxb-test",
        "slack_api_url": slack.base_url,
        "d1bot_exceptions_channel": EXCEPTIONS_CHANNEL,
        "d1bot_workspace_id": WORKSPACE,
        "d1bot_channel_rate_per_second": 100.0,
        "d1bot_workspace_rate_per_minute": 60_000,  # the budget is measured where asked
    }
    values.update(overrides)
    return Runtime(settings=load_settings(**values), engine=engine)


def make_worker(runtime: Runtime, slack: LocalSlack, **options: Any) -> OutboxWorker:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
    options.setdefault("backoff_base", 0.05)
    options.setdefault("backoff_cap", 0.2)
    options.setdefault("poll_seconds", 0.05)
    return OutboxWorker(runtime, client=client, **options)


@contextlib.asynccontextmanager
async def delivery(
    engine: Engine, **overrides: Any
) -> AsyncIterator[tuple[LocalSlack, Runtime, OutboxWorker]]:
    """The Slack stand-in, a runtime on `engine`, and a worker (not started)."""
    async with LocalSlack() as slack:
        runtime = make_runtime(engine, slack, **overrides)
        yield slack, runtime, make_worker(runtime, slack)


async def drain(worker: OutboxWorker, engine: Engine, *, timeout: float = 15.0) -> None:
    """Run the worker until the outbox is empty, including rows deferred for a moment (an
    alert waiting for its card's thread, a backoff), then stop it (finishing what it holds)."""
    await worker.start()
    try:
        await wait_for(
            lambda: repo.pending_count(engine) == 0,
            timeout=timeout,
            message="the outbox to empty",
        )
    finally:
        await worker.stop()


def posted_bodies(slack: LocalSlack) -> list[dict[str, Any]]:
    return [c.body for c in slack.calls if c.method in {"chat.postMessage", "chat.update"}]
