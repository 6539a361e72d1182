"""Finding a card by what the agent has: `/card find <text>`, and `/card status` given an
issuerRequestId or a tracking number instead of the card id. Only stored cards can be found
(D1 has no search); the lookups are index seeks (storage/repositories/search.py)."""

from __future__ import annotations

from bot.render import search_views, views
from bot.render.mrkdwn import escape
from bot.runtime import Runtime
from bot.slack import commands as cmd
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from bot.slack.card_lookups import CardLookups
from storage.repositories import search

MAX_MATCHES = 10


class CardSearch:
    """`/card find`, and the card a `/card status` identifier stands for."""

    def __init__(self, runtime: Runtime, auditor: Auditor, lookups: CardLookups) -> None:
        self.runtime = runtime
        self.auditor = auditor
        self.lookups = lookups

    async def find(self, text: str) -> views.Reply:
        found = await in_thread(
            self.runtime.engine, search.find_cards, text=text, limit=MAX_MATCHES
        )
        reply = search_views.found_reply(text, found.matches, more=found.more)
        if not found.matches:
            raise Outcome("not_found", reply)
        return reply

    async def status(self, who: Invoker, command: cmd.StatusCommand) -> views.Reply:
        """`/card status`, audited under the card it turned out to name."""
        try:
            card_id = await self.resolve(command)
        except Outcome as early:
            await self.auditor.audit(who, action="status", outcome=early.outcome)
            return early.reply
        return await self.auditor.audited(
            who, "status", card_id, lambda: self.lookups.status(card_id)
        )

    async def resolve(self, command: cmd.StatusCommand) -> str:
        """The card id `command` names: itself when stored (or when it is a card id we do not
        know: D1 may), else the one card with that issuerRequestId or tracking number. Several
        such cards, or none for what is not a card id, end as an Outcome."""
        text = command.card_id
        engine = self.runtime.engine
        if not command.by_identifier:
            stored = await in_thread(engine, search.find_cards, text=text, limit=1)
            if stored.matches and stored.matches[0].matched_by == search.BY_CARD_ID:
                return text
        known = await in_thread(engine, search.cards_known_as, text=text, limit=MAX_MATCHES)
        if len(known) == 1:
            return known[0].card_id
        if len(known) > 1:
            matches = [search.Match(card=c, matched_by=_matched_by(c, text)) for c in known]
            raise Outcome("ambiguous", search_views.ambiguous_reply(text, matches))
        if command.by_identifier:
            raise Outcome(
                "not_found",
                views.error_reply(
                    "No stored card has the issuerRequestId or tracking number "
                    f"`{escape(text)}`, and it is not a D1 card id."
                ),
            )
        return text


def _matched_by(card: search.CardRecord, text: str) -> str:
    return search.BY_REQUEST_ID if card.issuer_request_id == text else search.BY_TRACKING_NUMBER
