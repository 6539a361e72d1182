"""card lookups and exception owners: the issuer's request id on cards, indexes for `/card
find`; exception cases (owner, resolve, reopen) replacing alert acknowledgements, migrated

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

    op.create_index("ix_audit_card", "audit_log", ["card_id", "at"])
    _exception_cases()


def _exception_cases() -> None:
    """The table, then today's acknowledgements as owned open cases, and every card now in an
    exception without one as an open case; their latest alert from the outbox."""
    op.create_table(
        "exception_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("alert_channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("alert_ts", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("alert_event_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("card_id", name="uq_exception_case_card"),
    )
    op.create_index("ix_exception_cases_state", "exception_cases", ["state", "owner", "opened_at"])
    bind = op.get_bind()
    cases: dict[str, dict[str, object]] = {}
    acks = bind.execute(
        sa.text(
            "SELECT a.card_id, a.event_id, a.acked_by, a.acked_at, e.received_at"
            " FROM alert_acks a LEFT JOIN events e ON e.id = a.event_id ORDER BY a.acked_at"
        )
    )
    for card_id, event_id, acked_by, acked_at, received_at in acks:
        opened = cases.get(card_id, {}).get("opened_at") or received_at or acked_at
        cases[card_id] = {
            "owner": acked_by,
            "assigned_at": acked_at,
            "opened_at": opened,
            "last_failure_at": received_at or acked_at,
            "last_event_id": event_id,
        }
    current = bind.execute(
        sa.text(
            "SELECT card_id, last_event_id, coalesce(state_since, last_seen_at), last_seen_at"
            " FROM cards WHERE is_exception"
        )
    )
    for card_id, event_id, since, seen in current:
        if card_id not in cases:
            cases[card_id] = {
                "owner": None,
                "assigned_at": None,
                "opened_at": since,
                "last_failure_at": seen,
                "last_event_id": event_id,
            }
    alerts = bind.execute(
        sa.text(
            "SELECT card_id, workspace_id, channel_id, slack_ts, event_id FROM outbox"
            " WHERE kind = 'exception_alert' AND slack_ts IS NOT NULL ORDER BY id"
        )
    )
    latest = {row[0]: row[1:] for row in alerts}
    table = sa.table(
        "exception_cases",
        *(
            sa.column(name)
            for name in (
                "card_id",
                "workspace_id",
                "state",
                "owner",
                "assigned_at",
                "opened_at",
                "last_failure_at",
                "last_event_id",
                "failures",
                "reopened",
                "alert_channel",
                "alert_ts",
                "alert_event_id",
            )
        ),
    )
    for card_id, case in cases.items():
        workspace, channel, ts, alert_event = latest.get(card_id, ("", None, None, None))
        bind.execute(
            sa.insert(table).values(
                card_id=card_id,
                workspace_id=workspace or "",
                state="open",
                failures=1,
                reopened=0,
                alert_channel=channel,
                alert_ts=ts,
                alert_event_id=alert_event,
                **case,
            )
        )
    op.drop_table("alert_acks")


def downgrade() -> None:
    op.drop_index("ix_audit_card", table_name="audit_log")
    op.create_table(
        "alert_acks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("card_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("acked_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_alert_ack_event"),
    )
    op.execute(
        "INSERT INTO alert_acks (event_id, card_id, acked_by, acked_at)"
        " SELECT coalesce(alert_event_id, last_event_id), card_id, owner, assigned_at"
        " FROM exception_cases WHERE owner IS NOT NULL AND assigned_at IS NOT NULL"
        " AND coalesce(alert_event_id, last_event_id) IS NOT NULL"
    )
    op.drop_index("ix_exception_cases_state", table_name="exception_cases")
    op.drop_table("exception_cases")
    op.drop_index("ix_cards_card_id_prefix", table_name="cards")
    op.drop_index("ix_cards_tracking_number", table_name="cards")
    op.drop_index("ix_cards_issuer_request_id", table_name="cards")
    op.drop_column("cards", "issuer_request_id")
