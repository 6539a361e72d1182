"""Slack Web API calls of the delivery worker, straight over HTTP.

At a thousand posts a second the SDK's own bookkeeping per call (argument conversion, logging,
response wrapping) cost about as much as the HTTP exchange itself; the worker needs none of it:
it sends JSON with the bot token and reads `ok`, `error`, the status and `Retry-After`. POSTs
go over `bot.keepalive` (reused HTTP/1.1 connections, a fraction of aiohttp's CPU per call);
GETs, and every call when the client has a proxy, over the client's aiohttp session. The
client's token, base URL, timeout and TLS context are used as they are. A client without a
token (one built elsewhere) is called through the SDK instead, with the same answer shape.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any
from urllib.parse import urljoin

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.keepalive import KeepAliveClient

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
        self._posts: KeepAliveClient | None = None
        if self._headers and not client.proxy:
            self._headers["User-Agent"] = "d1-slack"
            self._posts = KeepAliveClient(
                client.base_url,
                ssl_context=client.ssl if isinstance(client.ssl, ssl.SSLContext) else None,
                timeout=float(client.timeout),
            )

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
        if self._posts is not None and method not in GET_METHODS:
            return await self._post(method, body)
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
            _log_answer(method, answer.status, data)
            return answer.status, data, answer.headers.get("Retry-After")

    async def _post(self, method: str, body: dict[str, Any]) -> tuple[int, Any, str | None]:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        assert self._posts is not None
        answer = await self._posts.post_json(method, payload, self._headers)
        try:
            data = json.loads(answer.body)
        except ValueError:  # UnicodeDecodeError included
            data = None
        _log_answer(method, answer.status, data)
        return answer.status, data, answer.headers.get("retry-after")

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
        if self._posts is not None:
            await self._posts.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _log_answer(method: str, status: int, data: Any) -> None:
    """One DEBUG line per call: what and how, never the body (card data)."""
    if log.isEnabledFor(logging.DEBUG):
        error = data.get("error") if isinstance(data, dict) else None
        log.debug("Slack %s answered %s%s", method, status, f" ({error})" if error else "")


__all__ = ["GET_METHODS", "SlackHttp"]
