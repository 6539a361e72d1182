"""The database engine, built from `DATABASE_URL` in the composition root (never at import).

SQLite (the default) runs in WAL mode with a busy timeout, foreign keys on and
`synchronous=FULL`, so that a 204 to D1 means the data survives a power cut (see
docs/storage.md for what NORMAL would buy). PostgreSQL is reached through psycopg 3, with
bounds on how long a lost network can hold a connection (`POSTGRES_NETWORK_BOUNDS`).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.columns import json_for_column

DEFAULT_DATABASE_URL = "sqlite:///./d1bot.db"
SQLITE_BUSY_TIMEOUT_MS = 5000
# libpq options (defaults; the URL's own query wins): a connection attempt gives up after 5 s,
# and a connection whose server vanished (a network cut, a failover) fails within about 10 s
# (TCP keepalives on an idle wait, `tcp_user_timeout` on unacknowledged writes) instead of
# holding its thread, and the worker or the shutdown waiting on it, for the kernel's minutes.
# A slow query is not affected: the server's kernel answers keepalives.
POSTGRES_NETWORK_BOUNDS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def normalise_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str = DEFAULT_DATABASE_URL,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    pool_size: int = 5,
    echo: bool = False,
) -> Engine:
    """An engine for `url`, with the SQLite pragmas this product relies on."""
    url = normalise_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_serializer": json_for_column}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": busy_timeout_ms / 1000,
            # We manage transactions ourselves (BEGIN IMMEDIATE for writers).
            "isolation_level": None,
        }
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = 10
        kwargs["poolclass"] = sa.pool.QueuePool
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = 10
        # A connection the pool kept across a database restart or a network cut is tested
        # (and replaced) before use, so the first query after the database's return works.
        kwargs["pool_pre_ping"] = True
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {
                k: v for k, v in POSTGRES_NETWORK_BOUNDS.items() if k not in parsed.query
            }
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    return engine


def _configure_sqlite(engine: Engine, *, synchronous: str, busy_timeout_ms: int) -> None:
    if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
        raise ValueError(f"unknown SQLite synchronous mode {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    # pysqlite's own transaction handling is off (isolation_level=None): emit BEGIN ourselves,
    # IMMEDIATE so that a writer takes the write lock up front instead of failing on upgrade.
    # The writers of this engine also queue for a lock of ours first: SQLite's busy handler
    # retries with sleeps of up to 100 ms, so a writer (the outbox worker) that meets another
    # writer committing back to back (intake under load) could lose every race for seconds.
    # A writer that cannot have it within the busy timeout goes on and lets SQLite decide.
    gate = threading.Lock()
    gate_timeout = busy_timeout_ms / 1000

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE" and gate.acquire(timeout=gate_timeout):
            connection.info["d1bot_gate"] = True
        try:
            # Straight to the driver: every transaction of the app begins here, and the
            # statement machinery costs more than the BEGIN itself.
            connection.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
        except sqlite3.Error as exc:  # as SQLAlchemy raises it (locked: OperationalError)
            _release(connection)
            raise sa.exc.DBAPIError.instance(f"BEGIN {mode}", None, exc, sqlite3.Error) from exc
        except BaseException:
            _release(connection)
            raise

    def _release(connection: sa.Connection) -> None:
        if connection.info.pop("d1bot_gate", False):
            gate.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
