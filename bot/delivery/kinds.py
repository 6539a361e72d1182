"""How each kind of outbox row becomes Slack calls: a card's thread (its parent, posted once
and kept current, and the replies in it), exception alerts, notices, digests and direct
messages. `MessageKinds` is a part of `bot.delivery.worker.OutboxWorker`, which provides the
claiming, pacing, Slack calls and settling it relies on (declared below for the type checker)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from bot.delivery.alerts import AlertSenders
from bot.delivery.owed_parents import OwedParents
from bot.delivery.slack_calls import SlackCalls
from bot.delivery.slack_errors import (
    Deferred,
    MessageRejected,
    ParentGone,
    RateLimited,
    TransientError,
)
from bot.render import messages, slacktext
from storage.repositories import cards as cards_repo
from storage.repositories import channel_settings as settings_repo
from storage.repositories import claims
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from storage.repositories.claims import ClaimedRow
from storage.repositories.threads import ThreadRef
from storage.tables import CardRecord, EventRecord, ThreadRecord

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

Followup = Callable[[], Awaitable[None]]
Sender = Callable[[ClaimedRow], Awaitable[tuple[str, Followup | None]]]
# A write that records a message Slack took is tried this often, this far apart (times attempt).
RECORD_ATTEMPTS = 4
RECORD_RETRY_SECONDS = 0.2
PARENT_MEMORY = 50_000  # parents whose shown state a worker remembers (about 100 bytes each)


@dataclass
class _Round:
    """What the rows of one round need, read in three queries instead of three per row (a
    fan-out round is a thousand rows about the same card and event)."""

    events: dict[int, EventRecord] = field(default_factory=dict)
    cards: dict[str, CardRecord] = field(default_factory=dict)
    threads: dict[tuple[str, str, str], ThreadRef] = field(default_factory=dict)
    rendered: dict[tuple[str, object], dict[str, Any]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    modes: dict[tuple[str, str], str] = field(default_factory=dict)  # (workspace, channel)

    def parent(self, card: CardRecord) -> dict[str, Any]:
        """The card's parent message, rendered once per round (Block Kit models are slow)."""
        key = ("parent", card.card_id)
        if key not in self.rendered:
            self.rendered[key] = messages.card_parent_message(card).as_payload()
        return self.rendered[key]

    def parent_digest(self, card: CardRecord) -> str:
        """The fingerprint of `parent(card)`, computed once per round too."""
        if card.card_id not in self.digests:
            self.digests[card.card_id] = _digest(self.parent(card))
        return self.digests[card.card_id]

    def reply(self, event: EventRecord) -> dict[str, Any]:
        key = ("reply", event.id)
        if key not in self.rendered:
            self.rendered[key] = messages.event_reply_message(event).as_payload()
        return self.rendered[key]

    def flat(self, event: EventRecord) -> dict[str, Any]:
        """The event as a top-level message (a channel whose thread mode is `off`)."""
        key = ("flat", event.id)
        if key not in self.rendered:
            self.rendered[key] = messages.flat_event_message(event).as_payload()
        return self.rendered[key]


