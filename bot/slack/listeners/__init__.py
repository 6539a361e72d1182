"""Every Bolt listener of the app, one module per concern: the `/card` command, the buttons of
the status view, the buttons of exception alerts, the App Home tab, and the channel events that
end a delivery pause.

Each listener is "read the request, call the service, reply"; acking, access control and
decoding button values happen before it, in bot/slack/middleware.py.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.access import AccessControl
from bot.slack.listeners.alert_buttons import register_alert_buttons
from bot.slack.listeners.card_command import register_card_command
from bot.slack.listeners.channel_events import register_channel_events
from bot.slack.listeners.home import register_home
from bot.slack.listeners.status_buttons import register_status_buttons
from bot.slack.middleware import Gate
from bot.slack.services import CardService


def register_listeners(app: AsyncApp, service: CardService, access: AccessControl) -> None:
    """Attach the `/card` command, every button of `bot.render.actions`, the App Home and the
    channel events."""
    gate = Gate(service, access, workspace=service.runtime.settings.d1bot_workspace_id)
    register_card_command(app, service, gate)
    register_status_buttons(app, service, gate)
    register_alert_buttons(app, service, gate)
    register_home(app, service.runtime)
    register_channel_events(app, service.runtime)


__all__ = ["register_listeners"]
