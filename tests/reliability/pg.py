"""PostgreSQL for the reliability tests: a fresh, empty database (skip without one)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from storage.db import make_engine
from tests.conftest import POSTGRES_URL, _reset_postgres


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """TEST_DATABASE_URL with its public schema emptied (the bot stack migrates it)."""
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL not configured: set TEST_DATABASE_URL to run the replica and "
            "PostgreSQL reliability tests"
        )
    engine = make_engine(POSTGRES_URL)
    try:
        _reset_postgres(engine)
    finally:
        engine.dispose()
    yield POSTGRES_URL
