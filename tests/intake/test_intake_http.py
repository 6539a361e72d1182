"""The notification endpoint over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import re

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.metrics import NOTIFICATIONS_REJECTED, OPERATIONS_REJECTED
from storage.repositories.cards import events_of_card, get_card
from storage.repositories.fanout import expand_all
from storage.repositories.quarantine import list_quarantined
from storage.tables import SubscriptionRecord
from tests.intake_support import (
    ISSUER,
    PATH,
    basic,
    bearer,
    count,
    intake_client,
    make_runtime,
    snapshot,
)
from tests.spec_examples import notification_examples

EXAMPLE_CARD = "c-9f8e7d6c5b4a"


async def test_each_seed_example_alone_then_all_in_bulk(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine)
    examples = notification_examples()
    async with intake_client(runtime) as client:
        for example in examples:
            r = await client.post(
                PATH,
                content=json.dumps(example),
                headers=bearer() | {"Content-Type": "application/json"},
            )
            assert r.status_code == 204, r.text
            assert r.content == b""
        assert count(any_engine, "events") == 4
        # The same four again in one bulk request: all duplicates, nothing new.
        r = await client.post(PATH, json={"operations": examples}, headers=bearer())
        assert r.status_code == 204
    assert count(any_engine, "events") == 4
    card = get_card(any_engine, card_id=EXAMPLE_CARD)
    assert card is not None and card.status == "CARD_RETURNED"


async def test_bulk_examples_into_an_empty_database(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine)
    async with intake_client(runtime) as client:
        r = await client.post(PATH, json={"operations": notification_examples()}, headers=bearer())
    assert r.status_code == 204
    history = events_of_card(any_engine, card_id=EXAMPLE_CARD)
    assert [e.details_status for e in history] == [
        "CARD_SHIPPED",
        "CARD_SHIPPED",
        "CARD_SHIPPED",
        "CARD_RETURNED",
    ]
    assert [e.operation_status for e in history][:2] == ["SUCCESSFUL", "PENDING"]


async def test_same_request_three_times_stores_one_event(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine)
    body = notification_examples()[2]
    async with intake_client(runtime) as client:
        answers = await asyncio.gather(
            *(client.post(PATH, json=body, headers=bearer()) for _ in range(3))
        )
    assert [a.status_code for a in answers] == [204, 204, 204]
    assert count(any_engine, "events") == 1


async def test_fan_out_wakes_the_outbox_and_reports_gaps(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine)
    runtime.outbox_wakeup = asyncio.Event()
    gaps: list[str] = []
    runtime.gap_listeners.append(gaps.append)
    with Session(any_engine) as s, s.begin():
        s.add(SubscriptionRecord(workspace_id="T1", channel_id="C1", card_id="k1", created_by="U"))
    shipped = {
        "operationId": "op-k1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": "k1",
        "startTime": "2026-05-01T07:00:00Z",
        "endTime": "2026-05-03T07:00:00Z",
        "details": {"status": "CARD_SHIPPED"},
    }
    async with intake_client(runtime) as client:
        r = await client.post(PATH, json=shipped, headers=bearer())
        assert r.status_code == 204
    assert runtime.outbox_wakeup.is_set()
    assert gaps == ["k1"]
    assert count(any_engine, "fanouts") == 1  # owed, written as one marker
    assert expand_all(any_engine) == 1  # what the woken worker does first
    assert count(any_engine, "outbox") == 1 and count(any_engine, "fanouts") == 0


async def test_token_flow_then_notification(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine, d1_notify_token=None)

    async with intake_client(runtime) as client:
        r = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "notifications"},
            headers={"Authorization": basic()},
        )
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        answer = r.json()
        assert answer["token_type"] == "Bearer" and answer["expires_in"] == 900
        assert answer["scope"] == "notifications"
        # D1's OAuth pages write expires_at as an ISO 8601 UTC time with milliseconds.
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer["expires_at"])
        r = await client.post(
            PATH, json=notification_examples()[0], headers=bearer(answer["access_token"])
        )
        assert r.status_code == 204
    assert count(any_engine, "events") == 1


# --------------------------------------------------------------------------- refusals


def _valid() -> dict:
    return copy.deepcopy(notification_examples()[2])


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"{not json", "body"),
    ("array", b"[]", "body"),
    ("empty operations", b'{"operations": []}', "operations"),
    ("operations not a list", b'{"operations": {}}', "operations"),
    ("not utf-8", b'{"operationId": "\xff"}', "body"),
    ("NaN", b'{"operationId": NaN}', "body"),
    ("nested beyond json's own limit", b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body"),
]


@pytest.mark.parametrize(("name", "raw", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_unreadable_bodies_are_refused_whole_and_store_nothing(
    engine: Engine, name: str, raw: bytes, field: str
) -> None:
    runtime = make_runtime(engine, d1_notify_max_body_bytes=1_000_000)
    before = snapshot(engine)
    async with intake_client(runtime) as client:
        r = await client.post(
            PATH, content=raw, headers=bearer() | {"Content-Type": "application/json"}
        )
    assert r.status_code == 400
    assert r.json() == {"errorCode": "FIELD_INVALID_FORMAT", "error": field}
    assert snapshot(engine) == before


BAD_OPERATIONS: list[tuple[str, dict, str, str]] = [
    (
        "missing cardId",
        {k: v for k, v in _valid().items() if k != "cardId"},
        "cardId",
        "FIELD_INVALID_FORMAT",
    ),
    (
        "bad date deep inside",
        {**_valid(), "details": {"shipment": {"lastUpdatedAt": "x"}}},
        "details.shipment.lastUpdatedAt",
        "FIELD_INVALID_FORMAT",
    ),
    ("bad card id", {**_valid(), "cardId": "has space"}, "cardId", "FIELD_INVALID_FORMAT"),
    ("another issuer", {**_valid(), "issuerId": "someone-else"}, "issuerId", "FIELD_INVALID_VALUE"),
    (
        "time beyond year 9999 in UTC",
        {**_valid(), "startTime": "9999-12-31T23:30:00-01:00"},
        "startTime",
        "FIELD_INVALID_VALUE",
    ),
]


@pytest.mark.parametrize(
    ("name", "bad", "field", "code"), BAD_OPERATIONS, ids=[b[0] for b in BAD_OPERATIONS]
)
async def test_a_bad_operation_is_quarantined_and_the_others_stored(
    engine: Engine, name: str, bad: dict, field: str, code: str
) -> None:
    """D1 never retries a 4xx: the valid operations of the body are stored, the bad one is kept
    in quarantine (PANs masked) and named in the 400."""
    good = {**_valid(), "operationId": "op-good", "cardId": "card-good"}
    bad = {**bad, "operationId": "op-bad", "error": "card 4111 1111 1111 1111 refused"}
    refused_before = OPERATIONS_REJECTED._value.get()
    runtime = make_runtime(engine)
    async with intake_client(runtime) as client:
        r = await client.post(PATH, json={"operations": [good, bad]}, headers=bearer())
    assert r.status_code == 400
    assert r.json() == {
        "errorCode": code,
        "error": "1 of 2 operations refused, the others stored",
        "rejectedOperations": [
            {"index": 1, "operationId": "op-bad", "field": f"operations[1].{field}"}
        ],
    }
    assert count(engine, "events") == 1
    (kept,) = list_quarantined(engine)
    assert (kept.operation_index, kept.operation_id, kept.field, kept.error_code) == (
        1,
        "op-bad",
        f"operations[1].{field}",
        code,
    )
    assert kept.payload["error"] == "card ************1111 refused"
    assert OPERATIONS_REJECTED._value.get() == refused_before + 1


async def test_refusals_store_nothing(any_engine: Engine) -> None:
    runtime = make_runtime(any_engine, d1_notify_max_body_bytes=2048)
    body = json.dumps(_valid()).encode()
    json_ct = {"Content-Type": "application/json"}
    before = snapshot(any_engine)
    refused_before = NOTIFICATIONS_REJECTED.labels(reason="unauthorized")._value.get()
    async with intake_client(runtime) as client:
        cases = [
            (401, await client.post(PATH, content=body, headers=json_ct)),
            (401, await client.post(PATH, content=body, headers=json_ct | bearer("wrong"))),
            (401, await client.post(PATH, content=body, headers=json_ct | bearer("d1n1.9.a.b"))),
            (
                401,
                await client.post(
                    PATH, content=body, headers=json_ct | {"Authorization": f"Basic {'x' * 8}"}
                ),
            ),
            (
                404,
                await client.post(
                    PATH.replace(ISSUER, "someone-else"), content=body, headers=json_ct | bearer()
                ),
            ),
            (415, await client.post(PATH, content=body, headers=bearer())),
            (
                415,
                await client.post(
                    PATH, content=body, headers=bearer() | {"Content-Type": "text/plain"}
                ),
            ),
            (
                413,
                await client.post(PATH, content=b" " * 2049 + body, headers=bearer() | json_ct),
            ),
            (
                413,  # no Content-Length: counted while streaming
                await client.post(
                    PATH,
                    content=_chunks([b" " * 1500, b" " * 1500, body]),
                    headers=bearer() | json_ct,
                ),
            ),
        ]
    for expected, answer in cases:
        assert answer.status_code == expected, (expected, answer.text)
        payload = answer.json()
        assert set(payload) == {"errorCode", "error"}
    assert cases[0][1].json()["errorCode"] == "AUTHORIZER_UNAUTHORIZED"
    assert NOTIFICATIONS_REJECTED.labels(reason="unauthorized")._value.get() >= refused_before + 4
    assert snapshot(any_engine) == before


async def _chunks(parts: list[bytes]):  # type: ignore[no-untyped-def]
    for part in parts:
        yield part


async def test_without_credentials_everything_is_refused(engine: Engine) -> None:
    runtime = make_runtime(
        engine, d1_notify_client_id=None, d1_notify_client_secret=None, d1_notify_token=None
    )
    async with intake_client(runtime) as client:
        r = await client.post(PATH, json=_valid(), headers=bearer())
        t = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic Og=="},
        )
    assert r.status_code == 401 and t.status_code == 401
    assert count(engine, "events") == 0


async def test_busy_database_answers_503_then_accepts_the_retry(tmp_path) -> None:
    from storage.db import make_engine
    from storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    holder = make_engine(url)
    upgrade(holder)
    engine = make_engine(url, busy_timeout_ms=100)
    runtime = make_runtime(engine)
    try:
        async with intake_client(runtime) as client:
            with holder.begin() as conn:  # BEGIN IMMEDIATE: the write lock is held
                conn.exec_driver_sql("SELECT 1")
                r = await client.post(PATH, json=_valid(), headers=bearer())
            assert r.status_code == 503
            assert r.json()["errorCode"] == "SERVICE_UNAVAILABLE"
            assert r.headers["retry-after"] == "1"
            r = await client.post(PATH, json=_valid(), headers=bearer())
            assert r.status_code == 204
        assert count(engine, "events") == 1
    finally:
        engine.dispose()
        holder.dispose()
