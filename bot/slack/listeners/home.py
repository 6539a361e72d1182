"""The App Home tab: how to use the bot and which channels' updates are paused, published when an
agent opens it (no card data, so no access check)."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery.outcomes import CHANNEL_REASONS
from bot.render import views
from bot.runtime import Runtime
from storage.repositories.pauses import paused_channels


def register_home(app: AsyncApp, runtime: Runtime) -> None:
    @app.event("app_home_opened")
    async def on_home(
        event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            pauses = await asyncio.to_thread(
                paused_channels, runtime.engine, workspace_id=context.team_id
            )
            paused = [(p.channel_id, CHANNEL_REASONS.get(p.reason, p.reason)) for p in pauses]
            await client.views_publish(user_id=event["user"], view=views.home_view(paused))
