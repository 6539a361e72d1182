"""The statements of the intake fast path (`intake_batch`), as driver-level text per dialect.

Written as text for the driver cursor: SQLAlchemy's per-statement execution cost was most of
the writer's time (see `intake_batch`). The same statements run on SQLite and PostgreSQL; only
`IS` / `IS NOT DISTINCT FROM`, the lowest timestamp and `FOR UPDATE OF c` differ. The per-row
statements bind their values as a tuple in a fixed order (`*_PARAMS`): on SQLite as numbered
parameters (`?3`), on PostgreSQL by name (`%(name)s`, from `BatchSql.params`). By name,
`sqlite3` makes a string of every parameter's name and looks it up in the dict, per row:
measured 3.6 against 2.2 us for a 15-column insert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any

from storage.db import sqlite_timestamp
from storage.repositories.intake_sql import EVENT_COLUMNS
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS

# Rows per `IN (...)` list: far below SQLite's and PostgreSQL's bind parameter limits.
CHUNK = 500

# The card columns the projection writes back (state_since is computed by the UPDATE itself).
CARD_WRITE = (
    "issuer_id",
    "status",
    "operation",
    "operation_status",
    "production_site",
    "reason",
    "state_rank",
    "state_event_time",
    "last_event_id",
    "is_exception",
    "shipment",
    "shipment_status",
    "shipment_message",
    "carrier",
    "tracking_number",
    "estimated_delivery_at",
    "delivered_at",
    "last_shipment_update_at",
    "last_seen_at",
)
# The order of each per-row statement's values (SQLite binds them by number).
ENSURE_CARD_PARAMS = ("card_id", "issuer_id", "received_at")
FANOUT_MARKER_PARAMS = (
    "card_id",
    "event_id",
    "is_exception",
    "workspace_id",
    "alert_channel",
    "received_at",
)
# SQLite: markers per multi-row INSERT (6 variables a row, far below SQLite's limit).
MARKERS_PER_STATEMENT = 256
UPDATE_CARD_PARAMS = (*CARD_WRITE, "card_id", "cur_status", "cur_ship_status", "cur_at")
KEEP_SINCE_PARAMS = (*CARD_WRITE, "card_id")


@dataclass(frozen=True)
class BatchSql:
    """The statements for one dialect, as driver-level text."""

    dialect: str
    ensure_card: str
    select_cards: str
    insert_event: str
    earlier_produce: str
    fanout_marker: str
    update_card: str
    update_card_keep_since: str

    def params(self, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
        """One row's values (in the order of `names`) as this driver binds them."""
        return values if self.dialect == "sqlite" else dict(zip(names, values, strict=True))

    def rows(self, names: tuple[str, ...], values: list[tuple[Any, ...]]) -> Any:
        """`params` for every row of an executemany."""
        if self.dialect == "sqlite":
            return values
        return [dict(zip(names, row, strict=True)) for row in values]

    def ts(self, value: datetime | None) -> Any:
        """A datetime as the column stores it: SQLAlchemy's SQLite text form, else aware."""
        if value is None:
            return None
        if self.dialect == "sqlite":
            return sqlite_timestamp(value)
        if value.utcoffset() is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def _paramstyle(sql: str, dialect: str, order: tuple[str, ...] | None = None) -> str:
    """`:name` to `%(name)s` (psycopg); on SQLite, to `?N` by the name's place in `order`
    (values bound as a tuple), or left as is without an order."""
    if dialect != "sqlite":
        return _NAMED.sub(r"%(\1)s", sql)
    if order is None:
        return sql
    number = {name: index for index, name in enumerate(order, 1)}
    return _NAMED.sub(lambda m: f"?{number[m.group(1)]}", sql)


@cache
def fanout_markers_sql(rows: int) -> str:
    """SQLite: INSERT of `rows` fan-out markers in one statement (values bound in
    FANOUT_MARKER_PARAMS order, row after row)."""
    one = "(" + ", ".join("?" * len(FANOUT_MARKER_PARAMS)) + ")"
    return f"INSERT INTO fanouts ({', '.join(FANOUT_MARKER_PARAMS)}) VALUES " + ", ".join(
        [one] * rows
    )


