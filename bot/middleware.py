"""ASGI middleware: a correlation id for every request and one access log line per request.

The id comes from the caller's `x-correlation-id` (or `x-request-id`) when it is well formed,
else a new one is made; it is set in `bot.logs.correlation_id` for the whole request (so every
record logged while serving it carries it), and returned in the `x-correlation-id` header.
The access line has the method, the path (never the query string), status and duration;
probes and scrapes are logged at DEBUG.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from bot.logs import correlation_id

access_log = logging.getLogger("d1bot.access")

# D1's own correlation id pattern; anything else from outside is replaced, not logged.
_VALID_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HEADERS = (b"x-correlation-id", b"x-request-id")
# Probes and scrapes: logged at DEBUG (unless they fail) so they do not drown the real traffic.
QUIET_PATHS = frozenset({"/healthz", "/metrics"})

Scope = dict[str, Any]
Message = dict[str, Any]


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def correlation_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id when it is acceptable, else a new one."""
    found = dict(headers)
    for name in _HEADERS:
        raw = found.get(name)
        if raw is None:
            continue
        value = raw.decode("latin-1").strip()
        if _VALID_ID.match(value):
            return value
    return new_correlation_id()


class CorrelationMiddleware:
    """Pure ASGI (no body buffering, streaming-safe)."""

    def __init__(self, app: Any, *, quiet_paths: frozenset[str] = QUIET_PATHS) -> None:
        self.app = app
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = correlation_id_from(scope.get("headers") or [])
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k != b"x-correlation-id"
                ]
                headers.append((b"x-correlation-id", cid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            duration_ms = (time.perf_counter() - started) * 1000
            client = scope.get("client")
            level = logging.DEBUG if path in self.quiet_paths and status < 500 else logging.INFO
            access_log.log(
                level,
                "%s %s %d %.1fms",
                scope.get("method", "-"),
                path,
                status,
                duration_ms,
                extra={
                    "http_method": scope.get("method", "-"),
                    "http_path": path,
                    "http_status": status,
                    "duration_ms": round(duration_ms, 1),
                    "client": client[0] if client else None,
                },
            )
            correlation_id.reset(token)


__all__ = ["CorrelationMiddleware", "correlation_id_from", "new_correlation_id"]
