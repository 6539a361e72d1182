"""The fast batch path (`intake_batch`) records exactly what the Core path records.

The Core path (`record_operations_in`, one request at a time) is the reference: any stream of
requests, cut into batches in any way, must leave the same cards, events, outbox rows and
per-request results when recorded a batch at a time, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from d1.models import Operation, parse_operations
from storage.repositories.group_commit import GroupCommitter
from storage.repositories.intake import IntakeResult, _facts, record_operations_in
from storage.repositories.intake_batch import BatchRequest, FanOut, record_batch_dbapi
from storage.repositories.intake_batch import write_fan_out as write_fan_out_rows
from storage.repositories.intake_batch_sql import batch_statements
from storage.tables import SubscriptionRecord

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
RECEIVED = datetime(2026, 5, 22, 15, 0, tzinfo=timezone.utc)


def _at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def _produce(
    card: str, status: str, minute: int, op_status: str = "SUCCESSFUL", op_id: str = ""
) -> dict:
    return {
        "operationId": op_id or f"op-{card}",
        "operation": "PRODUCE",
        "status": op_status,
        "cardId": card,
        "endTime": _at(minute),
        "details": {"status": status, "productionSite": f"site-{minute % 2}"},
    }


def _ship(card: str, ship_status: str, minute: int, *, operation: str = "PRODUCE") -> dict:
    return {
        "operationId": f"track-{card}",
        "operation": operation,
        "status": "SUCCESSFUL",
        "cardId": card,
        "timestamp": _at(minute),
        "details": {
            "trackingType": "SHIPMENT",
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "fedex",
                "trackingNumber": "1234567890",
                "status": ship_status,
                "message": f"m{minute}",
                "lastUpdatedAt": _at(minute),
            },
        },
    }


# Two cards; ties in time between states, exceptions, late events, a gap (shipment first).
POOL: list[dict] = [
    _produce("card-a", "CARD_PROD_ONGOING", 1),
    _produce("card-a", "CARD_PROD_ONHOLD", 2),  # exception
    _produce("card-a", "CARD_PROD_ONGOING", 3),
    _produce("card-a", "CARD_PROD_DONE", 3),  # same time as the previous, another state
    _produce("card-a", "CARD_PROD_ONGOING", 4, op_status="FAILED"),  # exception
    _ship("card-a", "IN_TRANSIT", 5),
    _ship("card-a", "IN_TRANSIT", 6),
    _ship("card-a", "OUT_FOR_DELIVERY", 6),  # same update time, other content: tie on content
    _ship("card-a", "DELIVERED", 7, operation="STANDALONE_TRACKING"),
    _produce("card-c", "CARD_PROD_ONGOING", 3),
    _produce("card-c", "CARD_PROD_DONE", 3),  # wins the tie at 3 over ONGOING
    _produce("card-c", "CARD_PROD_DONE", 4, op_status="PENDING"),  # same state, later
    _ship("card-b", "IN_TRANSIT", 1),  # a shipment first: a gap
    _produce("card-b", "CARD_PROD_DONE", 0),
    _ship("card-b", "IN_TRANSIT", 2),
    _produce("card-b", "SOMETHING_NEW", 2),  # unknown status, same time as a shipment
    # Late events around the run of the current state (state_since, `_since_holds`):
    _produce("card-d", "CARD_PROD_ONGOING", 20, op_id="d-20"),
    _produce("card-d", "CARD_PROD_ONGOING", 10, op_id="d-10"),  # before the run: starts earlier
    _produce("card-d", "CARD_PROD_ONHOLD", 15, op_id="d-15"),  # another state inside the run
    _produce("card-d", "CARD_PROD_ONHOLD", 5, op_id="d-5"),  # another state before the run
]


def _operations(indexes: list[int]) -> list[Operation]:
    ops: list[Operation] = []
    for i in indexes:
        ops += parse_operations(dict(POOL[i]))
    return ops


def _subscribe(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        for channel, card, filter in [
            ("CALL", "card-a", "all"),
            ("CEXC", "card-a", "exceptions"),
            ("CB", "card-b", "all"),
            ("CB2", "card-b", "all"),
        ]:
            s.add(
                SubscriptionRecord(
                    workspace_id="T1",
                    channel_id=channel,
                    card_id=card,
                    filter=filter,
                    created_by="U1",
                )
            )


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("outbox", "events", "cards"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


def _parsed(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _state(engine: Engine, results: list[IntakeResult]) -> dict[str, Any]:
    """Everything recorded, with database ids replaced by dedup keys (sequences differ) and
    JSON columns parsed (the paths serialise the same content with different spacing)."""
    with engine.connect() as conn:
        events = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM events"))]
        for event in events:
            event["payload"] = _parsed(event["payload"])
        key = {e["id"]: e["dedup_key"] for e in events}
        cards = []
        for r in conn.execute(sa.text("SELECT * FROM cards ORDER BY card_id")):
            row = dict(r._mapping)
            row["shipment"] = _parsed(row["shipment"])
            row["last_event_id"] = key.get(row["last_event_id"])
            cards.append(row)
        outbox: dict[str, list[tuple]] = {}
        for r in conn.execute(sa.text("SELECT * FROM outbox ORDER BY id")):
            row = dict(r._mapping)
            outbox.setdefault(row["kind"], []).append(
                (
                    row["workspace_id"],
                    row["channel_id"],
                    row["card_id"],
                    key[row["event_id"]],
                    row["subscription_id"],
                    row["thread_key"],
                    row["state"],
                    row["attempts"],
                    str(row["next_attempt_at"]),
                    str(row["created_at"]),
                )
            )
    for e in events:
        del e["id"]
        e["payload"] = str(e["payload"])  # same JSON content, compared as text of the dict
    per_request = [
        (
            [key[i] for i in r.new_event_ids],
            r.duplicates,
            r.enqueued,
            [key[i] for i in r.exception_event_ids],
            r.gap_card_ids,
        )
        for r in results
    ]
    events.sort(key=lambda e: e["dedup_key"])
    return {"cards": cards, "events": events, "outbox": outbox, "results": per_request}


def _received(n: int) -> datetime:
    return RECEIVED + timedelta(seconds=n)


def _core(engine: Engine, requests: list[list[int]]) -> list[IntakeResult]:
    results = []
    for n, request in enumerate(requests):
        with engine.begin() as conn:
            results.append(
                record_operations_in(
                    conn,
                    _operations(request),
                    received_at=_received(n),
                    workspace_id="T1",
                    exceptions_channel="CALERT",
                )
            )
    return results


def _batched(engine: Engine, requests: list[list[int]], cuts: list[int]) -> list[IntakeResult]:
    """As the SQLite group committer does: statements, then the fan-out, then the commit."""
    results: list[IntakeResult] = []
    bounds = sorted({0, len(requests), *(c % (len(requests) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        batch = [
            BatchRequest([_facts(op, frozenset()) for op in _operations(requests[n])], _received(n))
            for n in range(start, end)
        ]
        with engine.connect() as conn, conn.begin():
            raw = conn.connection.dbapi_connection
            fan_out = FanOut()
            results += record_batch_dbapi(
                raw,
                conn.dialect.name,
                batch,
                workspace_id="T1",
                exceptions_channel="CALERT",
                fan_out=fan_out,
            )
            write_fan_out_rows(raw, conn.dialect.name, fan_out)
    return results


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    requests=st.lists(
        st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=3), min_size=1, max_size=10
    ),
    cuts=st.lists(st.integers(0, 10), max_size=4),
)
# Snapshot tie at the same update time, the winner first; a later event of the state that won
# a tie in time (state_since moves): in one batch and in separate batches.
@example(requests=[[7], [6]], cuts=[])
@example(requests=[[7], [6]], cuts=[1])
@example(requests=[[9], [10], [11]], cuts=[])
@example(requests=[[9, 10], [11]], cuts=[1])
@example(requests=[[16], [17], [19], [18]], cuts=[1, 2, 3])
@example(requests=[[16], [19, 17], [18]], cuts=[1, 2])
def test_batches_record_what_the_core_path_records(
    any_engine: Engine, requests: list[list[int]], cuts: list[int]
) -> None:
    _clear(any_engine)
    with any_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM subscriptions"))
    _subscribe(any_engine)
    expected = _state(any_engine, _core(any_engine, requests))
    _clear(any_engine)
    assert _state(any_engine, _batched(any_engine, requests, cuts)) == expected


async def test_committer_takes_the_fast_path_inline_and_in_the_thread(any_engine: Engine) -> None:
    _subscribe(any_engine)
    requests = [[0], [1, 2], [5, 6], [8], [9, 10, 11], [0]]
    expected = _state(any_engine, _core(any_engine, requests))
    for options in ({}, {"inline_max_operations": 0}, {"inline": False}):
        _clear(any_engine)
        committer = GroupCommitter(
            any_engine, workspace_id="T1", exceptions_channel="CALERT", **options
        )
        try:
            results = await asyncio.gather(
                *(
                    committer.submit(_operations(r), received_at=_received(n))
                    for n, r in enumerate(requests)
                )
            )
        finally:
            await committer.stop()
        assert _state(any_engine, list(results)) == expected, options
        assert committer.stats.fallbacks == 0
        assert committer.stats.batches < len(requests)


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
    ),
    offset_minutes=st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
)
def test_batch_timestamps_are_what_sqlalchemy_stores(
    moment: datetime, offset_minutes: int | None
) -> None:
    """The fast path binds timestamps itself: SQLite gets the text SQLAlchemy would store for
    the UTC time (a naive value is read as UTC), PostgreSQL an aware UTC datetime."""
    if offset_minutes is None:
        value, utc = moment, moment.replace(tzinfo=timezone.utc)
    else:
        value = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
        utc = value.astimezone(timezone.utc)
    sqlalchemy_text = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert sqlalchemy_text is not None
    assert batch_statements("sqlite").ts(value) == sqlalchemy_text(utc.replace(tzinfo=None))
    on_postgres = batch_statements("postgresql").ts(value)
    assert on_postgres == utc and on_postgres.utcoffset() == timedelta(0)
