"""Slack Web API calls of the delivery worker, straight over one aiohttp session.

At a thousand posts a second the SDK's own bookkeeping per call (argument conversion, logging,
response wrapping) cost about as much as the HTTP exchange itself; the worker needs none of it:
it sends JSON with the bot token and reads `ok`, `error`, the status and `Retry-After`. The
client's token, base URL, timeout, proxy and TLS settings are used as they are. A client without
a token (one built elsewhere) is called through the SDK instead, with the same answer shape.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# Methods Slack wants as GET with query parameters.
GET_METHODS = frozenset({"chat.getPermalink", "conversations.info"})


class SlackHttp:
    """`request(method, body)` -> (HTTP status, decoded body or None, Retry-After or None)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None  # only when the client has none
        self._headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
        self._timeout = aiohttp.ClientTimeout(total=client.timeout)
        self._urls: dict[str, str] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self.client.session is not None:
            return self.client.session
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=self.client.trust_env_in_session)
        return self._session

    async def request(self, method: str, body: dict[str, Any]) -> tuple[int, Any, str | None]:
        """One call; connection errors and timeouts are raised as they come (aiohttp, OSError,
        TimeoutError). Nothing is retried here: the outbox owns retries."""
        if not self._headers:
            return await self._through_sdk(method, body)
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = urljoin(self.client.base_url, method)
        options: dict[str, Any] = {"headers": self._headers, "timeout": self._timeout}
        if self.client.proxy:
            options["proxy"] = self.client.proxy
        if self.client.ssl is not None:
            options["ssl"] = self.client.ssl
        if method in GET_METHODS:
            call = self._http().get(url, params=body, **options)
        else:
            call = self._http().post(url, json=body, **options)
        async with call as answer:
            try:
                data = await answer.json(content_type=None)
            except ValueError:
                data = None
            if log.isEnabledFor(logging.DEBUG):  # what and how, never the body (card data)
                error = data.get("error") if isinstance(data, dict) else None
                log.debug(
                    "Slack %s answered %s%s", method, answer.status, f" ({error})" if error else ""
                )
            return answer.status, data, answer.headers.get("Retry-After")

    async def _through_sdk(self, method: str, body: dict[str, Any]) -> tuple[int, Any, str | None]:
        try:
            if method in GET_METHODS:
                response = await self.client.api_call(method, http_verb="GET", params=body)
            else:
                response = await self.client.api_call(method, json=body)
        except SlackApiError as exc:
            answer = exc.response
            headers = answer.headers or {}
            return answer.status_code, answer.data, headers.get("Retry-After")
        return response.status_code, response.data, None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["GET_METHODS", "SlackHttp"]
