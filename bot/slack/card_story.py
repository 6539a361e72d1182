"""The card's story: `/card history <cardId>` and the Timeline button open a modal
(`views.open`) with every stored event, tracking request and look at the card; its Older and
Newer buttons turn the pages (`views.update`). Read from our own storage: D1 is not asked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.render import story, views
from bot.render.mrkdwn import escape
from bot.runtime import Runtime
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from storage.repositories import audit
from storage.repositories.cards import events_of_card, get_card

log = logging.getLogger(__name__)

Show = Callable[[dict[str, Any]], Awaitable[Any]]  # views.open or views.update of one view
MAX_LOOKS = 500  # audit rows read per card (the newest)


class CardStory:
    def __init__(self, runtime: Runtime, auditor: Auditor) -> None:
        self.runtime = runtime
        self.auditor = auditor

    async def _view(self, who: Invoker, card_id: str, page: int) -> dict[str, Any]:
        engine = self.runtime.engine
        card = await in_thread(engine, get_card, card_id=card_id)
        events = await in_thread(engine, events_of_card, card_id=card_id)
        looks = await in_thread(engine, audit.recent, card_id=card_id, limit=MAX_LOOKS)
        if card is None and not events and not looks:
            text = f"Nothing is stored about *{escape(card_id)}*: D1 never told us about it."
            raise Outcome("not_found", views.error_reply(text + " Try `/card status` to ask D1."))
        lines = story.story_lines(events, looks)
        return story.story_view(card_id, card, lines, page=page, channel_id=who.channel_id)

    async def _show(self, view: dict[str, Any], show: Show) -> None:
        try:
            await show(view)
        except SlackApiError as exc:
            log.warning("the story modal was refused: %s", exc.response.get("error"))
            raise Outcome(
                "modal_failed",
                views.error_reply("Slack did not open the story in time; try again."),
            ) from None

    async def open(self, who: Invoker, card_id: str, show: Show | None) -> views.Reply:
        """The modal on its newest page; the reply says it opened (or why not)."""
        if show is None:
            raise Outcome("modal_failed", views.error_reply("The story opens from Slack only."))
        await self._show(await self._view(who, card_id, story.LAST_PAGE), show)
        return views.message_reply(f"The story of *{escape(card_id)}* is open.", emoji="book")

    async def timeline_button(self, who: Invoker, card_id: str, show: Show) -> views.Reply | None:
        """The modal; a reply only when it could not open (the modal says it all)."""
        opened = False

        async def work() -> views.Reply:
            nonlocal opened
            reply = await self.open(who, card_id, show)
            opened = True
            return reply

        reply = await self.auditor.audited(who, "button_timeline", card_id, work)
        return None if opened else reply

    async def turn_page(self, who: Invoker, card_id: str, page: int, show: Show) -> None:
        """Another page of an open modal (audited, not counted as a look)."""

        async def work() -> views.Reply:
            await self._show(await self._view(who, card_id, page), show)
            return views.message_reply("")

        await self.auditor.audited(who, story.PAGE_TURN, card_id, work)
