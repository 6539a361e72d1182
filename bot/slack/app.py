"""The Bolt app: built from the runtime, with the `/card` command and the button listeners.

Each listener acks first (Slack's 3-second limit), then checks access, calls `CardService`,
and answers through `respond()` (the response_url), so a slow D1 never delays the ack.
Listeners run after the ack because `process_before_response` is off.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import actions, views
from bot.runtime import Runtime
from bot.slack.access import AccessControl
from bot.slack.services import CardService, Invoker, Outcome

log = logging.getLogger(__name__)

COMMAND = "/card"
NOT_IN_CHANNEL = (
    "I can't post in this channel yet: invite me with `/invite @D1 Cards`, then press "
    "*Share in channel* again."
)
BAD_BUTTON = "That button is out of date; run `/card status <cardId>` again."


def _invoker(body: dict[str, Any], default_workspace: str) -> Invoker:
    """Who and where, from a slash command body or an interactive payload."""
    team = body.get("team")
    workspace = body.get("team_id") or (team.get("id") if isinstance(team, dict) else None)
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    return Invoker(workspace_id=workspace or default_workspace, channel_id=channel, user_id=user)


def _action_value(body: dict[str, Any]) -> actions.ActionValue | None:
    try:
        return actions.decode_value(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


async def _private(respond: AsyncRespond, reply: views.Reply, *, replace: bool = False) -> None:
    """An ephemeral answer through the response_url."""
    await respond(**reply.respond_kwargs(response_type="ephemeral", replace_original=replace))


def register_listeners(app: AsyncApp, service: CardService, access: AccessControl) -> None:
    """Attach the `/card` command and every button of `bot.render.actions` to `app`."""
    workspace = service.runtime.settings.d1bot_workspace_id

    async def allowed(who: Invoker, action: str, respond: AsyncRespond) -> bool:
        reason = await access.refusal(user_id=who.user_id, channel_id=who.channel_id)
        if reason is None:
            return True
        await _private(respond, await service.refused(who, action=action, reason=reason))
        return False

    @app.command(COMMAND)
    async def on_card(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        who = _invoker(body, workspace)
        if await allowed(who, "command", respond):
            await _private(respond, await service.run_command(who, body.get("text") or ""))

    async def button(
        action: str, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond
    ) -> tuple[Invoker, actions.ActionValue] | None:
        """Common start of a button listener: ack, who, access, decoded value."""
        await ack()
        who = _invoker(body, workspace)
        if not await allowed(who, action, respond):
            return None
        value = _action_value(body)
        if value is None:
            await service.audit(who, action=action, outcome="invalid")
            await _private(respond, views.error_reply(BAD_BUTTON))
            return None
        return who, value

    @app.action(actions.SUBSCRIBE)
    async def on_subscribe(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        if started := await button("button_subscribe", ack, body, respond):
            who, value = started
            await _private(respond, await service.subscribe_button(who, value.card_id))

    @app.action(actions.REFRESH)
    async def on_refresh(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        if started := await button("button_refresh", ack, body, respond):
            who, value = started
            reply = await service.refresh(who, value.card_id, action="button_refresh")
            await _private(respond, reply, replace=True)

    @app.action(actions.SHARE)
    async def on_share(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        if not (started := await button("button_share", ack, body, respond)):
            return
        who, value = started

        async def post(shared: views.Reply) -> None:
            try:
                await client.chat_postMessage(channel=who.channel_id, **shared.respond_kwargs())
            except SlackApiError as exc:
                if exc.response.get("error") in {"not_in_channel", "channel_not_found"}:
                    raise Outcome("not_in_channel", views.error_reply(NOT_IN_CHANNEL)) from None
                raise

        await _private(respond, await service.share(who, value.card_id, post))

    @app.action(actions.ALERT_ACK)
    async def on_alert_ack(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        if not (started := await button("button_ack", ack, body, respond)):
            return
        who, value = started
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts")
        if value.event_id is None or not ts:
            await _private(respond, views.error_reply(BAD_BUTTON))
            return

        async def update(acked: views.Reply) -> None:
            await client.chat_update(channel=who.channel_id, ts=ts, **acked.respond_kwargs())

        reply = await service.acknowledge(
            who,
            card_id=value.card_id,
            event_id=value.event_id,
            original_blocks=list(message.get("blocks") or []),
            update=update,
        )
        await _private(respond, reply)

    @app.action(actions.ALERT_REFRESH)
    async def on_alert_refresh(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        if started := await button("button_alert_refresh", ack, body, respond):
            who, value = started
            reply = await service.refresh(who, value.card_id, action="button_alert_refresh")
            await _private(respond, reply)

    @app.action(actions.ALERT_RETRACK)
    async def on_alert_retrack(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        if started := await button("button_retrack", ack, body, respond):
            who, value = started
            await _private(respond, await service.retrack(who, value.card_id))

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await client.views_publish(user_id=event["user"], view=views.home_view())

    @app.action(actions.OPEN_TRACKING)
    async def on_open_tracking(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL itself


class _ClientTokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN "will be unused" when it is given a client: we build the
    client from that same token (with SLACK_API_URL), so the warning only misleads operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def build_bolt_app(runtime: Runtime) -> AsyncApp:
    """The Bolt app for `runtime` (its Slack client, signing secret and allowlists)."""
    settings = runtime.settings
    secret = settings.slack_signing_secret
    bolt_log = logging.getLogger("d1bot.slack")
    if not any(isinstance(f, _ClientTokenNotice) for f in bolt_log.filters):
        bolt_log.addFilter(_ClientTokenNotice())
    app = AsyncApp(
        client=runtime.slack_client,
        signing_secret=secret.get_secret_value() if secret is not None else None,
        # Socket Mode alone has no HTTP requests to verify.
        request_verification_enabled=secret is not None,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        logger=bolt_log,
    )
    service = CardService(runtime)
    access = AccessControl.from_settings(settings, runtime.slack_client)
    register_listeners(app, service, access)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Never a traceback to a user; the log has the kind of request, not its text.
        log.error(
            "unhandled error in a Slack listener (%s): %s",
            body.get("type") or body.get("command"),
            type(error).__name__,
            exc_info=error,
        )

    return app
