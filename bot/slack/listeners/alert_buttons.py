"""The buttons of an exception alert: Acknowledge (updates the alert for everyone), Refresh
status and Re-track (answers to the presser only), and the carrier's tracking link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import actions, views
from bot.slack.middleware import BAD_BUTTON, Gate
from bot.slack.payloads import button_of, invoker_of, reply_privately
from bot.slack.services import CardService


def alert_updater(
    client: AsyncWebClient, channel_id: str, ts: str
) -> Callable[[views.Reply], Awaitable[None]]:
    """Rewrites the alert message in place (`chat.update`)."""

    async def update(acked: views.Reply) -> None:
        await client.chat_update(channel=channel_id, ts=ts, **acked.respond_kwargs())

    return update


def _alert_ts(body: dict[str, Any]) -> str | None:
    message = body.get("message") or {}
    return message.get("ts") or (body.get("container") or {}).get("message_ts")


def register_alert_buttons(app: AsyncApp, service: CardService, gate: Gate) -> None:
    @app.action(actions.ALERT_ACK, middleware=gate.button("button_ack"))
    async def on_alert_ack(
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        who, value, ts = invoker_of(context), button_of(context), _alert_ts(body)
        if value.event_id is None or not ts:
            await reply_privately(respond, views.error_reply(BAD_BUTTON))
            return
        reply = await service.alerts.acknowledge(
            who,
            card_id=value.card_id,
            event_id=value.event_id,
            original_blocks=list((body.get("message") or {}).get("blocks") or []),
            update=alert_updater(client, who.channel_id, ts),
        )
        await reply_privately(respond, reply)

    @app.action(actions.ALERT_REFRESH, middleware=gate.button("button_alert_refresh"))
    async def on_alert_refresh(context: AsyncBoltContext, respond: AsyncRespond) -> None:
        who, card_id = invoker_of(context), button_of(context).card_id
        reply = await service.cards.refresh(who, card_id, action="button_alert_refresh")
        await reply_privately(respond, reply)  # a new answer: the alert itself stays

    @app.action(actions.ALERT_RETRACK, middleware=gate.button("button_retrack"))
    async def on_alert_retrack(context: AsyncBoltContext, respond: AsyncRespond) -> None:
        reply = await service.cards.retrack(invoker_of(context), button_of(context).card_id)
        await reply_privately(respond, reply)

    @app.action(actions.OPEN_TRACKING)
    async def on_open_tracking(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL itself
