"""What D1 says about a card, and asking D1 to track one: `/card status`, `/card track`, and
the Refresh, Share and Re-track buttons.

D1 is called under a deadline, so a slow D1 costs the agent one clear sentence rather than a
silent wait; D1's own error text never reaches Slack (only its `user_message`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.render import mrkdwn, views
from bot.runtime import Runtime
from bot.slack import commands as cmd
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from bot.slack.channel_subscriptions import ChannelSubscriptions
from d1.errors import MSG_NOT_CONFIGURED, MSG_UNAVAILABLE, D1Error, D1NotFound, D1Unavailable
from d1.models import ProductionStatus, ProductionTrackingRequest, ReturnTrackingRequest
from storage.repositories.cards import get_card
from storage.tables import FILTER_EXCEPTIONS

log = logging.getLogger(__name__)
T = TypeVar("T")


def _d1_outcome(exc: D1Error) -> str:
    return {
        D1NotFound: "d1_not_found",
        D1Unavailable: "d1_unavailable",
    }.get(type(exc), "d1_" + type(exc).__name__.removeprefix("D1").lower())


class CardLookups:
    """A card's status from D1 (for the agent, or shared without personal data) and tracking
    requests to D1."""

    def __init__(
        self, runtime: Runtime, auditor: Auditor, subscriptions: ChannelSubscriptions
    ) -> None:
        self.runtime = runtime
        self.auditor = auditor
        self.subscriptions = subscriptions
        settings = runtime.settings
        # Past this, the agent hears "D1 is not answering" even if the client still retries.
        self.d1_deadline = settings.d1_timeout_seconds * (settings.d1_max_retries + 1) + 5.0

    async def _d1(self, call: Callable[[Any], Awaitable[T]], card_id: str | None = None) -> T:
        """Call the D1 client under the deadline; D1 trouble becomes an Outcome (a card D1
        does not know is named)."""
        client = self.runtime.d1_client
        if client is None:
            raise Outcome("d1_not_configured", views.error_reply(MSG_NOT_CONFIGURED))
        try:
            return await asyncio.wait_for(call(client), timeout=self.d1_deadline)
        except TimeoutError:
            raise Outcome("d1_unavailable", views.error_reply(MSG_UNAVAILABLE)) from None
        except D1NotFound as exc:
            log.warning("D1 call failed: %s", exc)
            text = exc.user_message
            if card_id is not None:
                text = f"D1 has no card *{mrkdwn.escape(card_id)}*. Check the card id."
            raise Outcome(_d1_outcome(exc), views.error_reply(text)) from None
        except D1Error as exc:
            log.warning("D1 call failed: %s", exc)
            raise Outcome(_d1_outcome(exc), views.error_reply(exc.user_message)) from None

    async def _production_status(self, card_id: str) -> ProductionStatus:
        return await self._d1(lambda client: client.production_status(card_id), card_id)

    async def status(self, card_id: str) -> views.Reply:
        """The personal status view: for the asking agent only (ephemeral)."""
        status = await self._production_status(card_id)
        return views.status_reply(card_id, status, fetched_at=self.runtime.clock())

    async def track(self, who: Invoker, command: cmd.TrackCommand) -> views.Reply:
        """Ask D1 to track the card and make sure this channel gets the results."""
        await self._d1(
            lambda client: client.track(command.card_id, command.request), command.card_id
        )
        followed = await self.subscriptions.ensure_subscribed(who, command.card_id)
        kind = command.tracking_type.lower()
        text = (
            f"Asked D1 to track *{mrkdwn.escape(command.card_id)}* ({kind}). "
            "The results will be posted here in the card's thread."
        )
        if followed == FILTER_EXCEPTIONS:
            text += " (This channel follows only its exceptions: `/card subscribe "
            text += f"{mrkdwn.escape(command.card_id)}` to see every result.)"
        return views.message_reply(text, emoji="satellite_antenna")

    async def refresh(self, who: Invoker, card_id: str, *, action: str) -> views.Reply:
        """The personal status view again (Refresh, and Refresh status on alerts)."""
        return await self.auditor.audited(who, action, card_id, lambda: self.status(card_id))

    async def share(
        self, who: Invoker, card_id: str, post: Callable[[views.Reply], Awaitable[None]]
    ) -> views.Reply:
        """Post the card to the channel WITHOUT name or address (`post` does the posting);
        answer the agent privately."""

        async def work() -> views.Reply:
            status = await self._production_status(card_id)
            shared = views.shared_status_reply(
                card_id, status, fetched_at=self.runtime.clock(), shared_by=who.user_id
            )
            await post(shared)
            return views.message_reply(f"Shared *{mrkdwn.escape(card_id)}* in this channel.")

        return await self.auditor.audited(who, "button_share", card_id, work)

    async def retrack(self, who: Invoker, card_id: str) -> views.Reply:
        """Re-request tracking from what we know of the card: its production site (and
        RETURN for a returned card). Shipment tracking needs a postal code we never store,
        so for that the agent is shown the command to type."""

        async def work() -> views.Reply:
            card = await in_thread(self.runtime.engine, get_card, card_id=card_id)
            if card is None or not card.production_site:
                example = (
                    f"`/card track {mrkdwn.escape(card_id)} shipment trackingNumber=... "
                    "shipmentDate=... "
                    "postalCode=... countryCode=...`"
                )
                where = f"where *{mrkdwn.escape(card_id)}* was made"
                raise Outcome(
                    "retrack_unknown_site",
                    views.message_reply(f"I don't know {where}. Try {example}"),
                )
            if card.status == "CARD_RETURNED":
                request: Any = ReturnTrackingRequest(production_site=card.production_site)
            else:
                request = ProductionTrackingRequest(production_site=card.production_site)
            track = cmd.TrackCommand(
                card_id=card_id, tracking_type=request.tracking_type, request=request
            )
            return await self.track(who, track)

        return await self.auditor.audited(who, "button_retrack", card_id, work)
