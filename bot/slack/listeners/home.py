"""The App Home tab: how to use the bot, published when an agent opens it (no card data, so
no access check)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import views


def register_home(app: AsyncApp) -> None:
    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await client.views_publish(user_id=event["user"], view=views.home_view())
