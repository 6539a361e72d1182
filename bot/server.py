"""The ASGI application: Slack's door, D1's door, health and metrics, and background work.

`create_app` is the composition root for the HTTP side; each feature module contributes its
routes and background tasks from the shared `Runtime`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from bot.middleware import CorrelationMiddleware
from bot.runtime import Runtime

log = logging.getLogger(__name__)


def collect_routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route of the product, from the modules that own them."""
    from bot import ops
    from bot.intake import routes as intake
    from bot.slack import transport as slack_http

    return [
        *intake.routes(runtime),
        *slack_http.routes(runtime),
        *ops.routes(runtime),
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
