"""The Bolt app, built from the runtime: its Slack client, signing secret and allowlists, with
the listeners of bot/slack/listeners/ attached.

`process_before_response` is off: listeners run after the ack, so a slow D1 never delays
Slack's 3-second limit; each answers through `respond()` (the response_url). Requests from
another workspace are refused first (bot/slack/workspace.py).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.access import AccessControl
from bot.slack.listeners import register_listeners
from bot.slack.services import CardService
from bot.slack.workspace import WorkspaceGate

log = logging.getLogger(__name__)


class _ClientTokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN "will be unused" when it is given a client: we build the
    client from that same token (with SLACK_API_URL), so the warning only misleads operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def build_bolt_app(runtime: Runtime) -> AsyncApp:
    """The Bolt app for `runtime` (its Slack client, signing secret and allowlists)."""
    settings = runtime.settings
    secret = settings.slack_signing_secret
    bolt_log = logging.getLogger("d1bot.slack")
    if not any(isinstance(f, _ClientTokenNotice) for f in bolt_log.filters):
        bolt_log.addFilter(_ClientTokenNotice())
    app = AsyncApp(
        client=runtime.slack_client,
        signing_secret=secret.get_secret_value() if secret is not None else None,
        # Socket Mode alone has no HTTP requests to verify.
        request_verification_enabled=secret is not None,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        logger=bolt_log,
    )
    app.use(WorkspaceGate(settings))  # before any listener: other workspaces get nothing
    access = AccessControl.from_settings(settings, runtime.slack_client)
    register_listeners(app, CardService(runtime), access)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Never a traceback to a user; the log has the kind of request, not its text.
        log.error(
            "unhandled error in a Slack listener (%s): %s",
            body.get("type") or body.get("command"),
            type(error).__name__,
            exc_info=error,
        )

    return app
