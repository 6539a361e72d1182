"""The composed services of one server process, built once in the composition root.

Each feature module receives the `Runtime` and takes what it needs from it: nothing reads the
environment or builds an engine at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from bot.settings import Settings

if TYPE_CHECKING:
    from d1.client import D1Client

Clock = Callable[[], datetime]
BackgroundStart = Callable[[], Awaitable[None]]
BackgroundStop = Callable[[], Awaitable[None]]

# The SDK logs whole request and answer bodies (card data) at DEBUG when its logger's own level
# allows it: its logger stays at INFO whatever LOG_LEVEL says.
_SLACK_SDK_LOG = logging.getLogger("d1bot.slack_sdk")
_SLACK_SDK_LOG.setLevel(logging.INFO)
SLACK_TIMEOUT_SECONDS = 30


def utc_clock() -> datetime:
    return datetime.now(timezone.utc)


def instance_name() -> str:
    """A name for this process in claims and leases: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def slack_client_from(settings: Settings) -> AsyncWebClient | None:
    """The bot's Slack Web API client (`SLACK_BOT_TOKEN`, `SLACK_API_URL`); None without a
    token. No SDK retries: the outbox owns retries (an SDK retry after a lost answer could post
    a message twice), and an interactive caller is better told at once."""
    if settings.slack_bot_token is None:
        return None
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[],
        logger=_SLACK_SDK_LOG,
    )


async def nothing_to_start() -> None:
    """The start of a background task that only needs stopping (a client to close)."""


@dataclass
class BackgroundTask:
    """Something the server runs beside the HTTP routes (outbox worker, scheduler)."""

    name: str
    start: BackgroundStart
    stop: BackgroundStop
    is_healthy: Callable[[], bool] = lambda: True


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock = utc_clock
    instance: str = field(default_factory=instance_name)
    d1_client: D1Client | None = None  # when D1 is configured
    slack_client: AsyncWebClient | None = None  # shared by Bolt, the outbox and the jobs
    background: list[BackgroundTask] = field(default_factory=list)
    # Set when the outbox has new work, so the worker wakes at once instead of polling.
    outbox_wakeup: asyncio.Event | None = None
    # Called with a card id when intake sees a gap in a card's history (reconciliation asks D1).
    gap_listeners: list[Callable[[str], None]] = field(default_factory=list)
    # Called when a channel's digest schedule changed (the scheduler reloads its schedules).
    schedule_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Readiness checks the packages add (`GET /readyz`): each returns why not, or None.
    readiness_checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)

    def report_gap(self, card_id: str) -> None:
        for listener in self.gap_listeners:
            listener(card_id)

    def report_schedule_change(self) -> None:
        for listener in self.schedule_listeners:
            listener()

    def wake_outbox(self) -> None:
        if self.outbox_wakeup is not None:
            self.outbox_wakeup.set()
