"""Exception alerts in Slack: the alert posted for an exception (with its case's owner and age),
and the alert rewritten in place when its case changes (`alert_update` rows, written by triage
and by a new failure that reopens a resolved case, which also gets a note in the thread, or
beside the alert in a channel whose thread mode is `off`). An alert is always a message of its
own, whatever the channel's thread mode.
`AlertSenders` is a part of `bot.delivery.kinds.MessageKinds` (and so of the OutboxWorker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from bot.delivery.slack_calls import SlackCalls
from bot.delivery.slack_errors import Deferred, DeliveryError, MessageRejected, ParentGone
from bot.render import messages, slacktext, triage
from storage.repositories import cards as cards_repo
from storage.repositories import cases as cases_repo
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from storage.repositories.channel_settings import THREADS_OFF
from storage.repositories.claims import ClaimedRow
from storage.tables import CardRecord, EventRecord, ExceptionCaseRecord

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

Followup = Callable[[], Awaitable[None]]


class AlertSenders:
    """The senders of `exception_alert` and `alert_update` rows."""

    engine: Engine
    runtime: Runtime
    alert_link_wait: timedelta
    slack: SlackCalls

    if TYPE_CHECKING:

        def _ctx(self, row: ClaimedRow) -> Any: ...  # kinds._Round (prefetched rows)

        def _card_of(self, row: ClaimedRow) -> CardRecord | None: ...

        async def record_sent(self, write: Callable[..., Any], **values: Any) -> Any: ...

        async def thread_mode(self, row: ClaimedRow) -> str: ...

    async def _alert_parts(
        self, row: ClaimedRow
    ) -> tuple[CardRecord, EventRecord, ExceptionCaseRecord | None]:
        event = self._ctx(row).events.get(row.event_id or 0) or await asyncio.to_thread(
            cards_repo.get_event, self.engine, event_id=row.event_id or 0
        )
        card = await asyncio.to_thread(self._card_of, row)
        if event is None or card is None:
            raise MessageRejected("missing_event")
        case = await asyncio.to_thread(cases_repo.get_case, self.engine, card_id=card.card_id)
        return card, event, case

    async def _send_exception_alert(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        card, event, case = await self._alert_parts(row)
        link = await self._thread_link(row, card.card_id)
        message = messages.exception_alert_message(
            card, event, thread_link=link, state=triage.alert_state(case), now=self.runtime.clock()
        )
        ts = await self.slack.post(row.channel_id, message.as_payload())
        await self.record_sent(
            cases_repo.alert_posted,
            card_id=card.card_id,
            channel_id=row.channel_id,
            ts=ts,
            event_id=event.id,
        )
        return ts, None

    async def _send_alert_update(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        """The alert rendered from its case now (`chat.update`), and the row's note, if any,
        in its thread. An alert deleted in Slack is not posted again."""
        payload = row.payload or {}
        ts = str(payload.get("ts") or "")
        if not ts:
            raise MessageRejected("missing_alert")
        card, event, case = await self._alert_parts(row)
        link = await self._thread_link(row, card.card_id, wait=False)
        message = messages.exception_alert_message(
            card, event, thread_link=link, state=triage.alert_state(case), now=self.runtime.clock()
        ).as_payload()
        try:
            await self.slack.call(
                "chat.update",
                channel=row.channel_id,
                ts=ts,
                text=message["text"],
                blocks=message["blocks"],
            )
        except ParentGone:
            log.info("an alert to update is gone from %s", row.channel_id)
            return ts, None
        if payload.get("note") == cases_repo.NOTE_REOPENED:
            text, blocks = triage.reopened_note(card.card_id)
            note = slacktext.message_payload(text, blocks)
            # In a channel whose thread mode is `off` the note is a message of its own.
            flat = await self.thread_mode(row) == THREADS_OFF
            where = {} if flat else {"thread_ts": ts}
            try:
                await self.slack.post(row.channel_id, note, **where)
            except ParentGone:
                log.info("a reopened alert is gone from %s: no note", row.channel_id)
        return ts, None

    async def _thread_link(self, row: ClaimedRow, card_id: str, *, wait: bool = True) -> str | None:
        """A permalink to the card's thread in a subscribed channel; waits (boundedly) for a
        card event still on its way to create one."""
        threads = await asyncio.to_thread(
            threads_repo.threads_of_card,
            self.engine,
            card_id=card_id,
            workspace_id=row.workspace_id,
        )
        threads = [t for t in threads if t.channel_id != row.channel_id]
        if not threads:
            young = self.runtime.clock() - row.created_at < self.alert_link_wait
            if (
                wait
                and young
                and await asyncio.to_thread(
                    repo.has_pending_card_event,
                    self.engine,
                    card_id=card_id,
                    before_id=row.id or 0,
                    workspace_id=row.workspace_id,
                )
            ):
                raise Deferred(1.0, "waiting_for_thread")
            return None
        thread = threads[0]
        try:
            answer = await self.slack.call(
                "chat.getPermalink", channel=thread.channel_id, message_ts=thread.parent_ts
            )
        except DeliveryError as failure:
            log.info("no permalink for the thread of an alert: %s", failure.error)
            return None
        return str(answer.get("permalink") or "") or None


__all__ = ["AlertSenders"]