@cache
def batch_statements(dialect: str) -> BatchSql:
    pg = dialect == "postgresql"
    same = "IS NOT DISTINCT FROM" if pg else "IS"
    lowest = "'-infinity'::timestamptz" if pg else "''"
    event_columns = ", ".join(EVENT_COLUMNS)
    event_values = ", ".join(":" + c for c in EVENT_COLUMNS)
    # When the card entered its current state: the earliest event of that state after the last
    # event of another state (the Core path's `state_since`, inlined in the card update).
    state_since = (
        "COALESCE((SELECT MIN(e.event_time) FROM events e WHERE e.card_id = :card_id"
        f" AND e.event_time <= :cur_at AND e.details_status {same} :cur_status"
        f" AND e.shipment_status {same} :cur_ship_status"
        " AND e.event_time > COALESCE((SELECT MAX(b.event_time) FROM events b"
        " WHERE b.card_id = :card_id AND b.event_time < :cur_at"
        f" AND NOT (b.details_status {same} :cur_status"
        f" AND b.shipment_status {same} :cur_ship_status)), {lowest})), :cur_at)"
    )
    sql = {
        "ensure_card": (
            "INSERT INTO cards (card_id, issuer_id, state_rank, is_exception, first_seen_at,"
            " last_seen_at) VALUES (:card_id, :issuer_id, 0, FALSE, :received_at, :received_at)"
            " ON CONFLICT (card_id) DO NOTHING"
        ),
        "select_cards": (
            "SELECT c.*, e.dedup_key AS cur_dedup_key, e.details_status AS cur_status,"
            " e.shipment_status AS cur_ship_status, e.event_time AS cur_at,"
            " (SELECT count(*) FROM subscriptions s WHERE s.card_id = c.card_id"
            f" AND s.filter = '{FILTER_ALL}') AS subs_all,"
            " (SELECT count(*) FROM subscriptions s WHERE s.card_id = c.card_id"
            f" AND s.filter = '{FILTER_EXCEPTIONS}') AS subs_exceptions,"
            # Another state's event at the very time of the current one (it lost the tie):
            # then a later event of the current state does move state_since (_Card.since_holds).
            " EXISTS (SELECT 1 FROM events b WHERE b.card_id = c.card_id"
            " AND b.event_time = e.event_time AND b.id <> e.id"
            f" AND NOT (b.details_status {same} e.details_status"
            f" AND b.shipment_status {same} e.shipment_status)) AS cur_tied"
            " FROM cards c LEFT JOIN events e ON e.id = c.last_event_id"
            " WHERE c.card_id IN ({ids}) ORDER BY c.card_id" + (" FOR UPDATE OF c" if pg else "")
        ),
        "insert_event": (
            f"INSERT INTO events ({event_columns}) VALUES ({event_values})"
            " ON CONFLICT (dedup_key) DO NOTHING RETURNING id"
        ),
        "earlier_produce": (
            "SELECT 1 FROM events WHERE card_id = :card_id AND operation = 'PRODUCE'"
            " AND id <> :event_id LIMIT 1"
        ),
        # The batch's fan-out markers (`fanouts`), expanded into outbox rows by the worker.
        "fanout_marker": (
            "INSERT INTO fanouts (card_id, event_id, is_exception, workspace_id, alert_channel,"
            " received_at) VALUES (:card_id, :event_id, :is_exception, :workspace_id,"
            " :alert_channel, :received_at)"
        ),
        "update_card": (
            "UPDATE cards SET "
            + ", ".join(f"{c} = :{c}" for c in CARD_WRITE)
            + f", state_since = {state_since} WHERE card_id = :card_id"
        ),
        # state_since unchanged (see _Card.since_holds), or no current event in history.
        "update_card_keep_since": (
            "UPDATE cards SET "
            + ", ".join(f"{c} = :{c}" for c in CARD_WRITE)
            + " WHERE card_id = :card_id"
        ),
    }
    orders = {
        "ensure_card": ENSURE_CARD_PARAMS,
        "insert_event": EVENT_COLUMNS,
        "update_card": UPDATE_CARD_PARAMS,
        "update_card_keep_since": KEEP_SINCE_PARAMS,
    }
    return BatchSql(
        dialect=dialect, **{k: _paramstyle(v, dialect, orders.get(k)) for k, v in sql.items()}
    )


def in_list(sql: str, count: int, dialect: str) -> str:
    marks = ", ".join(["?" if dialect == "sqlite" else "%s"] * count)
    return sql.replace("{ids}", marks)


__all__ = [
    "CARD_WRITE",
    "CHUNK",
    "ENSURE_CARD_PARAMS",
    "KEEP_SINCE_PARAMS",
    "UPDATE_CARD_PARAMS",
    "BatchSql",
    "batch_statements",
    "in_list",
]
