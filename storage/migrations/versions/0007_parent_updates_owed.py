"""threads.parent_update_due_at: parent updates the workspace budget postponed, kept across
restarts

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(
            sa.Column("parent_update_due_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_threads_parent_update_due_at", ["parent_update_due_at"])


def downgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.drop_index("ix_threads_parent_update_due_at")
        batch.drop_column("parent_update_due_at")
