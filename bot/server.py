"""The ASGI application: Slack's door, D1's door, health and metrics, and background work.

`create_app` is the composition root for the HTTP side; each feature package contributes its
routes and background tasks from the shared `Runtime`. Every request gets a correlation id (the
caller's `x-correlation-id` or `x-request-id` when well formed, else a new one), set in
`bot.logs.correlation_id` while it is served and returned in the `x-correlation-id` header, and
one access log line: method, path (never the query string), status and duration (probes and
scrapes at DEBUG unless they fail).

`GET /healthz` (liveness: the process and its tasks run) and `GET /readyz` (readiness: the
database, Slack, D1 and delivery) are `bot.ops.readiness`'s, each answering 503 with the
reasons in words. `GET /metrics` refreshes the outbox gauges from the database and the
`d1bot_ready{check}` gauges at scrape time, so they are right whichever replica sent the
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import metrics
from bot.intake import routes as intake
from bot.logs import correlation_id
from bot.ops.readiness import Readiness, liveness
from bot.runtime import Runtime
from bot.slack import transport as slack_transport
from storage.repositories import health as health_repo

log = logging.getLogger(__name__)
access_log = logging.getLogger("d1bot.access")


def collect_routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route of the product, from the packages that own them."""
    return [
        *intake.routes(runtime),
        *slack_transport.routes(runtime),
        *ops_routes(runtime),
    ]


def _freeze_startup_objects() -> None:
    """Move everything alive after startup (modules, models, metadata: most of the heap) out of
    the garbage collector's sight. They live as long as the process; without this every full
    collection walks them all again, a stall of tens of milliseconds under load (measured:
    80 ms each on the intake benchmark). Once per process: later apps (tests) add little."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def create_app(runtime: Runtime, *, run_background: bool = True) -> Starlette:
    """The ASGI app for `runtime`; background tasks start and stop with it."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        started = []
        try:
            if run_background:
                for task in runtime.background:
                    await task.start()
                    started.append(task)
                    log.info("started %s", task.name)
            _freeze_startup_objects()
            yield
        finally:
            for task in reversed(started):
                try:
                    await task.stop()
                except Exception:  # a failing stop must not block the others
                    log.exception("stopping %s failed", task.name)

    app = Starlette(
        routes=collect_routes(runtime),
        lifespan=lifespan,
        middleware=[Middleware(CorrelationMiddleware)],
    )
    app.state.runtime = runtime
    return app


# --------------------------------------------------------------------------- middleware


# D1's own correlation id pattern; anything else from outside is replaced, not logged.
_VALID_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HEADERS = (b"x-correlation-id", b"x-request-id")
# Probes and scrapes: logged at DEBUG (unless they fail) so they do not drown the real traffic.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# D1's notifications arrive by the hundred a second and are counted in the metrics: the ones it
# sends well are logged at DEBUG, the refused and failed ones at INFO.
QUIET_PREFIXES = ("/notifications/",)

Scope = dict[str, Any]
Message = dict[str, Any]


# A random prefix per process and a counter: unique across replicas and restarts, without a
# call for random bytes (a system call, and a wait for the GIL, on every request).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def new_correlation_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


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
            self._log_access(scope, status, started)
            correlation_id.reset(token)

    def _log_access(self, scope: Scope, status: int, started: float) -> None:
        path = scope.get("path", "")
        quiet = (path in self.quiet_paths and status < 500) or (
            status < 400 and path.startswith(QUIET_PREFIXES)
        )
        level = logging.DEBUG if quiet else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        duration_ms = (time.perf_counter() - started) * 1000
        client = scope.get("client")
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


# --------------------------------------------------------------------------- health and metrics


async def refresh_outbox_gauges(runtime: Runtime) -> None:
    """Set the outbox depth and oldest-pending age from the database (best effort)."""
    try:
        backlog = await asyncio.to_thread(health_repo.outbox_backlog, engine=runtime.engine)
    except Exception:
        log.warning("could not read the outbox backlog for /metrics", exc_info=True)
        return
    metrics.OUTBOX_DEPTH.set(backlog.pending)
    metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds(runtime.clock()))


def ops_routes(runtime: Runtime) -> list[BaseRoute]:
    readiness = Readiness(runtime)

    async def healthz(_request: Request) -> Response:
        ok, body = liveness(runtime)
        if not ok:
            log.warning("liveness failing: %s", "; ".join(body["reasons"]))
        return JSONResponse(body, status_code=200 if ok else 503)

    async def readyz(_request: Request) -> Response:
        ok, body = await readiness.report()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        await refresh_outbox_gauges(runtime)
        await readiness.report()  # d1bot_ready{check}
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
