"""Routes of this area (filled in by its feature)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from bot.runtime import Runtime


def routes(runtime: Runtime) -> list[BaseRoute]:
    return []
