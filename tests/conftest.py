"""Shared fixtures: a real SQLite file database, and PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the tables)
from storage.db import make_engine


def _postgres_url_of_this_worker(url: str) -> str:
    """TEST_DATABASE_URL, or under pytest-xdist a database of this worker's own beside it
    (created when missing): workers must not empty each other's tables."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = make_engine(url)
    try:
        with admin.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).first()
            if exists is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


POSTGRES_URL = _postgres_url_of_this_worker(os.environ.get("TEST_DATABASE_URL", ""))


def _prepare(engine: Engine) -> None:
    """Schema for a test database: the migrations when they exist, else the models."""
    try:
        from storage.migrate import upgrade
    except ImportError:
        SQLModel.metadata.create_all(engine)
    else:
        upgrade(engine)


def _reset_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


# PostgreSQL databases this session has migrated from an empty schema (see `_empty_postgres`).
_MIGRATED_POSTGRES: set[str] = set()


def _empty_postgres(engine: Engine) -> None:
    """A migrated PostgreSQL schema with no rows. The first time in a session it is dropped and
    migrated (the database may hold a schema from older code); after that, while it is still at
    head with the models' tables, their rows are deleted and the sequences restarted instead
    (about 15 ms, against 150 to 400 ms for dropping and migrating)."""
    from storage.migrate import current_revision, head_revision

    url = engine.url.render_as_string(hide_password=False)
    if url in _MIGRATED_POSTGRES and current_revision(engine) == head_revision():
        tables = SQLModel.metadata.sorted_tables
        with engine.begin() as conn:
            present = set(
                conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables"
                    " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                ).scalars()
            )
            if present == {table.name for table in tables}:
                for table in reversed(tables):  # referencing tables first
                    conn.execute(table.delete())
                sequences = conn.exec_driver_sql(
                    "SELECT sequence_name FROM information_schema.sequences"
                    " WHERE sequence_schema = 'public'"
                ).scalars()
                for sequence in sequences.all():
                    conn.exec_driver_sql(f'ALTER SEQUENCE public."{sequence}" RESTART')
                return
    _reset_postgres(engine)
    _prepare(engine)
    _MIGRATED_POSTGRES.add(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'd1bot.db'}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once for the session: each test's database starts as a copy of
    it (running the migrations takes about 40 ms a database, copying the file about one)."""
    path = tmp_path_factory.mktemp("migrated") / "d1bot.db"
    eng = make_engine(f"sqlite:///{path}")
    try:
        _prepare(eng)
    finally:
        eng.dispose()
    return path


@pytest.fixture
def engine(sqlite_url: str, migrated_sqlite: Path) -> Iterator[Engine]:
    """A migrated SQLite file database, new for each test."""
    with (
        contextlib.closing(sqlite3.connect(migrated_sqlite)) as source,
        contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as copy,
    ):
        source.backup(copy)
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A migrated, empty PostgreSQL database (skips without TEST_DATABASE_URL)."""
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL not configured: set TEST_DATABASE_URL (.ci/run does when a "
            "server runs on loopback)"
        )
    eng = make_engine(POSTGRES_URL)
    _empty_postgres(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The same test on SQLite and (when available) on PostgreSQL."""
    name = "engine" if request.param == "sqlite" else "pg_engine"
    yield request.getfixturevalue(name)
