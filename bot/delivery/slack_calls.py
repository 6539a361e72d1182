"""One Slack Web API call of the delivery worker: paced per channel and by the workspace budget,
bounded in flight, its answer classified by the Slack error table and counted in the metrics.

Calls go through the shared `slack_sdk` `AsyncWebClient` (built without SDK retries: retries
are the worker's, so that a lost answer is never followed by a second post behind its back).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery.budget import CHAT_UPDATE_PER_MINUTE, WorkspaceBudget
from bot.delivery.pacing import ChannelPacer
from bot.delivery.slack_errors import (
    RateLimited,
    TransientError,
    classify_slack_error,
    failed_answer,
    outcome_label,
)
from bot.metrics import SLACK_CALLS
from bot.render import slacktext

log = logging.getLogger(__name__)

# Methods Slack wants as GET with query parameters.
GET_METHODS = frozenset({"chat.getPermalink", "conversations.info"})


class SlackCalls:
    """`call` and `post` for the worker (see the module docstring)."""

    def __init__(
        self,
        client: AsyncWebClient | None,
        *,
        rate_per_second: float,
        max_pacing_wait: float,
        concurrency: int,
        workspace_rate_per_minute: int = 0,
        update_rate_per_minute: int = CHAT_UPDATE_PER_MINUTE,
    ) -> None:
        self._client = client
        self.pacer = ChannelPacer(rate_per_second, max_wait=max_pacing_wait)
        self.budget = WorkspaceBudget(
            workspace_rate_per_minute,
            max_wait=max_pacing_wait,
            update_per_minute=update_rate_per_minute,
        )
        # The bound is on requests in flight, not on rows: a row waiting for its channel's
        # turn must not hold a slot that another channel could use.
        self._slots = asyncio.Semaphore(concurrency)
        self._own_session: aiohttp.ClientSession | None = None

    @property
    def client(self) -> AsyncWebClient:
        if self._client is None:
            raise RuntimeError("no Slack client: SLACK_BOT_TOKEN is not set")
        return self._client

    async def open(self) -> None:
        """A connection pool for these calls, unless the client already has one."""
        if self._client is not None and self._client.session is None:
            timeout = aiohttp.ClientTimeout(total=self._client.timeout)
            self._own_session = self._client.session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._own_session is not None:
            await self._own_session.close()
            if self._client is not None and self._client.session is self._own_session:
                self._client.session = None
            self._own_session = None

    async def call(self, method: str, *, paced_channel: str | None = None, **body: Any) -> Any:
        """One call; failures raised as `DeliveryError`s. Posts to a channel wait for the
        channel's turn first, then every call for the workspace budget (and for the end of a
        rate-limit pause of its method)."""
        if paced_channel is not None:
            await self.pacer.acquire(paced_channel)
        try:
            await self.budget.acquire(method)
        except BaseException:
            if paced_channel is not None:
                self.pacer.done(paced_channel)
            raise
        try:
            status, data, retry_after = await self._send(method, body, paced_channel)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            SLACK_CALLS.labels(method=method, outcome="connection_error").inc()
            raise TransientError(f"connection: {type(exc).__name__}") from None
        error = str(data.get("error")) if isinstance(data, dict) and data.get("error") else None
        log.debug("Slack %s answered %s%s", method, status, f" ({error})" if error else "")
        if status == 200 and isinstance(data, dict) and data.get("ok"):
            SLACK_CALLS.labels(method=method, outcome="ok").inc()
            return data
        failure = classify_slack_error(
            status=status, error=error, retry_after=retry_after, method=method
        )
        SLACK_CALLS.labels(method=method, outcome=outcome_label(failure)).inc()
        if isinstance(failure, RateLimited):
            self.budget.pause(method, failure.retry_after)  # for the whole app
        raise failure

    async def post(self, channel: str, message: dict[str, Any], **extra: Any) -> str:
        """Post to a channel (paced); returns the message's `ts`. Links never unfurl: a
        carrier's tracking page would become a large preview under every update."""
        body = {
            "channel": channel,
            # Within Slack's limits, PANs masked, even for a row an older version rendered.
            **slacktext.message_payload(message.get("text") or "", message.get("blocks") or []),
            "unfurl_links": False,
            "unfurl_media": False,
            **extra,
        }
        response = await self.call("chat.postMessage", paced_channel=channel, **body)
        return str(response["ts"])

    async def _send(
        self, method: str, body: dict[str, Any], paced: str | None
    ) -> tuple[int, Any, str | None]:
        """(HTTP status, answer body, Retry-After) of one call through the SDK client."""
        try:
            async with self._slots:
                # A rate limit answered while this call queued for a slot holds it too.
                await self.budget.wait_out_pause(method)
                if method in GET_METHODS:
                    answer = await self.client.api_call(method, http_verb="GET", params=body)
                else:
                    answer = await self.client.api_call(method, json=body)
                return answer.status_code, answer.data, None
        except SlackApiError as exc:
            return failed_answer(exc)
        finally:
            if paced is not None:
                self.pacer.done(paced)


__all__ = ["GET_METHODS", "SlackCalls"]
