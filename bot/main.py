"""Composition root: build the runtime from settings, and the `serve`, `migrate` and `check`
commands."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.runtime import Runtime
from bot.settings import Settings, load_settings
from storage.db import make_engine

log = logging.getLogger("d1bot")


def build_runtime(settings: Settings) -> Runtime:
    """Everything one server process needs, wired together."""
    engine = make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    runtime = Runtime(settings=settings, engine=engine)
    runtime.outbox_wakeup = asyncio.Event()
    return runtime


def report(settings: Settings) -> tuple[str, bool]:
    """The settings report as text, and whether it holds errors."""
    problems = settings.problems()
    if not problems:
        return "Settings look complete.", False
    lines = [str(p) for p in problems]
    return "\n".join(lines), any(p.level == "error" for p in problems)


def check() -> int:
    text, has_errors = report(load_settings())
    print(text)
    return 1 if has_errors else 0


def migrate() -> int:
    from storage.migrate import upgrade

    settings = load_settings()
    upgrade(make_engine(settings.database_url))
    print("Database is up to date.")
    return 0


def serve(*, host: str | None, port: int | None, migrate: bool = True) -> int:
    import uvicorn

    from bot.server import create_app

    settings = load_settings()
    logging.basicConfig(level=settings.log_level)
    text, _ = report(settings)
    for line in text.splitlines():
        log.warning("%s", line)
    runtime = build_runtime(settings)
    if migrate and settings.migrate_on_start:
        from storage.migrate import upgrade

        upgrade(runtime.engine)
    app = create_app(runtime)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(serve(host=None, port=None))
