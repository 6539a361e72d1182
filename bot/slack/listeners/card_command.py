"""The `/card` slash command: its text goes to `CardService.run_command`, the reply to the asker."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond

from bot.slack.middleware import Gate
from bot.slack.payloads import invoker_of, reply_privately
from bot.slack.services import CardService

COMMAND = "/card"


def register_card_command(app: AsyncApp, service: CardService, gate: Gate) -> None:
    @app.command(COMMAND, middleware=gate.command("command"))
    async def on_card(
        body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
    ) -> None:
        reply = await service.run_command(invoker_of(context), body.get("text") or "")
        await reply_privately(respond, reply)
