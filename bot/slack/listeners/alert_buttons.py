"""The buttons of an exception alert and of `/card exceptions`: Assign to me, Resolve and Reopen
(stored, then the alert is rewritten for everyone by the delivery worker; Acknowledge on an
older alert is Assign to me), Refresh status and Re-track (answers to the presser only), and
the carrier's tracking link."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot.render import actions
from bot.slack.middleware import Gate
from bot.slack.payloads import button_of, invoker_of, reply_privately
from bot.slack.services import CardService
from storage.repositories.triage import Alert


def _alert_ts(body: dict[str, Any]) -> str | None:
    message = body.get("message") or {}
    return message.get("ts") or (body.get("container") or {}).get("message_ts")


def register_alert_buttons(app: AsyncApp, service: CardService, gate: Gate) -> None:
    def pressed_alert(body: dict[str, Any], context: AsyncBoltContext) -> Alert | None:
        """The alert message the button is on (None in an ephemeral list)."""
        who, value, ts = invoker_of(context), button_of(context), _alert_ts(body)
        if not ts or (body.get("container") or {}).get("is_ephemeral"):
            return None
        return Alert(who.workspace_id, who.channel_id, ts, value.event_id)

    @app.action(actions.ALERT_ASSIGN, middleware=gate.button("button_assign"))
    async def on_assign(
        body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
    ) -> None:
        who, card_id = invoker_of(context), button_of(context).card_id
        reply = await service.alerts.assign(who, card_id, pressed=pressed_alert(body, context))
        await reply_privately(respond, reply)

    @app.action(actions.ALERT_ACK, middleware=gate.button("button_ack"))
    async def on_alert_ack(
        body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
    ) -> None:
        """Acknowledge on an alert posted before owners existed: Assign to me."""
        who, card_id = invoker_of(context), button_of(context).card_id
        pressed = pressed_alert(body, context)
        reply = await service.alerts.assign(who, card_id, pressed=pressed, action="button_ack")
        await reply_privately(respond, reply)

    @app.action(actions.ALERT_RESOLVE, middleware=gate.button("button_resolve"))
    async def on_resolve(
        body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
    ) -> None:
        who, card_id = invoker_of(context), button_of(context).card_id
        reply = await service.alerts.resolve(who, card_id, pressed=pressed_alert(body, context))
        await reply_privately(respond, reply)

    @app.action(actions.ALERT_REOPEN, middleware=gate.button("button_reopen"))
    async def on_reopen(
        body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
    ) -> None:
        who, card_id = invoker_of(context), button_of(context).card_id
        reply = await service.alerts.reopen(who, card_id, pressed=pressed_alert(body, context))
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
