"""What a Slack request says (who, where, which button) and the private answer to it.

The middleware (bot/slack/middleware.py) reads the request once and leaves the result in Bolt's
context; listeners take it from there with `invoker_of` / `button_of`.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncBoltContext, AsyncRespond

from bot.render import actions, views
from bot.slack.auditing import Invoker

INVOKER = "d1_invoker"
BUTTON = "d1_button"


def invoker(body: dict[str, Any], default_workspace: str) -> Invoker:
    """Who and where, from a slash command body or an interactive payload."""
    team = body.get("team")
    workspace = body.get("team_id") or (team.get("id") if isinstance(team, dict) else None)
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id") or _view_channel(body)
    user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    return Invoker(workspace_id=workspace or default_workspace, channel_id=channel, user_id=user)


def _view_channel(body: dict[str, Any]) -> str:
    """The channel a modal was opened from (its private metadata), for a press inside it."""
    try:
        metadata = json.loads((body.get("view") or {}).get("private_metadata") or "{}")
    except ValueError:
        return ""
    channel = metadata.get("channel") if isinstance(metadata, dict) else None
    return channel if isinstance(channel, str) else ""


def action_value(body: dict[str, Any]) -> actions.ActionValue | None:
    """The pressed button's value; None when it is missing or garbled."""
    try:
        return actions.decode_value(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def invoker_of(context: AsyncBoltContext) -> Invoker:
    """The Invoker the access gate checked (every gated listener has one)."""
    found = context[INVOKER]
    assert isinstance(found, Invoker)
    return found


def button_of(context: AsyncBoltContext) -> actions.ActionValue:
    """The decoded value of the pressed button (every button listener has one)."""
    found = context[BUTTON]
    assert isinstance(found, actions.ActionValue)
    return found


async def reply_privately(
    respond: AsyncRespond, reply: views.Reply, *, replace: bool = False
) -> None:
    """An ephemeral answer through the response_url."""
    await respond(**reply.respond_kwargs(response_type="ephemeral", replace_original=replace))
