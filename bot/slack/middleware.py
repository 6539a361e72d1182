"""Bolt listener middleware in front of `/card` and its buttons, so that each listener only does
its own work: ack at once, refuse who may not use the bot here, decode a button's value.

A refusal (or a garbled button) is answered privately and audited in the background, after the
ack: only the access lookup itself runs before Slack gets its answer, and that lookup is
bounded (bot/slack/access.py) so the ack stays within Slack's 3 seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_bolt.response import BoltResponse

from bot.render import views
from bot.slack.access import AccessControl
from bot.slack.auditing import INVALID, Invoker
from bot.slack.payloads import BUTTON, INVOKER, action_value, invoker, invoker_of, reply_privately
from bot.slack.services import CardService

log = logging.getLogger(__name__)

BAD_BUTTON = "That button is out of date; run `/card status &lt;cardId&gt;` again."
Next = Callable[[], Awaitable[None]]
Middleware = Callable[..., Awaitable[BoltResponse | None]]


class Gate:
    """Builds the middleware of each gated listener; `action` names it in the audit log."""

    def __init__(self, service: CardService, access: AccessControl, workspace: str) -> None:
        self.service = service
        self.access = access
        self.workspace = workspace
        self._answering: set[asyncio.Task[None]] = set()

    def command(self, action: str) -> list[Middleware]:
        return [self._access_gate(action)]

    def button(self, action: str) -> list[Middleware]:
        return [self._access_gate(action), self._button_value(action)]

    def _access_gate(self, action: str) -> Middleware:
        async def access_gate(
            ack: AsyncAck,
            body: dict[str, Any],
            context: AsyncBoltContext,
            respond: AsyncRespond,
            next_: Next,
        ) -> BoltResponse | None:
            acked = await ack()
            who = invoker(body, self.workspace)
            context[INVOKER] = who
            reason = await self.access.refusal(user_id=who.user_id, channel_id=who.channel_id)
            if reason is None:
                await next_()
                return None
            self._answer_later(self._refuse(who, action, reason, respond))
            return acked  # next_() not called: the listener does not run

        return access_gate

    def _button_value(self, action: str) -> Middleware:
        async def button_value(
            body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond, next_: Next
        ) -> BoltResponse | None:
            value = action_value(body)
            if value is not None:
                context[BUTTON] = value
                await next_()
                return None
            self._answer_later(self._bad_button(invoker_of(context), action, respond))
            return context.ack.response

        return button_value

    async def _refuse(self, who: Invoker, action: str, reason: str, respond: AsyncRespond) -> None:
        await reply_privately(
            respond, await self.service.refused(who, action=action, reason=reason)
        )

    async def _bad_button(self, who: Invoker, action: str, respond: AsyncRespond) -> None:
        await self.service.auditor.audit(who, action=action, outcome=INVALID)
        await reply_privately(respond, views.error_reply(BAD_BUTTON))

    def _answer_later(self, answer: Coroutine[Any, Any, None]) -> None:
        """Run `answer` after the ack; a reference is kept until it is done."""
        task = asyncio.create_task(answer)
        self._answering.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._answering.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error(
                "answering a refused request failed: %s", type(error).__name__, exc_info=error
            )
