"""Keep-alive HTTP/1.1 connections to one origin, for the outbox's JSON POSTs to Slack.

Why not aiohttp here: at a thousand posts a second, aiohttp's client spent most of the worker's
CPU per call on its own machinery (request and response objects, payload wrappers, timers,
the connector), about 60% of what the whole worker did per message. This client does only
what a JSON POST needs: one request per connection at a time, connections kept open and
reused (most recently used first), closed after `keepalive` seconds idle, on any error, on a
timeout, or when the server says `Connection: close`. TLS (https) verifies the server with the
system's CA bundle unless an `ssl.SSLContext` is given. Nothing is retried: a request that
failed may or may not have reached the server, and the outbox decides what to do.
The HTTP framing is `bot.http1` (pure, tested on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque

from bot.http1 import Origin, ProtocolError, Response, ResponseReader, post_head

DEFAULT_KEEPALIVE_SECONDS = 15.0
DEFAULT_MAX_IDLE = 100


class _Connection(asyncio.Protocol):
    """One connection: carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reader: ResponseReader | None = None
        self._answer: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reader is None or self._answer is None or self._answer.done():
            self._fail(ProtocolError("bytes arrived that no request asked for"))
            return
        try:
            response = self._reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if response is not None:
            self._reader = None
            self._answer.set_result(response)

    def eof_received(self) -> bool:
        self.closed = True
        if self._reader is not None and self._answer is not None and not self._answer.done():
            try:
                self._answer.set_result(self._reader.end())
            except ProtocolError as exc:
                self._answer.set_exception(exc)
        self._reader = None
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(
                ConnectionResetError("the connection closed before the answer was complete")
            )

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, head: bytes, body: bytes) -> Response:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._reader = ResponseReader()
        self.transport.writelines((head, body))
        return await self._answer


class KeepAliveClient:
    """`post_json(path, body, headers)` against one origin over reused connections."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        keepalive: float = DEFAULT_KEEPALIVE_SECONDS,
        max_idle: int = DEFAULT_MAX_IDLE,
    ) -> None:
        self.origin = Origin.of(base_url)
        self.timeout = timeout
        self.keepalive = keepalive
        self.max_idle = max_idle
        self._ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self.connections_opened = 0

    async def post_json(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST `body` (JSON bytes) to `<base_url><path>`. Raises OSError (connection errors,
        `ProtocolError`) or TimeoutError; the connection is then closed, never reused."""
        head = post_head(self.origin, path, length=len(body), headers=headers)
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                connection = self._take_idle() or await self._connect()
                response = await connection.exchange(head, body)
        except BaseException:
            if connection is not None:
                self._discard(connection)
            raise
        if response.keep_alive and not connection.closed:
            self._give_back(connection)
        else:
            self._discard(connection)
        return response

    def _take_idle(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection
            self._discard(connection)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(
            _Connection,
            self.origin.host,
            self.origin.port,
            ssl=self._ssl,
            server_hostname=self.origin.host if self._ssl is not None else None,
        )
        self._all.add(connection)
        self.connections_opened += 1
        return connection

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)
        while len(self._idle) > self.max_idle:
            self._discard(self._idle.popleft())

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    async def close(self) -> None:
        for connection in list(self._all):
            self._discard(connection)
        await asyncio.sleep(0)  # let the transports run their close callbacks


__all__ = ["KeepAliveClient"]
