"""Slack's door: `POST /slack/events` through Bolt's Starlette adapter, and Socket Mode as a
background task when `SLACK_APP_TOKEN` is set.

When Slack is not configured at all, no route is added and a warning is logged, so that
`d1bot serve` still runs for D1 notifications.

A request Bolt could not even read (a signature or timestamp header that is not ASCII digits
and letters, a body that is not UTF-8 or whose JSON does not parse into an object, a body over
`MAX_BODY_BYTES`) is answered 4xx here, before Bolt: Bolt itself would answer 500 and log an
ERROR traceback. Nothing of such a request is logged but what was wrong with it.
"""

from __future__ import annotations

import logging
import re

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.runtime import BackgroundTask, Runtime, slack_client_from
from bot.slack.app import build_bolt_app

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SOCKET_MODE_TASK = "slack-socket-mode"
MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are far smaller
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-fA-F]{1,128}$")


async def request_problem(request: Request) -> tuple[int, str] | None:
    """(status, reason) when Bolt cannot read this request; None when it can (Bolt then checks
    the signature and the timestamp's age itself)."""
    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    if timestamp is not None and not _TIMESTAMP.match(timestamp):
        return 401, "malformed X-Slack-Request-Timestamp"
    if signature is not None and not _SIGNATURE.match(signature):
        return 401, "malformed X-Slack-Signature"
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return 413, "body too large"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 400, "body is not UTF-8"
    content_type = (request.headers.get("content-type") or "").split(";")[0] or None
    try:
        parsed = parse_body(text, content_type)
    except (ValueError, RecursionError):
        return 400, "body does not parse"
    if not isinstance(parsed, dict):
        return 400, "body is not an object"
    return None


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
            problem = await request_problem(request)
            if problem is not None:
                status, reason = problem
                log.info("refused a Slack request Bolt cannot read: %s", reason)
                return JSONResponse({"error": reason}, status_code=status)
            return await handler.handle(request)

        found.append(Route(EVENTS_PATH, slack_events, methods=["POST"]))
    if app_token is not None and not any(t.name == SOCKET_MODE_TASK for t in runtime.background):
        runtime.background.append(socket_mode_task(app, app_token.get_secret_value()))
    return found
