"""Channel events that end a delivery pause: the bot invited back into a channel it was removed
from (or never in), or a channel unarchived. The waiting card updates then go out."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.delivery.channel_access import resume_channel
from bot.runtime import Runtime


def register_channel_events(app: AsyncApp, runtime: Runtime) -> None:
    async def resume(event: dict[str, Any], context: AsyncBoltContext) -> None:
        channel = event.get("channel")
        if isinstance(channel, str) and context.team_id:
            await resume_channel(runtime, workspace_id=context.team_id, channel_id=channel)

    @app.event("member_joined_channel")
    async def on_member_joined(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("user") and event.get("user") == context.bot_user_id:
            await resume(event, context)

    @app.event("channel_unarchive")
    async def on_channel_unarchive(event: dict[str, Any], context: AsyncBoltContext) -> None:
        await resume(event, context)

    @app.event("group_unarchive")
    async def on_group_unarchive(event: dict[str, Any], context: AsyncBoltContext) -> None:
        await resume(event, context)


__all__ = ["register_channel_events"]
