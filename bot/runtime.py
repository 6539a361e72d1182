"""The composed services of one server process, built once in the composition root.

Each feature module receives the `Runtime` and takes what it needs from it: nothing reads the
environment or builds an engine at import time.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from bot.settings import Settings

Clock = Callable[[], datetime]
BackgroundStart = Callable[[], Awaitable[None]]
BackgroundStop = Callable[[], Awaitable[None]]


def utc_clock() -> datetime:
    return datetime.now(timezone.utc)


def instance_name() -> str:
    """A name for this process in claims and leases: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    d1_client: Any = None  # d1.client.D1Client, when D1 is configured
    slack_client: Any = None  # slack_sdk.web.async_client.AsyncWebClient
    background: list[BackgroundTask] = field(default_factory=list)
    # Set when the outbox has new work, so the worker wakes at once instead of polling.
    outbox_wakeup: asyncio.Event | None = None
    # Called with a card id when intake sees a gap in a card's history (reconciliation asks D1).
    gap_listeners: list[Callable[[str], None]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def report_gap(self, card_id: str) -> None:
        for listener in self.gap_listeners:
            listener(card_id)

    def wake_outbox(self) -> None:
        if self.outbox_wakeup is not None:
            self.outbox_wakeup.set()
