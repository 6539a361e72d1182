"""Replies of `/card find` and of a `/card status` that names more than one card: each card
masked and escaped by `bot.render.slacktext`, with its status, last update and a Status button.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

from bot.render import actions, slacktext
from bot.render.mrkdwn import escape, shipment_words, slack_date, status_words
from bot.render.slacktext import button, context, section
from bot.render.views import Reply
from storage.repositories.search import Match


def _match_line(match: Match) -> str:
    card = match.card
    state = status_words(card.status) if card.status else "no events yet"
    if card.shipment_status:
        state += f", {shipment_words(card.shipment_status)}"
    updated = card.state_event_time or card.last_seen_at
    found_by = escape(match.matched_by)
    if match.matched_by != "card id" and match.matched_by != "card id prefix":
        value = (
            card.issuer_request_id
            if match.matched_by == "issuerRequestId"
            else (card.tracking_number)
        )
        found_by += f" `{escape(value)}`"
    return (
        f"*{escape(card.card_id)}*: {state}\n"
        f"Last update {slack_date(updated)} · found by {found_by}"
    )


def _match_block(match: Match) -> Block:
    value = actions.encode_value(actions.ActionValue(card_id=match.card.card_id))
    return SectionBlock(
        text=MarkdownTextObject(text=slacktext.clip(_match_line(match), slacktext.SECTION_TEXT)),
        accessory=button("Status", action_id=actions.STATUS, value=value),
    )


def found_reply(searched: str, matches: Sequence[Match], *, more: bool) -> Reply:
    """Up to 10 cards found for `searched`, each with a Status button; only the asker sees it."""
    what = f"`{escape(searched)}`"
    if not matches:
        text = (
            f"No stored card has the issuerRequestId, tracking number or card id {what}. "
            "Only cards D1 has told us about can be found."
        )
        return Reply(text=text, blocks=[section(f":mag: {text}")])
    count = f"{len(matches)}{'+' if more else ''}"
    noun = "card" if len(matches) == 1 and not more else "cards"
    text = f"{count} {noun} found for {what}"
    blocks: list[Block] = [section(f":mag: *{text}*")]
    blocks.extend(_match_block(m) for m in matches)
    if more:
        blocks.append(context("More cards match: type more of the id to narrow the search."))
    return Reply(text=text, blocks=blocks)


def ambiguous_reply(searched: str, matches: Sequence[Match]) -> Reply:
    """`/card status` with an identifier that names several cards: pick one."""
    what = f"`{escape(searched)}`"
    text = f"{len(matches)} cards have the issuerRequestId or tracking number {what}: pick one."
    blocks: list[Block] = [section(f":mag: {text}")]
    blocks.extend(_match_block(m) for m in matches)
    return Reply(text=text, blocks=blocks)


__all__ = ["ambiguous_reply", "found_reply"]
