"""Finding stored cards by what an agent has: the issuer's request id, a carrier tracking number,
or the start of a card id. Every lookup is an index seek (ix_cards_issuer_request_id,
ix_cards_tracking_number, the primary key as a range on SQLite, ix_cards_card_id_prefix on
PostgreSQL), so it stays fast at millions of cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from d1.models import CARD_ID_PATTERN
from storage.tables import CardRecord

BY_REQUEST_ID = "issuerRequestId"
BY_TRACKING_NUMBER = "tracking number"
BY_CARD_ID = "card id"
BY_CARD_ID_PREFIX = "card id prefix"
# Above every character a card id may hold: `prefix <= id < prefix + TOP` is "starts with".
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class Match:
    """A card found, and by what it was found."""

    card: CardRecord
    matched_by: str


@dataclass(frozen=True)
class Found:
    """Up to `limit` matches, exact ones first; `more` when others were left out."""

    matches: list[Match]
    more: bool


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _prefix_filter(engine: Engine, prefix: str) -> Any:
    card_id = col(CardRecord.card_id)
    if engine.dialect.name == "postgresql":
        return card_id.like(_like_prefix(prefix), escape="\\")
    return (card_id >= prefix) & (card_id < prefix + _TOP)


def find_cards(engine: Engine, *, text: str, limit: int = 10) -> Found:
    """Cards whose issuerRequestId or tracking number is `text`, then those whose id starts
    with it (the card with exactly that id first), newest activity first within each kind."""
    newest = (col(CardRecord.last_seen_at).desc(), col(CardRecord.card_id))
    queries = [
        (BY_REQUEST_ID, col(CardRecord.issuer_request_id) == text),
        (BY_TRACKING_NUMBER, col(CardRecord.tracking_number) == text),
    ]
    if CARD_ID_PATTERN.match(text):
        queries.append((BY_CARD_ID_PREFIX, _prefix_filter(engine, text)))
    matches: list[Match] = []
    seen: set[str] = set()
    more = False
    with Session(engine, expire_on_commit=False) as session:
        for matched_by, where in queries:
            wanted = limit + 1 - len(matches)
            rows = session.exec(select(CardRecord).where(where).order_by(*newest).limit(wanted))
            for card in rows:
                if card.card_id in seen:
                    continue
                if len(matches) == limit:
                    more = True
                    break
                seen.add(card.card_id)
                by = (
                    BY_CARD_ID
                    if matched_by == BY_CARD_ID_PREFIX and card.card_id == text
                    else (matched_by)
                )
                matches.append(Match(card=card, matched_by=by))
            if more:
                break
    exact = [m for m in matches if m.matched_by != BY_CARD_ID_PREFIX]
    by_prefix = [m for m in matches if m.matched_by == BY_CARD_ID_PREFIX]
    exact.sort(key=lambda m: m.matched_by != BY_CARD_ID)  # the very card id first
    return Found(matches=exact + by_prefix, more=more)


def cards_known_as(engine: Engine, *, text: str, limit: int = 10) -> list[CardRecord]:
    """The cards whose issuerRequestId or tracking number is exactly `text` (for `/card
    status`, which needs one answer: two or more means ambiguous)."""
    query = (
        select(CardRecord)
        .where(
            (col(CardRecord.issuer_request_id) == text) | (col(CardRecord.tracking_number) == text)
        )
        .order_by(col(CardRecord.last_seen_at).desc(), col(CardRecord.card_id))
        .limit(limit)
    )
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(query).all())


__all__ = [
    "BY_CARD_ID",
    "BY_CARD_ID_PREFIX",
    "BY_REQUEST_ID",
    "BY_TRACKING_NUMBER",
    "CardRecord",
    "Found",
    "Match",
    "cards_known_as",
    "find_cards",
]
