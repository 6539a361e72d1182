"""Only the installed workspace is served: a command, button or event from another team (or
another Enterprise Grid organisation) gets a polite refusal and no data.

The installed workspace is the team `auth.test` names for the bot's token (Bolt calls it once
and keeps the answer), unless `D1BOT_WORKSPACE_ID` is set, which overrides it (the demo and the
tests, whose Slack stand-in has a team id of its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.settings import Settings

log = logging.getLogger(__name__)

FOREIGN_WORKSPACE = "Sorry, this card bot serves only the Slack workspace it is installed in."
Next = Callable[[], Awaitable[BoltResponse]]


def override_team(settings: Settings) -> str | None:
    """`D1BOT_WORKSPACE_ID` when it was set (environment, .env or keyword), else None."""
    if "d1bot_workspace_id" in settings.model_fields_set:
        return settings.d1bot_workspace_id
    return None


def is_foreign(context: AsyncBoltContext, override: str | None) -> bool:
    """Whether the request comes from outside the installed workspace (fail closed: a request
    that names no team is foreign)."""
    installed = context.authorize_result
    expected_team = override or (installed.team_id if installed is not None else None)
    expected_org = installed.enterprise_id if installed is not None else None
    if context.is_enterprise_install:  # org-wide: only our own organisation
        return not (expected_org and context.enterprise_id == expected_org)
    if not context.team_id or context.team_id != expected_team:
        return True
    return bool(expected_org and context.enterprise_id and context.enterprise_id != expected_org)


class WorkspaceGate(AsyncMiddleware):
    """Bolt global middleware: refuses requests from other workspaces before any listener."""

    def __init__(self, settings: Settings) -> None:
        self.override = override_team(settings)
        self._answering: set[asyncio.Task[None]] = set()

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Next
    ) -> BoltResponse:
        context = req.context
        if not is_foreign(context, self.override):
            return await next()
        log.info(
            "refused a Slack request from another workspace (team %s, enterprise %s)",
            context.team_id or "-",
            context.enterprise_id or "-",
        )
        if context.response_url and context.respond is not None:
            # Answered after the ack, privately, like every other refusal.
            task = asyncio.create_task(self._refuse(context.respond))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        return BoltResponse(status=200, body="")

    @staticmethod
    async def _refuse(respond: Any) -> None:
        try:
            await respond(text=FOREIGN_WORKSPACE, response_type="ephemeral", replace_original=False)
        except Exception as exc:  # the refusal is a courtesy: never an error of ours
            log.info("could not answer a foreign workspace's request: %s", type(exc).__name__)


__all__ = ["FOREIGN_WORKSPACE", "WorkspaceGate", "is_foreign", "override_team"]
