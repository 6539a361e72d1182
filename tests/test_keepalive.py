"""The outbox's keep-alive HTTP client over real sockets on loopback: the Slack stand-in under
both of its servers, small scripted servers for what Slack's side can do wrong, and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.dev.localslack import LocalSlack
from bot.http1 import ProtocolError
from bot.keepalive import KeepAliveClient
from bot.outbox_http import SlackHttp
from tests.pki import write_pki
from tests.servers import wait_for

TOKEN = {"Authorization": "Bearer xoxb-test"}
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _body(channel: str, text: str = "hello") -> bytes:
    return json.dumps({"channel": channel, "text": text}).encode()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def _server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """A scripted server on loopback; yields its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}/api/"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await server.wait_closed()


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
async def test_posts_to_the_stand_in_reuse_one_connection(server: str) -> None:
    async with LocalSlack(server=server) as slack:
        client = KeepAliveClient(slack.base_url)
        try:
            for i in range(20):
                answer = await client.post_json("chat.postMessage", _body("C1", f"m{i}"), TOKEN)
                assert answer.status == 200 and json.loads(answer.body)["ok"] is True
            assert client.connections_opened == 1
            # Concurrent posts open what they need, then the pool serves them again.
            answers = await asyncio.gather(
                *(client.post_json("chat.postMessage", _body(f"C{i}"), TOKEN) for i in range(8))
            )
            opened = client.connections_opened
            assert 1 <= opened <= 8 and all(a.status == 200 for a in answers)
            await asyncio.gather(
                *(client.post_json("chat.postMessage", _body(f"C{i}"), TOKEN) for i in range(8))
            )
            assert client.connections_opened == opened
        finally:
            await client.close()
    texts = [c.body["text"] for c in slack.calls_to("chat.postMessage")[:20]]
    assert texts == [f"m{i}" for i in range(20)]


async def test_a_server_that_says_close_gets_a_new_connection_next_time() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        await writer.drain()

    async with _server(handler) as url:
        client = KeepAliveClient(url)
        for _ in range(3):
            assert (await client.post_json("m", b"{}", TOKEN)).body == b'{"ok":true}'
        assert client.connections_opened == 3
        await client.close()


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()
        answered.set()  # then close, as a server's keep-alive timeout would

    async with _server(handler) as url:
        client = KeepAliveClient(url)
        await client.post_json("m", b"{}", TOKEN)
        await wait_for(lambda: all(c.closed for c in client._idle), timeout=5)
        assert (await client.post_json("m", b"{}", TOKEN)).status == 200
        assert client.connections_opened == 2
        await client.close()


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.Event().wait()  # never answers

    async with _server(handler) as url:
        client = KeepAliveClient(url, timeout=0.3)
        with pytest.raises(TimeoutError):
            await client.post_json("m", b"{}", TOKEN)
        assert not client._idle and not client._all
        await client.close()


async def test_a_connection_closed_before_the_answer_is_a_connection_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{")
        await writer.drain()

    async with _server(handler) as url:
        client = KeepAliveClient(url)
        with pytest.raises(ConnectionError):
            await client.post_json("m", b"{}", TOKEN)
        assert not client._all
        await client.close()


async def test_garbage_from_the_server_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.Event().wait()

    async with _server(handler) as url:
        client = KeepAliveClient(url)
        with pytest.raises(ProtocolError):
            await client.post_json("m", b"{}", TOKEN)
        await client.close()


async def test_the_request_is_what_slack_expects(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(OK)
        await writer.drain()

    async with _server(handler) as url:
        client = KeepAliveClient(url)
        await client.post_json("chat.postMessage", _body("C1", "héllo"), TOKEN)
        await client.close()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/chat.postMessage HTTP/1.1"
    assert b"Authorization: Bearer xoxb-test" in lines
    assert b"Content-Type: application/json; charset=utf-8" in lines
    assert json.loads(body) == {"channel": "C1", "text": "héllo"}


async def test_tls_verifies_the_server(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki["server_cert"], pki["server_key"])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(OK)
            await writer.drain()

    async with _server(handler, server_context) as url:
        trusting = ssl.create_default_context(cafile=str(pki["ca"]))
        client = KeepAliveClient(url, ssl_context=trusting)
        for _ in range(3):
            assert (await client.post_json("m", b"{}", TOKEN)).status == 200
        assert client.connections_opened == 1
        await client.close()

        stranger = KeepAliveClient(url)  # the system's CAs do not know our test CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await stranger.post_json("m", b"{}", TOKEN)
        await stranger.close()


async def test_slack_calls_through_a_proxy_keep_to_the_clients_session() -> None:
    """A proxy is the aiohttp session's business: the keep-alive path is not used then."""
    direct = SlackHttp(AsyncWebClient(token="xoxb-1", base_url="http://127.0.0.1:9/api/"))
    proxied = SlackHttp(
        AsyncWebClient(token="xoxb-1", base_url="http://127.0.0.1:9/api/", proxy="http://p:3128")
    )
    assert direct._posts is not None and proxied._posts is None
    await direct.close()
