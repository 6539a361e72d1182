"""The buttons of the `/card status` view: Subscribe, Refresh (replaces the view) and Share
(posts the card to the channel without personal data); and Status on `/card find` results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery.slack_errors import NOT_IN_CHANNEL_ERRORS, error_code
from bot.render import actions, views
from bot.slack.auditing import Outcome
from bot.slack.listeners.card_command import modal_opener
from bot.slack.middleware import BAD_BUTTON, Gate
from bot.slack.payloads import button_of, invoker_of, reply_privately
from bot.slack.services import CardService

NOT_IN_CHANNEL = (
    "I can't post in this channel yet: invite me with `/invite @D1 Cards`, then press "
    "*Share in channel* again."
)


def channel_poster(
    client: AsyncWebClient, channel_id: str
) -> Callable[[views.Reply], Awaitable[None]]:
    """Posts a reply to the channel; a channel the bot is not in becomes an invitation hint."""

    async def post(shared: views.Reply) -> None:
        try:
            await client.chat_postMessage(channel=channel_id, **shared.respond_kwargs())
        except SlackApiError as exc:
            if error_code(exc) in NOT_IN_CHANNEL_ERRORS:
                raise Outcome("not_in_channel", views.error_reply(NOT_IN_CHANNEL)) from None
            raise

    return post


def register_status_buttons(app: AsyncApp, service: CardService, gate: Gate) -> None:
    @app.action(actions.SUBSCRIBE, middleware=gate.button("button_subscribe"))
    async def on_subscribe(context: AsyncBoltContext, respond: AsyncRespond) -> None:
        card_id = button_of(context).card_id
        reply = await service.subscriptions.subscribe_button(invoker_of(context), card_id)
        await reply_privately(respond, reply)

    @app.action(actions.REFRESH, middleware=gate.button("button_refresh"))
    async def on_refresh(context: AsyncBoltContext, respond: AsyncRespond) -> None:
        card_id = button_of(context).card_id
        reply = await service.cards.refresh(invoker_of(context), card_id, action="button_refresh")
        await reply_privately(respond, reply, replace=True)

    @app.action(actions.STATUS, middleware=gate.button("button_status"))
    async def on_status(context: AsyncBoltContext, respond: AsyncRespond) -> None:
        card_id = button_of(context).card_id
        reply = await service.cards.refresh(invoker_of(context), card_id, action="button_status")
        await reply_privately(respond, reply)  # a new answer: the list of matches stays

    @app.action(actions.TIMELINE, middleware=gate.button("button_timeline"))
    async def on_timeline(
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        card_id, who = button_of(context).card_id, invoker_of(context)
        show = modal_opener(client, body.get("trigger_id"))
        if show is None:
            await reply_privately(respond, views.error_reply(BAD_BUTTON))
            return
        reply = await service.story.timeline_button(who, card_id, show)
        if reply is not None:
            await reply_privately(respond, reply)

    @app.action(actions.TIMELINE_PAGE, middleware=gate.button("timeline_page"))
    async def on_timeline_page(
        body: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        value, who = button_of(context), invoker_of(context)
        view_id = (body.get("view") or {}).get("id")
        if not view_id or value.event_id is None:
            return

        async def show(view: dict[str, Any]) -> Any:
            return await client.views_update(view_id=view_id, view=view)

        await service.story.turn_page(who, value.card_id, value.event_id, show)

    @app.action(actions.SHARE, middleware=gate.button("button_share"))
    async def on_share(
        context: AsyncBoltContext, respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        who = invoker_of(context)
        post = channel_poster(client, who.channel_id)
        reply = await service.cards.share(who, button_of(context).card_id, post)
        await reply_privately(respond, reply)
