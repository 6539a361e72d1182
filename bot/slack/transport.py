"""Slack's door: `POST /slack/events` through Bolt's Starlette adapter, and Socket Mode as a
background task when `SLACK_APP_TOKEN` is set.

When Slack is not configured at all, no route is added and a warning is logged, so that
`d1bot serve` still runs for D1 notifications.
"""

from __future__ import annotations

import logging

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.runtime import BackgroundTask, Runtime, slack_client_from
from bot.slack.app import build_bolt_app

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SOCKET_MODE_TASK = "slack-socket-mode"


def socket_mode_task(app: AsyncApp, app_token: str) -> BackgroundTask:
    """Socket Mode (a WebSocket Slack opens to us) for workspaces that cannot expose a URL.
    The handler is built on start: its aiohttp session needs the running loop."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    handlers: list[AsyncSocketModeHandler] = []

    async def start() -> None:
        handler = AsyncSocketModeHandler(app, app_token)
        handlers.append(handler)
        await handler.connect_async()

    async def stop() -> None:
        while handlers:
            await handlers.pop().close_async()

    return BackgroundTask(name=SOCKET_MODE_TASK, start=start, stop=stop)


def routes(runtime: Runtime) -> list[BaseRoute]:
    settings = runtime.settings
    if runtime.slack_client is None:
        runtime.slack_client = slack_client_from(settings)
    secret, app_token = settings.slack_signing_secret, settings.slack_app_token
    if runtime.slack_client is None or (secret is None and app_token is None):
        log.warning(
            "Slack is not configured (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET or "
            "SLACK_APP_TOKEN): no %s route; D1 notifications are still received",
            EVENTS_PATH,
        )
        return []
    app = build_bolt_app(runtime)
    found: list[BaseRoute] = []
    if secret is not None:
        handler = AsyncSlackRequestHandler(app)

        async def slack_events(request: Request) -> Response:
            return await handler.handle(request)

        found.append(Route(EVENTS_PATH, slack_events, methods=["POST"]))
    if app_token is not None and not any(t.name == SOCKET_MODE_TASK for t in runtime.background):
        runtime.background.append(socket_mode_task(app, app_token.get_secret_value()))
    return found
