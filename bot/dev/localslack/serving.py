"""The stand-in's HTTP side: uvicorn on a loopback socket, and the two routes Slack has for a
bot (`/api/<method>` and a slash command's `/response/<token>`).

Apart from the workspace so that what is answered can be read without the plumbing of how it
travels; the plumbing knows no Slack semantics beyond those two paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.dev.localslack.calls import Answer

# (method, query parameters, raw body, content type, authorization header) -> the answer
ApiEndpoint = Callable[[str, dict[str, str], bytes, str, str], Awaitable[Answer]]
# (token, raw body, content type) -> (HTTP status, plain-text body)
ResponseEndpoint = Callable[[str, bytes, str], tuple[int, str]]


def slack_routes(api: ApiEndpoint, response_url: ResponseEndpoint) -> ASGIApp:
    """The two routes as an ASGI app. A plain dispatch on the path rather than a Starlette
    router with its middleware: at a thousand calls a second (the fan-out benchmark) the
    stand-in's own cost per call must stay well below the bot's."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        verb: str = scope["method"]
        response: Response
        if path.startswith("/api/") and "/" not in path[5:] and path[5:]:
            if verb not in {"GET", "HEAD", "POST"}:
                response = Response("Method Not Allowed", status_code=405)
            else:
                request = Request(scope, receive)
                status, body, headers = await api(
                    path[5:],
                    dict(request.query_params),
                    await request.body(),
                    request.headers.get("content-type", ""),
                    request.headers.get("authorization", ""),
                )
                response = JSONResponse(body, status_code=status, headers=headers)
        elif path.startswith("/response/") and "/" not in path[10:] and path[10:]:
            if verb != "POST":
                response = Response("Method Not Allowed", status_code=405)
            else:
                request = Request(scope, receive)
                status, text = response_url(
                    path[10:], await request.body(), request.headers.get("content-type", "")
                )
                response = Response(text, status_code=status, media_type="text/plain")
        else:
            response = Response("Not Found", status_code=404)
        await response(scope, receive, send)

    return app


class LoopbackServer:
    """uvicorn serving an ASGI app in the running event loop, on a socket bound before it
    starts: with port 0 the OS picks a free port, and the URL is known at once."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> str:
        """Serve, and return the root URL (`http://host:port`) once uvicorn accepts requests."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
        return f"http://{self._host}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None
