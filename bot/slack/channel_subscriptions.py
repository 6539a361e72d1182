"""Which cards a channel follows: `/card subscribe`, `unsubscribe`, `list`, and the Subscribe
button. The replies say what changed, so an agent never has to guess from the channel."""

from __future__ import annotations

from bot.delivery.channel_access import check_channel, resume_channel
from bot.delivery.outcomes import CHANNEL_REASONS
from bot.render import mrkdwn, views
from bot.runtime import Runtime
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from storage.repositories import pauses, subscriptions
from storage.repositories.outbox import count_dead_letters
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS


class ChannelSubscriptions:
    """A channel's subscriptions, changed and listed for the agent who asked."""

    def __init__(self, runtime: Runtime, auditor: Auditor) -> None:
        self.runtime = runtime
        self.auditor = auditor

    async def subscribe(self, who: Invoker, card_id: str, filter_: str) -> views.Reply:
        """Subscribe the channel after checking that the bot can post there (a private channel
        it is not in, an archived one or a DM is refused); ends the channel's pause if any."""
        await self._check_channel(who)
        resumed = await resume_channel(
            self.runtime, workspace_id=who.workspace_id, channel_id=who.channel_id
        )
        result = await in_thread(
            self.runtime.engine,
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
        again = " Card updates to this channel were paused; they resume now." if resumed else ""
        if result.outcome == subscriptions.UNCHANGED:
            return views.message_reply(f"This channel already follows {what} of {card}.{again}")
        if result.outcome == subscriptions.UPDATED:
            text = f"This channel now follows {what} of {card}."
        else:
            text = f"Subscribed: this channel will get {what} of {card}, in one thread."
        return views.message_reply(text + again, emoji="white_check_mark")

    async def _check_channel(self, who: Invoker) -> None:
        check = await check_channel(self.runtime.slack_client, who.channel_id)
        if check.refusal is not None:
            raise Outcome(check.outcome, views.error_reply(check.refusal))

    async def subscribe_button(self, who: Invoker, card_id: str) -> views.Reply:
        """The Subscribe button of the status view: every update, audited as a button."""
        return await self.auditor.audited(
            who, "button_subscribe", card_id, lambda: self.subscribe(who, card_id, FILTER_ALL)
        )

    async def ensure_subscribed(self, who: Invoker, card_id: str) -> str:
        """Subscribe the channel unless it already follows the card (tracking results land in
        the card's thread); the channel's filter for the card."""
        existing = [
            s
            for s in await in_thread(
                self.runtime.engine,
                subscriptions.subscriptions_of_card,
                card_id=card_id,
                workspace_id=who.workspace_id,
            )
            if s.channel_id == who.channel_id
        ]
        if existing:
            return existing[0].filter
        await self._check_channel(who)
        await in_thread(
            self.runtime.engine,
            subscriptions.subscribe,
            workspace_id=who.workspace_id,
            channel_id=who.channel_id,
            card_id=card_id,
            created_by=who.user_id,
            filter=FILTER_ALL,
            now=self.runtime.clock(),
        )
        return FILTER_ALL

    async def unsubscribe(self, who: Invoker, card_id: str) -> views.Reply:
        removed = await in_thread(
            self.runtime.engine,
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
        """The channel's cards with their state, and its undelivered messages if any."""
        engine = self.runtime.engine
        rows = await in_thread(
            engine,
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
        dead = await in_thread(engine, count_dead_letters, channel_id=who.channel_id)
        reply = views.list_reply(view_rows, dead_letters=int(dead))
        pause = await in_thread(
            engine, pauses.channel_pause, workspace_id=who.workspace_id, channel_id=who.channel_id
        )
        if pause is None:
            return reply
        why = CHANNEL_REASONS.get(pause.reason, pause.reason)
        warning = views.error_reply(
            f"Card updates to this channel are paused ({mrkdwn.escape(why)}): they wait, "
            f"nothing is lost. Invite the app (`/invite @D1 Cards`) or run `/card subscribe` "
            f"here again to resume them."
        )
        return views.Reply(
            text=f"{warning.text}\n{reply.text}",
            blocks=[*warning.blocks, *reply.blocks],
            in_channel=reply.in_channel,
        )
