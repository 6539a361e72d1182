"""The Acknowledge button of an exception alert: the first agent to press it owns the alert,
and the alert itself is updated so the whole channel sees who took it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.render import slacktext, views
from bot.render.messages import alert_acknowledged_message
from bot.runtime import Runtime
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from storage.repositories import audit
from storage.repositories.cards import get_card, get_event
from storage.tables import AlertAckRecord

_THREAD_LINK = re.compile(r"<(https?://[^|>]+)\|Card thread>")


def _thread_link(blocks: list[dict[str, Any]]) -> str | None:
    """The "Card thread" link an alert carries, so its acknowledged variant keeps it."""
    match = _THREAD_LINK.search(json.dumps(blocks))
    return html.unescape(match.group(1)) if match else None


class AlertAcks:
    """Records acknowledgements of alerts (first one wins) and rewrites the alert."""

    def __init__(self, runtime: Runtime, auditor: Auditor) -> None:
        self.runtime = runtime
        self.auditor = auditor

    async def acknowledge(
        self,
        who: Invoker,
        *,
        card_id: str,
        event_id: int,
        original_blocks: list[dict[str, Any]],
        update: Callable[[views.Reply], Awaitable[None]],
    ) -> views.Reply:
        """Record the acknowledgement and `update` the alert with its acknowledged variant."""

        async def work() -> views.Reply:
            result = await in_thread(
                self.runtime.engine,
                audit.acknowledge_alert,
                event_id=event_id,
                card_id=card_id,
                acked_by=who.user_id,
                at=self.runtime.clock(),
            )
            if not result.created:
                by = result.ack.acked_by
                raise Outcome(
                    "already_acknowledged",
                    views.message_reply(f"Already acknowledged by {slacktext.user(by)}."),
                )
            await update(await self._acknowledged_alert(result.ack, original_blocks))
            return views.message_reply("You acknowledged this alert.", emoji="white_check_mark")

        return await self.auditor.audited(who, "button_ack", card_id, work)

    async def _acknowledged_alert(
        self, ack: AlertAckRecord, original_blocks: list[dict[str, Any]]
    ) -> views.Reply:
        """bot/render/messages.py's acknowledged alert when card and event are known; else the
        original blocks without buttons, plus who acknowledged."""
        engine = self.runtime.engine
        card = await in_thread(engine, get_card, card_id=ack.card_id)
        event = await in_thread(engine, get_event, event_id=ack.event_id)
        if card is not None and event is not None:
            message = alert_acknowledged_message(
                card,
                event,
                acked_by=ack.acked_by,
                acked_at=ack.acked_at,
                thread_link=_thread_link(original_blocks),
            )
            return views.Reply(text=message.text, blocks=list(message.blocks))
        blocks = views.acknowledged_blocks(original_blocks, user_id=ack.acked_by)
        return views.Reply(text=f"Acknowledged by {slacktext.user(ack.acked_by)}", blocks=blocks)
