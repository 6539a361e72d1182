"""Shared fixtures: a real SQLite file database, and PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the tables)
from storage.db import make_engine

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")


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


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'd1bot.db'}"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite file database, new for each test."""
    eng = make_engine(sqlite_url)
    _prepare(eng)
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
    _reset_postgres(eng)
    _prepare(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The same test on SQLite and (when available) on PostgreSQL."""
    name = "engine" if request.param == "sqlite" else "pg_engine"
    yield request.getfixturevalue(name)
