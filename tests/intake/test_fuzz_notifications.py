"""Fuzzing the notification endpoint over real HTTP (hypothesis, bounded examples): generated
bodies, headers and content types. Never a 5xx, never a row stored for a refused request (but
the refused operations of a body, in quarantine), and never a PAN echoed in an answer or
stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from bot.server import create_app
from d1.carddata import contains_pan
from tests.intake_support import ISSUER, PATH, STATIC_TOKEN, make_runtime, snapshot
from tests.reliability.threaded import served_in_thread

PAN = "4111111111111111"
REFUSALS = {400, 401, 404, 413, 415}
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

STATUSES = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_SHIPPED", "DATA_EXCEPTION", "WHATEVER"]
TIMES = st.one_of(
    st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
        lambda d: d.isoformat().replace("+00:00", "Z")
    ),
    st.sampled_from(["", "yesterday", "2026-13-45T99:00:00Z", PAN]),
    st.integers(),
    st.none(),
)
TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from([PAN, f"card {PAN}", "4111 1111 1111 1111", "\x00", "x" * 300]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    """An operation close to D1's, with any field possibly wrong, missing or extra."""
    op: dict[str, Any] = {
        "operationId": draw(st.one_of(TEXT, st.uuids().map(str))),
        "operation": draw(st.sampled_from(["PRODUCE", "STANDALONE_TRACKING", "?", ""])),
        "status": draw(st.sampled_from(["SUCCESSFUL", "FAILED", "PENDING", "nope"])),
        "cardId": draw(st.one_of(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True), TEXT)),
        "issuerId": draw(st.sampled_from([ISSUER, "other-issuer", PAN])),
        "startTime": draw(TIMES),
        "endTime": draw(TIMES),
        "details": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"status": st.one_of(st.sampled_from(STATUSES), TEXT)},
                    optional={"reason": TEXT, "shipment": JSON_ANY, "productionSite": TEXT},
                ),
                JSON_ANY,
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(sorted(op)), max_size=3, unique=True)):
        del op[key]
    extra = draw(st.dictionaries(st.text(max_size=10), JSON_ANY, max_size=2))
    return {**extra, **op}


BODIES = st.one_of(
    operations().map(json.dumps),
    st.lists(operations(), max_size=4).map(lambda ops: json.dumps({"operations": ops})),
    JSON_ANY.map(json.dumps),
    TEXT,
).map(lambda s: s.encode("utf-8", "surrogatepass"))
RAW_BODIES = st.one_of(BODIES, st.binary(max_size=200))
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/vnd.d1+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    # what an HTTP client can send at all: visible ASCII, no surrounding whitespace
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip),
)
AUTHS = st.one_of(
    st.just(f"Bearer {STATIC_TOKEN}"),
    st.sampled_from(["", "Bearer", f"Basic {STATIC_TOKEN}", f"Bearer {PAN}", "Bearer x y"]),
)


def _texts(cell: str) -> list[str]:
    """The text a stored cell holds: a JSON column's strings and keys (its numbers are numbers:
    `2.2438147794617535e+83` is not a card number), or the cell itself."""
    try:
        value = json.loads(cell)
    except ValueError:
        return [cell]
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            for key, element in item.items():
                found.append(key)
                walk(element)

    walk(value)
    return found if isinstance(value, dict | list) else [cell]


@pytest.fixture
def intake(engine: Engine) -> Iterator[httpx.Client]:
    """A client of the served app, one for all the examples of a test (a new client per
    example would cost more than the request: it loads the CA bundle each time)."""
    runtime = make_runtime(engine)
    with (
        served_in_thread(lambda _slack: create_app(runtime)) as (url, _slack),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


@FUZZ
@given(body=RAW_BODIES, content_type=CONTENT_TYPES, auth=AUTHS)
def test_notification_endpoint_never_fails_or_stores_a_refusal(
    intake: httpx.Client, engine: Engine, body: bytes, content_type: str, auth: str
) -> None:
    headers = {"Authorization": auth, "Content-Type": content_type}
    before = snapshot(engine)
    answer = intake.post(PATH, content=body, headers=headers)
    assert answer.status_code == 204 or answer.status_code in REFUSALS, answer.text
    assert not contains_pan(answer.text)
    assert PAN not in answer.text and PAN not in str(answer.headers)
    after = snapshot(engine)
    refused = answer.json().get("rejectedOperations", []) if answer.status_code == 400 else []
    if refused:  # the refused operations are quarantined, the others stored
        assert len(after["quarantine"]) == len(before["quarantine"]) + len(refused)
        cells = [v for rows in after.values() for row in rows for v in row if isinstance(v, str)]
        assert not [text for cell in cells for text in _texts(cell) if contains_pan(text)]
    elif answer.status_code != 204:
        assert after == before  # nothing stored for a refused request


@FUZZ
@given(ops=st.lists(operations(), min_size=1, max_size=5))
def test_accepted_notifications_are_all_stored(
    intake: httpx.Client, engine: Engine, ops: list[dict[str, Any]]
) -> None:
    """Closer to valid bodies: accepted means every operation is in the history."""
    answer = intake.post(
        PATH,
        content=json.dumps({"operations": ops}),  # NaN/Infinity included, as a sender might
        headers={"Authorization": f"Bearer {STATIC_TOKEN}", "Content-Type": "application/json"},
    )
    assert answer.status_code in {204, 400}, answer.text
    assert not contains_pan(answer.text)
    if answer.status_code == 204:
        stored = {row[3] for row in snapshot(engine)["events"]}  # operation_id column
        assert {str(op["operationId"])[:128] for op in ops} <= stored
