"""Finding cards by issuerRequestId, tracking number and card id prefix, on SQLite and
PostgreSQL (the prefix is a range on one and `LIKE` on the other)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage.repositories import search
from storage.tables import CardRecord

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def _cards(engine: Engine, *cards: CardRecord) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(cards)


def test_find_orders_exact_matches_first_and_escapes_the_prefix(any_engine: Engine) -> None:
    _cards(
        any_engine,
        CardRecord(card_id="ab_1", last_seen_at=NOW),
        CardRecord(card_id="abx1", last_seen_at=NOW),
        CardRecord(card_id="ab", last_seen_at=NOW - timedelta(days=1)),
        CardRecord(card_id="zz-9", issuer_request_id="ab", last_seen_at=NOW),
        CardRecord(card_id="yy-8", tracking_number="ab", last_seen_at=NOW),
        CardRecord(card_id="AB-2", last_seen_at=NOW),
    )
    found = search.find_cards(any_engine, text="ab")
    assert [(m.card.card_id, m.matched_by) for m in found.matches] == [
        ("ab", search.BY_CARD_ID),
        ("zz-9", search.BY_REQUEST_ID),
        ("yy-8", search.BY_TRACKING_NUMBER),
        ("ab_1", search.BY_CARD_ID_PREFIX),
        ("abx1", search.BY_CARD_ID_PREFIX),
    ]
    assert not found.more
    # `_` is a character of the prefix, not a wildcard; case matters
    assert [m.card.card_id for m in search.find_cards(any_engine, text="ab_").matches] == ["ab_1"]
    assert search.find_cards(any_engine, text="aB").matches == []
    # a limit reached says that more exist
    limited = search.find_cards(any_engine, text="ab", limit=2)
    assert len(limited.matches) == 2 and limited.more
    # text that cannot be a card id is looked up exactly only
    assert search.find_cards(any_engine, text="ab 1").matches == []
    assert [c.card_id for c in search.cards_known_as(any_engine, text="ab")] == ["yy-8", "zz-9"]