class MessageKinds(AlertSenders, OwedParents):
    """The senders of each kind of row; each returns the `ts` to store and an optional
    follow-up (a parent update) to run once the row is marked sent."""

    engine: Engine
    runtime: Runtime
    name: str
    alert_link_wait: timedelta
    _parent_shown: OrderedDict[tuple[str, str], str]

    slack: SlackCalls

    if TYPE_CHECKING:

        def _ctx(self, row: ClaimedRow) -> _Round: ...

    _SENDERS = {
        repo.KIND_CARD_EVENT: "_send_card_event",
        repo.KIND_CARD_NOTICE: "_send_card_notice",
        repo.KIND_EXCEPTION_ALERT: "_send_exception_alert",
        repo.KIND_ALERT_UPDATE: "_send_alert_update",
        repo.KIND_MESSAGE: "_send_message",
        repo.KIND_DIRECT_MESSAGE: "_send_direct_message",
        repo.KIND_CARD_BURST: "_send_card_burst",
    }

    def sender(self, kind: str) -> Sender | None:
        """The sender of rows of `kind` (None for a kind this version does not know)."""
        name = self._SENDERS.get(kind)
        return None if name is None else getattr(self, name)

    # ------------------------------------------------------------------ card threads

    async def thread_mode(self, row: ClaimedRow) -> str:
        """The thread mode of the row's channel (`/card settings threads`), as its round
        prefetched it or read now."""
        key = (row.workspace_id, row.channel_id)
        modes = self._ctx(row).modes
        if key not in modes:
            modes[key] = await asyncio.to_thread(
                settings_repo.thread_mode,
                self.engine,
                workspace_id=row.workspace_id,
                channel_id=row.channel_id,
            )
        return modes[key]

    async def _card_and_thread(self, row: ClaimedRow) -> tuple[CardRecord, str, bool]:
        """The row's card and its parent's ts in the row's channel, posting the parent (from
        the card's current state) when there is none yet. The parent's ts is stored before
        anything else happens. Returns (card, parent ts, whether the parent was just posted)."""
        card = self._ctx(row).cards.get(row.card_id or "") or await asyncio.to_thread(
            self._card_of, row
        )
        if card is None:
            raise MessageRejected("missing_event")
        key = (row.workspace_id, row.channel_id, card.card_id)
        thread: ThreadRef | ThreadRecord | None = self._ctx(row).threads.get(key)
        if thread is None and card.card_id not in self._ctx(row).cards:
            # Not prefetched with the round (a prefetched card without a thread has none):
            # ask the database. Not for every first post of a fan-out: each trip to a thread
            # cost the event loop more than the post's own work.
            thread = await asyncio.to_thread(self._stored_thread, row)
        if thread is not None:
            return card, thread.parent_ts, False
        message = self._ctx(row).parent(card)
        parent_ts = await self.slack.post(row.channel_id, message)
        await self.record_sent(
            threads_repo.save_thread,
            workspace_id=row.workspace_id,
            channel_id=row.channel_id,
            card_id=card.card_id,
            parent_ts=parent_ts,
            now=self.runtime.clock(),
        )
        self._remember_parent(row.channel_id, parent_ts, self._ctx(row).parent_digest(card))
        return card, parent_ts, True

    async def _post_in_thread(
        self, row: ClaimedRow, message: dict[str, Any], parent_ts: str, *, broadcast: bool
    ) -> tuple[str, bool]:
        """Post `message` in the card's thread; when its parent was deleted in Slack, post a
        new parent from the card's current state and continue the thread under it (no retry
        burned). Returns the reply's ts and whether a new parent was posted."""
        try:
            ts = await self.slack.post(
                row.channel_id, message, thread_ts=parent_ts, reply_broadcast=broadcast
            )
            return ts, False
        except ParentGone:
            log.info("the parent of %s in %s is gone: a new one", row.card_id, row.channel_id)
        await asyncio.to_thread(self._forget_thread, row)
        _card, parent_ts, _created = await self._card_and_thread(row)
        try:
            ts = await self.slack.post(
                row.channel_id, message, thread_ts=parent_ts, reply_broadcast=broadcast
            )
        except ParentGone as failure:  # deleted again at once: try later, boundedly
            raise TransientError(f"parent_gone: {failure.error}") from None
        return ts, True

    def _forget_thread(self, row: ClaimedRow) -> None:
        self._ctx(row).threads.pop((row.workspace_id, row.channel_id, row.card_id or ""), None)
        threads_repo.forget_thread(
            self.engine,
            workspace_id=row.workspace_id,
            channel_id=row.channel_id,
            card_id=row.card_id or "",
        )

    def _remember_parent(self, channel: str, parent_ts: str, digest: str) -> None:
        self._parent_shown[(channel, parent_ts)] = digest
        self._parent_shown.move_to_end((channel, parent_ts))
        while len(self._parent_shown) > PARENT_MEMORY:
            self._parent_shown.popitem(last=False)

    def _parent_update(self, row: ClaimedRow, card: CardRecord, parent_ts: str) -> Followup | None:
        """The `chat.update` that brings the parent to the card's current state, or None when
        this worker posted the parent from that very state (the channel's pending events were
        all enqueued before its parent was posted, so it was rendered from the final state)."""
        message = self._ctx(row).parent(card)
        shown = self._parent_shown.get((row.channel_id, parent_ts))
        if shown == self._ctx(row).parent_digest(card):
            return None

        async def update() -> None:
            try:
                await self.slack.call(
                    "chat.update",
                    channel=row.channel_id,
                    ts=parent_ts,
                    **slacktext.message_payload(message["text"], message["blocks"]),
                )
            except ParentGone:  # deleted in Slack: a new parent, the thread continues there
                await asyncio.to_thread(self._forget_thread, row)
                await self._card_and_thread(row)
                return
            except (Deferred, RateLimited):  # owed: later, one update carries the latest
                try:
                    await self.record_sent(
                        threads_repo.owe_parent_update,
                        workspace_id=row.workspace_id,
                        channel_id=row.channel_id,
                        card_id=row.card_id or "",
                        now=self.runtime.clock(),
                    )
                except Exception:  # the row itself was delivered: its settling goes on
                    log.warning(
                        "a postponed parent update could not be recorded"
                        " (the card's next event updates the parent)",
                        exc_info=True,
                    )
                return
            # Only a parent just posted is remembered: after an update the next event of the
            # card updates it again (rows of one channel can be claimed by other replicas).
            self._parent_shown.pop((row.channel_id, parent_ts), None)

        return update

    # ------------------------------------------------------------------ kinds

    def _card_of(self, row: ClaimedRow) -> CardRecord | None:
        card = self._ctx(row).cards.get(row.card_id or "")
        return card or cards_repo.get_card(self.engine, card_id=row.card_id or "")

    def _stored_thread(self, row: ClaimedRow) -> ThreadRecord | None:
        """The row's thread as stored, for a row whose round did not prefetch its card."""
        return threads_repo.get_thread(
            self.engine,
            workspace_id=row.workspace_id,
            channel_id=row.channel_id,
            card_id=row.card_id or "",
        )

    async def _send_card_event(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        event = self._ctx(row).events.get(row.event_id or 0) or await asyncio.to_thread(
            cards_repo.get_event, self.engine, event_id=row.event_id or 0
        )
        if event is None:
            raise MessageRejected("missing_event")
        mode = await self.thread_mode(row)
        if mode == settings_repo.THREADS_OFF:  # one message per update, no parent to keep
            return await self.slack.post(row.channel_id, self._ctx(row).flat(event)), None
        card, parent_ts, created = await self._card_and_thread(row)
        reply = self._ctx(row).reply(event)
        broadcast = event.is_exception and mode == settings_repo.THREADS_ON
        ts, renewed = await self._post_in_thread(row, reply, parent_ts, broadcast=broadcast)
        return ts, None if created or renewed else self._parent_update(row, card, parent_ts)

    async def _send_card_notice(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        """A notice in the card's thread, also shown in the channel unless its mode is `quiet`
        (and on its own in a channel whose mode is `off`)."""
        mode = await self.thread_mode(row)
        if mode == settings_repo.THREADS_OFF:
            return await self.slack.post(row.channel_id, row.payload or {}), None
        _card, parent_ts, _created = await self._card_and_thread(row)
        broadcast = mode == settings_repo.THREADS_ON
        ts, _renewed = await self._post_in_thread(
            row, row.payload or {}, parent_ts, broadcast=broadcast
        )
        return ts, None

    async def _send_message(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        """A message with optional replies in its thread; progress is saved after each post."""
        payload = dict(row.payload or {})
        main_ts = row.slack_ts
        if main_ts is None:
            main_ts = await self.slack.post(row.channel_id, payload)
            await self._save_progress(row, slack_ts=main_ts)
            row.slack_ts = main_ts
        replies: Sequence[dict[str, Any]] = payload.get("thread") or []
        done = int(payload.get("_replies_posted") or 0)
        for reply in replies[done:]:
            await self.slack.post(row.channel_id, reply, thread_ts=main_ts)
            done += 1
            payload["_replies_posted"] = done
            await self._save_progress(row, payload=dict(payload))
        return main_ts, None

    async def _send_card_burst(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        """One summary of many cards, rendered from their states now."""
        card_ids = [str(c) for c in (row.payload or {}).get("card_ids") or []]
        found = await asyncio.to_thread(cards_repo.cards_by_ids, self.engine, card_ids=card_ids)
        message = messages.burst_summary_message(list(found.values()))
        return await self.slack.post(row.channel_id, message.as_payload()), None

    async def record_sent(self, write: Callable[..., Any], **values: Any) -> Any:
        """A database write after Slack took a message, tried again briefly before giving up:
        giving up means the message is posted again later."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await asyncio.to_thread(write, self.engine, **values)
            except Exception:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("recording a sent message failed (attempt %d)", attempt, exc_info=True)
                await asyncio.sleep(RECORD_RETRY_SECONDS * attempt)
        raise AssertionError("unreachable")

    async def _save_progress(
        self, row: ClaimedRow, *, slack_ts: str | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        await self.record_sent(
            claims.save_progress,
            row_id=_id(row),
            worker=self.name,
            slack_ts=slack_ts,
            payload=payload,
        )

    async def _send_direct_message(self, row: ClaimedRow) -> tuple[str, Followup | None]:
        """The app has no Messages tab, so it sends no direct messages: a row of this kind
        (queued by an older version) is a dead letter, never a call Slack would refuse."""
        raise MessageRejected("direct_messages_disabled")


def _id(row: ClaimedRow) -> int:
    assert row.id is not None
    return row.id


def _digest(message: dict[str, Any]) -> str:
    """A short fingerprint of a rendered message (to tell whether a parent needs updating)."""
    encoded = json.dumps(message, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(encoded.encode(), digest_size=16).hexdigest()


__all__ = ["PARENT_MEMORY", "Followup", "MessageKinds", "Sender"]
