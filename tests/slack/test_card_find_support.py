"""Helpers of the find tests: a Slack stack that also takes D1's notifications, and a
notification posted to it over real HTTP."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.engine import Engine

from tests.d1_fixtures import make_client, running_sandbox
from tests.slack.test_slack_app import SlackStack, slack_stack

ISSUER = "issuer-001"
NOTIFY = {
    "d1_issuer_id": ISSUER,
    "d1_notify_client_id": "d1-client",
    "d1_notify_client_secret": "s3cret-for-tests-only",
    "d1_notify_token": "static-token-for-tests",
}
_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def find_stack(engine: Engine, **settings: Any) -> AsyncIterator[SlackStack]:
    async with slack_stack(engine, **NOTIFY, **settings) as stack:
        yield stack


@contextlib.asynccontextmanager
async def find_d1_stack(engine: Engine) -> AsyncIterator[tuple[Any, SlackStack]]:
    """`find_stack` with the D1 sandbox behind the bot's D1 client."""
    async with running_sandbox() as (sandbox, base_url):
        client = make_client(base_url, sandbox, max_retries=0, timeout=3.0)
        try:
            async with slack_stack(engine, d1_client=client, **NOTIFY) as stack:
                yield sandbox, stack
        finally:
            await client.aclose()


async def notify(
    stack: SlackStack,
    card_id: str,
    *,
    request_id: str | None = None,
    tracking: str | None = None,
    status: str = "CARD_SHIPPED",
    op_id: str | None = None,
) -> None:
    """One PRODUCE notification for `card_id` through D1's door; 204 expected."""
    details: dict[str, Any] = {"status": status, "productionSite": "PARIS"}
    if request_id:
        details["issuerRequestId"] = request_id
    if tracking:
        details["shipment"] = {
            "carrier": "ups",
            "trackingNumber": tracking,
            "status": "IN_TRANSIT",
            "lastUpdatedAt": "2024-06-01T11:00:00Z",
        }
    op = {
        "operationId": op_id or f"op-{next(_ids)}",
        "operation": "PRODUCE",
        "status": "PENDING",
        "cardId": card_id,
        "issuerId": ISSUER,
        "startTime": "2024-06-01T10:00:00Z",
        "timestamp": f"2024-06-01T10:{next(_ids) % 60:02d}:00Z",
        "details": details,
    }
    base = stack.url.removesuffix("/slack/events")
    response = await stack.http.post(
        f"{base}/notifications/d1/v2/issuers/{ISSUER}/cards",
        json={"operations": [op]},
        headers={"Authorization": f"Bearer {NOTIFY['d1_notify_token']}"},
    )
    assert response.status_code == 204, response.text
