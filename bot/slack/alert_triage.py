"""Exceptions with owners: Assign to me, Resolve and Reopen on an exception alert (and on
`/card exceptions`), and that list. A change is stored with the alert updates that show it
(storage/repositories/triage.py); the delivery worker rewrites the alerts in place. Every
action is audited."""

from __future__ import annotations

from collections.abc import Callable

from bot.render import triage as render
from bot.render import views
from bot.render.mrkdwn import escape
from bot.render.slacktext import user
from bot.runtime import Runtime
from bot.slack.auditing import Auditor, Invoker, Outcome, in_thread
from storage.repositories import cases, triage
from storage.repositories.triage import Alert, TriageResult

NO_EXCEPTION = "*{card}* has no exception to triage (it never had an alert)."


class AlertTriage:
    """Owners and states of card exceptions, for the buttons and `/card exceptions`."""

    def __init__(self, runtime: Runtime, auditor: Auditor) -> None:
        self.runtime = runtime
        self.auditor = auditor

    async def _change(
        self,
        who: Invoker,
        action: str,
        card_id: str,
        change: Callable[..., TriageResult],
        answer: Callable[[TriageResult], views.Reply],
        pressed: Alert | None,
    ) -> views.Reply:
        async def work() -> views.Reply:
            result = await in_thread(
                self.runtime.engine,
                change,
                card_id=card_id,
                user_id=who.user_id,
                now=self.runtime.clock(),
                alerts=[pressed] if pressed else [],
            )
            if result.outcome == triage.NO_CASE:
                text = NO_EXCEPTION.format(card=escape(card_id))
                raise Outcome(triage.NO_CASE, views.message_reply(text))
            self.runtime.wake_outbox()
            reply = answer(result)
            if result.outcome.startswith("already_"):
                raise Outcome(result.outcome, reply)
            return reply

        return await self.auditor.audited(who, action, card_id, work)

    async def assign(
        self, who: Invoker, card_id: str, *, pressed: Alert | None, action: str = "button_assign"
    ) -> views.Reply:
        def answer(result: TriageResult) -> views.Reply:
            card = f"*{escape(card_id)}*"
            if result.outcome == triage.ALREADY_YOURS:
                return views.message_reply(f"You already own the exception of {card}.")
            taken = ""
            if result.outcome == triage.TAKEN_OVER and result.previous_owner:
                taken = f" (taken over from {user(result.previous_owner)})"
            text = f"You own the exception of {card} now{taken}."
            return views.message_reply(text, emoji="bust_in_silhouette")

        return await self._change(who, action, card_id, triage.assign, answer, pressed)

    async def resolve(self, who: Invoker, card_id: str, *, pressed: Alert | None) -> views.Reply:
        def answer(result: TriageResult) -> views.Reply:
            card = f"*{escape(card_id)}*"
            if result.outcome == triage.ALREADY_RESOLVED:
                by = result.case.resolved_by if result.case else None
                return views.message_reply(
                    f"The exception of {card} is already resolved"
                    + (f" (by {user(by)})." if by else ".")
                )
            return views.message_reply(
                f"Resolved the exception of {card}. A new failure will reopen it.",
                emoji="white_check_mark",
            )

        return await self._change(who, "button_resolve", card_id, triage.resolve, answer, pressed)

    async def reopen(self, who: Invoker, card_id: str, *, pressed: Alert | None) -> views.Reply:
        def answer(result: TriageResult) -> views.Reply:
            card = f"*{escape(card_id)}*"
            if result.outcome == triage.ALREADY_OPEN:
                return views.message_reply(f"The exception of {card} is already open.")
            return views.message_reply(
                f"Reopened the exception of {card}; it has no owner until someone takes it.",
                emoji="repeat",
            )

        return await self._change(who, "button_reopen", card_id, triage.reopen, answer, pressed)

    async def list_open(self, who: Invoker, *, mine: bool) -> views.Reply:
        """`/card exceptions [open|mine]`: open exceptions, oldest first, with their buttons."""
        rows, total = await in_thread(
            self.runtime.engine,
            cases.open_cases,
            owner=who.user_id if mine else None,
            limit=render.MAX_LISTED,
        )
        listed = [
            render.ListedCase(
                card_id=row.case.card_id,
                event_id=row.case.alert_event_id or row.case.last_event_id,
                status=row.card.status if row.card else None,
                shipment_status=row.card.shipment_status if row.card else None,
                state=render.alert_state(row.case),
            )
            for row in rows
        ]
        text, blocks = render.exceptions_reply(
            listed, total=total, mine=mine, now=self.runtime.clock()
        )
        return views.Reply(text=text, blocks=blocks)
