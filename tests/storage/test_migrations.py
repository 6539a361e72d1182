"""Migrations and models agree, and upgrading is idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from storage.db import make_engine
from storage.migrate import current_revision, head_revision, upgrade


def _diff(engine: Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, SQLModel.metadata)


def test_migrated_database_matches_the_models(any_engine: Engine) -> None:
    assert _diff(any_engine) == []


def test_upgrade_is_idempotent_and_reports_head(any_engine: Engine) -> None:
    assert current_revision(any_engine) == head_revision()
    upgrade(any_engine)
    upgrade(any_engine)
    assert current_revision(any_engine) == head_revision()
    assert _diff(any_engine) == []


def test_empty_database_has_no_revision_until_upgraded(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
