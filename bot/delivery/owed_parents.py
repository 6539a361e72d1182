"""Parent updates the workspace budget postponed: stored in `threads` (a due time), so that a
restart or another replica still brings each parent to its card's state, and made each second
as far as the budget allows. `OwedParents` is a part of `bot.delivery.kinds.MessageKinds` (and
so of the OutboxWorker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from bot.delivery.slack_calls import SlackCalls
from bot.delivery.slack_errors import DeliveryError
from storage.repositories import cards as cards_repo
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from storage.repositories.claims import ClaimedRow
from storage.tables import CardRecord, ThreadRecord

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


class OwedParents:
    """`update_owed_parents`, run each second by the worker."""

    engine: Engine
    runtime: Runtime
    slack: SlackCalls
    lease: timedelta
    app_paused: str | None

    if TYPE_CHECKING:

        def _parent_update(
            self, row: ClaimedRow, card: CardRecord, parent_ts: str
        ) -> Callable[[], Awaitable[None]] | None: ...

    async def update_owed_parents(self) -> None:
        """The parent updates the budget postponed (stored, so a restart or another replica
        still makes them), longest due first, each rendered from the card's state now: many
        events of one card while the budget was short cost one `chat.update`. Stops when the
        budget has no room soon (an update it postpones again is owed again)."""
        budget = self.slack.budget
        while self.app_paused is None and budget.wait_for("chat.update") <= budget.max_wait:
            now = self.runtime.clock()
            owed = await asyncio.to_thread(
                threads_repo.take_owed_parents,
                self.engine,
                now=now,
                lease_until=now + self.lease,
                limit=1,
            )
            if not owed:
                return
            thread = owed[0]
            card = await asyncio.to_thread(cards_repo.get_card, self.engine, card_id=thread.card_id)
            update = None
            if card is not None:
                row = _owed_row(thread, now)
                update = self._parent_update(row, card, thread.parent_ts)
            try:
                if update is not None:
                    await update()
            except DeliveryError as failure:  # best effort: the card's next event corrects it
                log.info("a postponed parent update failed: %s", failure.error)
            assert thread.id is not None and thread.parent_update_due_at is not None
            await asyncio.to_thread(
                threads_repo.parent_update_made,
                self.engine,
                thread_id=thread.id,
                leased_until=thread.parent_update_due_at,
            )


def _owed_row(thread: ThreadRecord, now: datetime) -> ClaimedRow:
    """A row standing for the parent update a thread is owed (it has no outbox row of its
    own): its card, in its channel."""
    return ClaimedRow(
        id=0, workspace_id=thread.workspace_id, channel_id=thread.channel_id,
        kind=repo.KIND_CARD_EVENT, card_id=thread.card_id, event_id=None, subscription_id=None,
        thread_key=None, payload=None, state="pending", attempts=0, next_attempt_at=now,
        claimed_by=None, claimed_until=None, last_error=None, created_at=now, sent_at=None,
        slack_ts=None,
    )  # fmt: skip


__all__ = ["OwedParents"]
