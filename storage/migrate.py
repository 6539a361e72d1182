"""Apply the Alembic migrations to an engine: `d1bot migrate`, `d1bot serve` at start, tests.

Idempotent and cheap when the database is already at head (one small query), because tests
create many databases and several replicas may start at once. On PostgreSQL an advisory lock
serialises concurrent upgrades.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant identifying "d1bot schema migration" among PostgreSQL advisory locks.
_PG_LOCK_ID = 0x0D1B07


def alembic_config() -> Config:
    """Alembic configured in code: the script directory shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    return _script().get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending_revisions(engine: Engine) -> list[tuple[str, str]]:
    """The migrations the database lacks, oldest first: (revision, what it does)."""
    current = current_revision(engine)
    found = []
    for script in _script().walk_revisions():  # newest first
        if script.revision == current:
            break
        found.append((script.revision, (script.doc or "").split(":")[0].strip()))
    return found[::-1]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (head by default); a no-op when already there."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
        try:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                conn.commit()


__all__ = ["alembic_config", "current_revision", "head_revision", "pending_revisions", "upgrade"]


def main() -> int:
    """`python -m storage.migrate`: bring `DATABASE_URL`'s database to head. `d1bot serve` runs
    it in a child process, so that the server itself never loads Alembic."""
    from storage.db import make_engine

    engine = make_engine(os.environ["DATABASE_URL"])
    try:
        upgrade(engine)
    except Exception as exc:  # one line in serve's log, not a traceback (driver text names hosts)
        print(
            f"migration failed ({type(exc).__name__}): `d1bot migrate --verbose` shows why",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
