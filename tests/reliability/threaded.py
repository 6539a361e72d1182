"""An app (and LocalSlack) served on loopback from a background thread's event loop, for
synchronous property tests (hypothesis drives many examples against one running server)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from bot.dev.localslack import LocalSlack
from tests.servers import serve_asgi


@contextlib.contextmanager
def served_in_thread(make_app: Callable[[LocalSlack], Any]) -> Iterator[tuple[str, LocalSlack]]:
    """Start LocalSlack, build the app with it, serve both; yields (app URL, LocalSlack)."""
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with LocalSlack() as slack, serve_asgi(make_app(slack)) as url:
                ready.update(url=url, slack=slack)
                started.set()
                await stop.wait()
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        if not started.wait(30) or "error" in ready:
            raise RuntimeError(f"server did not start: {ready.get('error')!r}")
        yield ready["url"], ready["slack"]
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


__all__ = ["served_in_thread"]
