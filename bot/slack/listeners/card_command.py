"""The `/card` slash command: its text goes to `CardService.run_command`, the reply to the asker."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.card_story import Show
from bot.slack.middleware import Gate
from bot.slack.payloads import invoker_of, reply_privately
from bot.slack.services import CardService

COMMAND = "/card"


def register_card_command(app: AsyncApp, service: CardService, gate: Gate) -> None:
    @app.command(COMMAND, middleware=gate.command("command"))
    async def on_card(
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        show = modal_opener(client, body.get("trigger_id"))
        reply = await service.run_command(invoker_of(context), body.get("text") or "", show)
        await reply_privately(respond, reply)


def modal_opener(client: AsyncWebClient, trigger_id: str | None) -> Show | None:
    """Opens a modal for the user of this request (`views.open` with its trigger id)."""
    if not trigger_id:
        return None

    async def show(view: dict[str, Any]) -> Any:
        return await client.views_open(trigger_id=trigger_id, view=view)

    return show
