"""Who owns a card's exception, as Slack shows it: the owner-and-age line and the buttons of an
exception alert (Assign to me, Resolve, Reopen), the note a reopened alert gets in its thread,
and the `/card exceptions` list. Pure; outside text through `bot.render.slacktext`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.render import actions, mrkdwn, slacktext
from bot.render.slacktext import button, context, escape, section
from storage.tables import CASE_OPEN, ExceptionCaseRecord

MAX_LISTED = 15  # cases in one `/card exceptions` reply (3 blocks each, within 50)


@dataclass(frozen=True)
class AlertState:
    """A card's exception case as an alert shows it (None fields: not known)."""

    open: bool = True
    owner: str | None = None
    opened_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


def alert_state(case: ExceptionCaseRecord | None) -> AlertState:
    """How an alert shows its case (an alert without a case: open, nobody on it)."""
    if case is None:
        return AlertState()
    return AlertState(
        open=case.state == CASE_OPEN,
        owner=case.owner,
        opened_at=case.opened_at,
        resolved_by=case.resolved_by,
        resolved_at=case.resolved_at,
    )


def age(delta: timedelta) -> str:
    """`2 d 4 h`, `5 h`, `40 min`: how long, roughly."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    return f"{hours} h" if hours else f"{mins} min"


def state_line(state: AlertState, now: datetime | None) -> str:
    """`Owner @U · open for 5 h`, `No owner yet · open for 2 d`, `Resolved by @U <date>`."""
    if not state.open:
        who = slacktext.user(state.resolved_by) if state.resolved_by else "someone"
        when = f" {mrkdwn.slack_date(state.resolved_at)}" if state.resolved_at else ""
        return f":white_check_mark: Resolved by {who}{when}"
    owner = (
        f":bust_in_silhouette: Owner {slacktext.user(state.owner)}"
        if state.owner
        else ":grey_question: No owner yet"
    )
    if now is not None and state.opened_at is not None:
        owner += f" · open for {age(now - state.opened_at)}"
    return owner


def triage_buttons(card_id: str, event_id: int | None, state: AlertState) -> list[ButtonElement]:
    """Assign to me and Resolve on an open exception; Reopen on a resolved one."""
    value = actions.encode_value(actions.ActionValue(card_id, event_id))
    if not state.open:
        return [button("Reopen", action_id=actions.ALERT_REOPEN, value=value)]
    return [
        button("Assign to me", action_id=actions.ALERT_ASSIGN, value=value, style="primary"),
        button("Resolve", action_id=actions.ALERT_RESOLVE, value=value),
    ]


def reopened_note(card_id: str) -> tuple[str, list[Block]]:
    """The thread reply of a resolved alert whose card failed again."""
    text = (
        f":repeat: Reopened: card {escape(card_id)} failed again after this was resolved. "
        "The new alert is in the channel; the exception has no owner until someone takes it."
    )
    return text, [section(text)]


@dataclass(frozen=True)
class ListedCase:
    """One line of `/card exceptions`."""

    card_id: str
    event_id: int | None
    status: str | None
    shipment_status: str | None
    state: AlertState


def exceptions_reply(
    cases: Sequence[ListedCase], *, total: int, mine: bool, now: datetime
) -> tuple[str, list[Block]]:
    """Open exceptions, oldest first, each with its owner, age and the alert's buttons."""
    if not cases:
        text = "You own no open exception." if mine else "No open exception. :tada:"
        return text, [section(text)]
    counted = f"{total} open exception{'' if total == 1 else 's'}"
    text = f"You own {counted}" if mine else counted.capitalize()
    blocks: list[Block] = [section(f"*{text}*, oldest first")]
    for case in cases:
        status = mrkdwn.plain_status(case.status, case.shipment_status)
        blocks.append(section(f"*{escape(case.card_id)}*: {status}\n{state_line(case.state, now)}"))
        elements = triage_buttons(case.card_id, case.event_id, case.state)
        value = actions.encode_value(actions.ActionValue(case.card_id, case.event_id))
        elements.append(button("Refresh status", action_id=actions.ALERT_REFRESH, value=value))
        blocks.append(ActionsBlock(elements=elements))
    if total > len(cases):
        blocks.append(context(f"… and {total - len(cases)} more (the oldest are shown)."))
    return text, blocks


__all__ = [
    "MAX_LISTED",
    "AlertState",
    "ListedCase",
    "age",
    "alert_state",
    "exceptions_reply",
    "reopened_note",
    "state_line",
    "triage_buttons",
]
