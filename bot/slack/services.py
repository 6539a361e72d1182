"""What `/card` and its buttons do, behind one object the listeners share: parse the command,
run it through the part that owns it, audit it, and answer with a `views.Reply`. No Slack
request handling here (that is bot/slack/listeners/).

The parts: `CardLookups` (D1 status and tracking), `CardSearch` (find), `ChannelSubscriptions`,
`AlertTriage` (exception owners), `ChannelSettings` (thread mode), and
the digest (bot/scheduled/digest.py). None raises for a user's mistake or D1's trouble.
"""

from __future__ import annotations

import logging

from bot.render import views
from bot.runtime import Runtime
from bot.scheduled import digest
from bot.slack import commands as cmd
from bot.slack.alert_triage import AlertTriage
from bot.slack.auditing import ERROR, INVALID, REFUSED_PAN, Auditor, Invoker, Outcome
from bot.slack.card_lookups import CardLookups
from bot.slack.card_search import CardSearch
from bot.slack.card_story import CardStory, Show
from bot.slack.channel_settings import ChannelSettings
from bot.slack.channel_subscriptions import ChannelSubscriptions

log = logging.getLogger(__name__)

DIGEST_FAILED = "Sorry, the digest could not be prepared right now. Try again shortly."


class CardService:
    """The logic behind `/card` and its buttons, for one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.auditor = Auditor(runtime)
        self.subscriptions = ChannelSubscriptions(runtime, self.auditor)
        self.cards = CardLookups(runtime, self.auditor, self.subscriptions)
        self.alerts = AlertTriage(runtime, self.auditor)
        self.search = CardSearch(runtime, self.auditor, self.cards)
        self.story = CardStory(runtime, self.auditor)
        self.settings = ChannelSettings(runtime)

    async def run_command(self, who: Invoker, text: str, show: Show | None = None) -> views.Reply:
        """Parse and run one `/card ...`; the reply is meant for the asking agent only. `show`
        opens a modal for the asker (`/card history`)."""
        try:
            command = cmd.parse_command(text)
        except cmd.CommandError as exc:
            outcome = REFUSED_PAN if exc.pan_refused else INVALID
            # The audit detail is fixed wording: the typed text is never stored.
            await self.auditor.audit(who, action="command", outcome=outcome)
            if exc.pan_refused:
                return views.message_reply(exc.reply)
            return views.error_reply(exc.reply)
        if isinstance(command, cmd.StatusCommand):
            return await self.search.status(who, command)
        name = cmd.command_name(command)
        card_id = cmd.command_card_id(command)
        return await self.auditor.audited(
            who, name, card_id, lambda: self._dispatch(who, command, show)
        )

    async def _dispatch(
        self, who: Invoker, command: cmd.Command, show: Show | None = None
    ) -> views.Reply:
        match command:
            case cmd.StatusCommand():
                return await self.search.status(who, command)
            case cmd.HistoryCommand(card_id=card_id):
                return await self.story.open(who, card_id, show)
            case cmd.FindCommand(text=text):
                return await self.search.find(text)
            case cmd.TrackCommand():
                return await self.cards.track(who, command)
            case cmd.SubscribeCommand(card_id=card_id, filter=filter_):
                return await self.subscriptions.subscribe(who, card_id, filter_)
            case cmd.UnsubscribeCommand(card_id=card_id):
                return await self.subscriptions.unsubscribe(who, card_id)
            case cmd.ListCommand():
                return await self.subscriptions.list_channel(who)
            case cmd.ExceptionsCommand(mine=mine):
                return await self.alerts.list_open(who, mine=mine)
            case cmd.HelpCommand():
                return views.help_reply()
            case cmd.SettingsCommand(thread_mode=mode):
                if mode is None:
                    return await self.settings.show(who)
                return await self.settings.set_threads(who, mode)
            case _:
                return await self._digest(who, command)

    async def _digest(self, who: Invoker, command: cmd.DigestCommand) -> views.Reply:
        """The digest's own apology when it cannot be prepared (audited as an error)."""
        try:
            return await self._run_digest(who, command)
        except Exception:
            log.exception("%s failed", cmd.command_name(command))
            raise Outcome(ERROR, views.message_reply(DIGEST_FAILED)) from None

    async def _run_digest(self, who: Invoker, command: cmd.DigestCommand) -> views.Reply:
        where = {"workspace_id": who.workspace_id, "channel_id": who.channel_id}
        match command:
            case cmd.DigestShowCommand():
                return await digest.show_digest(self.runtime, **where)
            case cmd.DigestPostCommand():
                return await digest.post_digest(self.runtime, **where)
            case cmd.DigestScheduleCommand(timezone=zone):
                return await digest.schedule_digest(
                    self.runtime, **where, user_id=who.user_id, at=command.at, timezone=zone
                )
            case cmd.DigestOffCommand():
                return await digest.turn_digest_off(self.runtime, **where, user_id=who.user_id)

    async def refused(self, who: Invoker, *, action: str, reason: str) -> views.Reply:
        """Audit a refusal by access control (see bot/slack/middleware.py)."""
        return await self.auditor.refused(who, action=action, reason=reason)
