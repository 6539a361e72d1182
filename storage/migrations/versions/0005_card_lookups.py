"""card lookups: the issuer's request id on cards, indexes for `/card find`

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "cards",
        sa.Column("issuer_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    op.create_index("ix_cards_issuer_request_id", "cards", ["issuer_request_id"])
    op.create_index("ix_cards_tracking_number", "cards", ["tracking_number"])
    # A card id prefix (`LIKE 'abc%'`) uses this index whatever PostgreSQL's collation.
    op.create_index(
        "ix_cards_card_id_prefix",
        "cards",
        ["card_id"],
        postgresql_ops={"card_id": "text_pattern_ops"},
    )
    # The request id of cards already stored, from their stored operations.
    cards = sa.table("cards", sa.column("card_id"), sa.column("issuer_request_id", sa.String(64)))
    events = sa.table(
        "events", sa.column("card_id"), sa.column("payload", sa.JSON()), sa.column("id")
    )
    bind = op.get_bind()
    found: dict[str, str] = {}
    for card_id, payload in bind.execute(
        sa.select(events.c.card_id, events.c.payload).order_by(events.c.id)
    ):
        if not isinstance(payload, dict):
            continue
        details = payload.get("details") if isinstance(payload.get("details"), dict) else {}
        request_id = (details or {}).get("issuerRequestId") or payload.get("issuerRequestId")
        if isinstance(request_id, str) and request_id:
            found[card_id] = request_id[:64]
    for card_id, request_id in found.items():
        bind.execute(
            sa.update(cards).where(cards.c.card_id == card_id).values(issuer_request_id=request_id)
        )


def downgrade() -> None:
    op.drop_index("ix_cards_card_id_prefix", table_name="cards")
    op.drop_index("ix_cards_tracking_number", table_name="cards")
    op.drop_index("ix_cards_issuer_request_id", table_name="cards")
    op.drop_column("cards", "issuer_request_id")
