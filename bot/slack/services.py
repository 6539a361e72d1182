"""What `/card` commands and their buttons do: call D1, change subscriptions, audit, and
answer with a `views.Reply`. No Slack request handling here (that is bot/slack/app.py).

Every public method audits what it did and counts it in `bot.metrics.COMMANDS`; none raises
for a user's mistake or D1's trouble: both become a short sentence. Blocking database work runs
in a thread so the event loop keeps serving Slack's 3-second acks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.metrics import COMMANDS
from bot.render import mrkdwn, views
from bot.runtime import Runtime
from bot.slack import commands as cmd
from d1.errors import MSG_NOT_CONFIGURED, MSG_UNAVAILABLE, D1Error, D1NotFound, D1Unavailable
from d1.models import ProductionStatus, ProductionTrackingRequest, ReturnTrackingRequest
from storage.repositories import audit, subscriptions
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS, AlertAckRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

DIGEST_NOT_AVAILABLE = "The daily digest is not available yet."
SOMETHING_WENT_WRONG = "Something went wrong on my side; it has been logged. Try again in a minute."
# Outcomes written to the audit log and used as metric labels (a bounded set).
OK = "ok"
INVALID = "invalid"
REFUSED_PAN = "refused_pan"
NOT_ALLOWED = "not_allowed"
ERROR = "error"


@dataclass(frozen=True)
class Invoker:
    """Who asked, and where."""

    workspace_id: str
    channel_id: str
    user_id: str


class Outcome(Exception):
    """Ends a handler early with a reply and an audit outcome (not an error of ours)."""

    def __init__(self, outcome: str, reply: views.Reply, detail: str | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reply = reply
        self.detail = detail


_THREAD_LINK = re.compile(r"<(https?://[^|>]+)\|Card thread>")


def _thread_link(blocks: list[dict[str, Any]]) -> str | None:
    """The "Card thread" link an alert carries, so its acknowledged variant keeps it."""
    match = _THREAD_LINK.search(json.dumps(blocks))
    return match.group(1) if match else None


def _d1_outcome(exc: D1Error) -> str:
    return {
        D1NotFound: "d1_not_found",
        D1Unavailable: "d1_unavailable",
    }.get(type(exc), "d1_" + type(exc).__name__.removeprefix("D1").lower())


class CardService:
    """The logic behind `/card` and its buttons, for one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        settings = runtime.settings
        # Past this, the agent hears "D1 is not answering" even if the client still retries.
        self.d1_deadline = settings.d1_timeout_seconds * (settings.d1_max_retries + 1) + 5.0

    # ------------------------------------------------------------------ plumbing

    async def _db(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, self.engine, **kwargs)

    async def audit(
        self,
        who: Invoker,
        *,
        action: str,
        outcome: str,
        card_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Write the audit row and count the command; never fails the reply."""
        COMMANDS.labels(action=action, outcome=outcome).inc()
        try:
            await self._db(
                audit.record,
                action=action,
                outcome=outcome,
                workspace_id=who.workspace_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                card_id=card_id,
                detail=detail,
                at=self.runtime.clock(),
            )
        except Exception:
            log.exception("audit write failed for action %s", action)

    async def _audited(
        self,
        who: Invoker,
        action: str,
        card_id: str | None,
        work: Callable[[], Awaitable[views.Reply]],
    ) -> views.Reply:
        """Run `work`, turning Outcome, D1 errors and our own bugs into replies; audit once."""
        detail = None
        try:
            reply = await work()
            outcome = OK
        except Outcome as early:
            reply, outcome, detail = early.reply, early.outcome, early.detail
        except Exception:
            log.exception("%s failed", action)
            reply, outcome = views.error_reply(SOMETHING_WENT_WRONG), ERROR
        await self.audit(who, action=action, outcome=outcome, card_id=card_id, detail=detail)
        return reply

    async def _d1(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Call the D1 client under a deadline; D1 trouble becomes an Outcome with D1's
        `user_message` (never D1's own error text)."""
        client = self.runtime.d1_client
        if client is None:
            raise Outcome("d1_not_configured", views.error_reply(MSG_NOT_CONFIGURED))
        try:
            return await asyncio.wait_for(call(client), timeout=self.d1_deadline)
        except TimeoutError:
            raise Outcome("d1_unavailable", views.error_reply(MSG_UNAVAILABLE)) from None
        except D1Error as exc:
            log.warning("D1 call failed: %s", exc)
            raise Outcome(_d1_outcome(exc), views.error_reply(exc.user_message)) from None

    async def _status(self, card_id: str) -> ProductionStatus:
        return await self._d1(lambda client: client.production_status(card_id))

    # ------------------------------------------------------------------ the slash command

    async def run_command(self, who: Invoker, text: str) -> views.Reply:
        """Parse and run one `/card ...`; the reply is meant for the asking agent only."""
        try:
            command = cmd.parse_command(text)
        except cmd.CommandError as exc:
            outcome = REFUSED_PAN if exc.pan_refused else INVALID
            # The audit detail is fixed wording: the typed text is never stored.
            await self.audit(who, action="command", outcome=outcome)
            return (
                views.error_reply(exc.reply)
                if not exc.pan_refused
                else views.message_reply(exc.reply)
            )
        name = cmd.command_name(command)
        card_id = cmd.command_card_id(command)
        return await self._audited(who, name, card_id, lambda: self._dispatch(who, command))

    async def _dispatch(self, who: Invoker, command: cmd.Command) -> views.Reply:
        match command:
            case cmd.StatusCommand(card_id=card_id):
                status = await self._status(card_id)
                return views.status_reply(card_id, status, fetched_at=self.runtime.clock())
            case cmd.TrackCommand():
                return await self._track(who, command)
            case cmd.SubscribeCommand(card_id=card_id, filter=filter_):
                return await self._subscribe(who, card_id, filter_)
            case cmd.UnsubscribeCommand(card_id=card_id):
                return await self._unsubscribe(who, card_id)
            case cmd.ListCommand():
                return await self.list_channel(who)
            case cmd.HelpCommand():
                return views.help_reply()
            case _:
                return await self._digest(who, command)

    async def _track(self, who: Invoker, command: cmd.TrackCommand) -> views.Reply:
        await self._d1(lambda client: client.track(command.card_id, command.request))
        result = await self._ensure_subscribed(who, command.card_id)
        kind = command.tracking_type.lower()
        text = (
            f"Asked D1 to track *{mrkdwn.escape(command.card_id)}* ({kind}). "
            "The results will be posted here in the card's thread."
        )
        if result == FILTER_EXCEPTIONS:
            text += " (This channel follows only its exceptions: `/card subscribe "
            text += f"{command.card_id}` to see every result.)"
        return views.message_reply(text, emoji="satellite_antenna")

    async def _ensure_subscribed(self, who: Invoker, card_id: str) -> str:
        """Subscribe the channel unless it already follows the card; its filter."""
        existing = [
            s
            for s in await self._db(
                subscriptions.subscriptions_of_card,
                card_id=card_id,
                workspace_id=who.workspace_id,
            )
            if s.channel_id == who.channel_id
        ]
        if existing:
            return existing[0].filter
        await self._db(
            subscriptions.subscribe,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            card_id=card_id,
            created_by=who.user_id,
            filter=FILTER_ALL,
            now=self.runtime.clock(),
        )
        return FILTER_ALL

    async def _subscribe(self, who: Invoker, card_id: str, filter_: str) -> views.Reply:
        result = await self._db(
            subscriptions.subscribe,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            card_id=card_id,
            created_by=who.user_id,
            filter=filter_,
            now=self.runtime.clock(),
        )
        what = "its exceptions" if filter_ == FILTER_EXCEPTIONS else "every update"
        card = f"*{mrkdwn.escape(card_id)}*"
        if result.outcome == subscriptions.UNCHANGED:
            return views.message_reply(f"This channel already follows {what} of {card}.")
        if result.outcome == subscriptions.UPDATED:
            text = f"This channel now follows {what} of {card}."
        else:
            text = f"Subscribed: this channel will get {what} of {card}, in one thread."
        return views.message_reply(text, emoji="white_check_mark")

    async def _unsubscribe(self, who: Invoker, card_id: str) -> views.Reply:
        removed = await self._db(
            subscriptions.unsubscribe,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            card_id=card_id,
            removed_by=who.user_id,
            reason="unsubscribed with /card unsubscribe",
            now=self.runtime.clock(),
        )
        card = f"*{mrkdwn.escape(card_id)}*"
        if removed is None:
            raise Outcome(
                "not_subscribed", views.message_reply(f"This channel does not follow {card}.")
            )
        return views.message_reply(
            f"Unsubscribed: no more updates about {card} here.", emoji="wave"
        )

    async def list_channel(self, who: Invoker) -> views.Reply:
        rows = await self._db(
            subscriptions.list_for_channel,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
        )
        view_rows = [
            views.ChannelSubscriptionRow(
                card_id=r.subscription.card_id,
                filter=r.subscription.filter,
                created_by=r.subscription.created_by,
                created_at=r.subscription.created_at,
                status=r.status,
                shipment_status=r.shipment_status,
            )
            for r in rows
        ]
        return views.list_reply(view_rows, dead_letters=await self._dead_letters(who.channel_id))

    async def _dead_letters(self, channel_id: str) -> int:
        try:
            from storage.repositories.outbox import count_dead_letters  # the delivery area's
        except ImportError:
            return 0
        return int(await self._db(count_dead_letters, channel_id=channel_id))

    async def _digest(self, who: Invoker, command: cmd.Command) -> views.Reply:
        """Delegates to `bot.scheduled.digest.digest_command` (the digest feature) when present."""
        try:
            from bot.scheduled.digest import digest_command
        except ImportError:
            raise Outcome("not_available", views.message_reply(DIGEST_NOT_AVAILABLE)) from None
        args: list[str] = []
        if isinstance(command, cmd.DigestScheduleCommand):
            args = [command.time_of_day, *([command.timezone] if command.timezone else [])]
        action = {
            cmd.DigestShowCommand: "show",
            cmd.DigestPostCommand: "post",
            cmd.DigestScheduleCommand: "schedule",
            cmd.DigestOffCommand: "off",
        }[type(command)]
        text, blocks, in_channel = await digest_command(
            self.runtime,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            user_id=who.user_id,
            action=action,
            args=args,
        )
        return views.Reply(text=text, blocks=blocks, in_channel=in_channel)

    # ------------------------------------------------------------------ buttons

    async def refresh(self, who: Invoker, card_id: str, *, action: str) -> views.Reply:
        """The personal status view again (Refresh, and Refresh status on alerts)."""

        async def work() -> views.Reply:
            status = await self._status(card_id)
            return views.status_reply(card_id, status, fetched_at=self.runtime.clock())

        return await self._audited(who, action, card_id, work)

    async def subscribe_button(self, who: Invoker, card_id: str) -> views.Reply:
        return await self._audited(
            who, "button_subscribe", card_id, lambda: self._subscribe(who, card_id, FILTER_ALL)
        )

    async def share(
        self, who: Invoker, card_id: str, post: Callable[[views.Reply], Awaitable[None]]
    ) -> views.Reply:
        """Post the card to the channel WITHOUT name or address (`post` does the posting);
        answer the agent privately."""

        async def work() -> views.Reply:
            status = await self._status(card_id)
            shared = views.shared_status_reply(
                card_id, status, fetched_at=self.runtime.clock(), shared_by=who.user_id
            )
            await post(shared)
            return views.message_reply(f"Shared *{mrkdwn.escape(card_id)}* in this channel.")

        return await self._audited(who, "button_share", card_id, work)

    async def acknowledge(
        self,
        who: Invoker,
        *,
        card_id: str,
        event_id: int,
        original_blocks: list[dict[str, Any]],
        update: Callable[[views.Reply], Awaitable[None]],
    ) -> views.Reply:
        """Record the acknowledgement (first one wins) and `update` the alert with its
        acknowledged variant."""

        async def work() -> views.Reply:
            result = await self._db(
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
                    views.message_reply(f"Already acknowledged by <@{by}>."),
                )
            await update(await self._acknowledged_alert(result.ack, original_blocks))
            return views.message_reply("You acknowledged this alert.", emoji="white_check_mark")

        return await self._audited(who, "button_ack", card_id, work)

    async def _acknowledged_alert(
        self, ack: AlertAckRecord, original_blocks: list[dict[str, Any]]
    ) -> views.Reply:
        """bot/render/messages.py's acknowledged alert when card and event are known; else the
        original blocks without buttons, plus who acknowledged."""
        from storage.repositories.cards import get_card, get_event

        card = await self._db(get_card, card_id=ack.card_id)
        event = await self._db(get_event, event_id=ack.event_id)
        if card is not None and event is not None:
            from bot.render.messages import alert_acknowledged_message

            message = alert_acknowledged_message(
                card,
                event,
                acked_by=ack.acked_by,
                acked_at=ack.acked_at,
                thread_link=_thread_link(original_blocks),
            )
            return views.Reply(text=message.text, blocks=list(message.blocks))
        blocks = views.acknowledged_blocks(original_blocks, user_id=ack.acked_by)
        return views.Reply(text=f"Acknowledged by <@{ack.acked_by}>", blocks=blocks)

    async def retrack(self, who: Invoker, card_id: str) -> views.Reply:
        """Re-request tracking from what we know of the card: its production site (and
        RETURN for a returned card). Shipment tracking needs a postal code we never store,
        so for that the agent is shown the command to type."""

        async def work() -> views.Reply:
            from storage.repositories.cards import get_card

            card = await self._db(get_card, card_id=card_id)
            if card is None or not card.production_site:
                example = (
                    f"`/card track {card_id} shipment trackingNumber=... shipmentDate=... "
                    "postalCode=... countryCode=...`"
                )
                raise Outcome(
                    "retrack_unknown_site",
                    views.message_reply(f"I don't know where this card was made. Try {example}"),
                )
            if card.status == "CARD_RETURNED":
                request: Any = ReturnTrackingRequest(production_site=card.production_site)
            else:
                request = ProductionTrackingRequest(production_site=card.production_site)
            track = cmd.TrackCommand(
                card_id=card_id, tracking_type=request.tracking_type, request=request
            )
            return await self._track(who, track)

        return await self._audited(who, "button_retrack", card_id, work)

    async def refused(self, who: Invoker, *, action: str, reason: str) -> views.Reply:
        await self.audit(who, action=action, outcome=NOT_ALLOWED)
        return views.error_reply(reason)
