"""Callback credentials and body parsing (pure: `d1.callback_auth`, `d1.notifications`)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from d1.callback_auth import (
    BearerVerifier,
    NotifyCredentials,
    basic_client_ok,
    bearer_ok,
    issue_token,
    issued_token_ok,
)
from d1.notifications import NotificationRejected, is_json_content_type, parse_body

NOW = datetime(2026, 5, 22, 12, 0, tzinfo=timezone.utc)
CREDS = NotifyCredentials(client_id="id", client_secret="secret", token_ttl_seconds=60)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_issued_tokens_verify_until_they_expire() -> None:
    token = issue_token(CREDS, now=NOW).access_token
    assert issued_token_ok(token, CREDS, now=NOW + timedelta(seconds=59))
    assert not issued_token_ok(token, CREDS, now=NOW + timedelta(seconds=60))
    assert bearer_ok(f"Bearer {token}", CREDS, now=NOW)
    assert bearer_ok(f"bearer  {token}", CREDS, now=NOW)


def test_tokens_are_bound_to_the_secret_and_tamper_evident() -> None:
    token = issue_token(CREDS, now=NOW).access_token
    other = NotifyCredentials(client_id="id", client_secret="rotated")
    assert not issued_token_ok(token, other, now=NOW)
    prefix, expires, nonce, mac = token.split(".")
    later = f"{prefix}.{int(expires) + 3600}.{nonce}.{mac}"
    assert not issued_token_ok(later, CREDS, now=NOW)
    for broken in ["", "x", "d1n1.1.2", "d1n1.abc.n.m", token + "x"]:
        assert not issued_token_ok(broken, CREDS, now=NOW)


def test_another_replica_with_the_same_secret_accepts_the_token() -> None:
    token = issue_token(CREDS, now=NOW).access_token
    replica = NotifyCredentials(client_id="id", client_secret="secret")
    assert issued_token_ok(token, replica, now=NOW)


def test_static_token_and_schemes() -> None:
    creds = NotifyCredentials(static_token="static")
    assert bearer_ok("Bearer static", creds, now=NOW)
    assert not bearer_ok("Bearer stati", creds, now=NOW)
    assert not bearer_ok("Basic static", creds, now=NOW)
    assert not bearer_ok(None, creds, now=NOW)
    assert not bearer_ok("Bearer ", creds, now=NOW)
    with pytest.raises(ValueError):
        issue_token(creds, now=NOW)


def test_basic_client_credentials() -> None:
    assert basic_client_ok(_basic("id", "secret"), CREDS)
    assert basic_client_ok(_basic("id", "secret").replace("Basic", "basic"), CREDS)
    assert not basic_client_ok(_basic("id", "wrong"), CREDS)
    assert not basic_client_ok(_basic("other", "secret"), CREDS)
    assert not basic_client_ok("Basic !!!notbase64", CREDS)
    assert not basic_client_ok("Basic " + base64.b64encode(b"nocolon").decode(), CREDS)
    assert not basic_client_ok(_basic("id", "secret"), NotifyCredentials(static_token="t"))
    assert not basic_client_ok(None, CREDS)


def test_content_types() -> None:
    assert is_json_content_type("application/json")
    assert is_json_content_type("Application/JSON; charset=utf-8")
    assert is_json_content_type("application/vnd.d1+json")
    assert not is_json_content_type("text/plain")
    assert not is_json_content_type(None)


def test_single_and_bulk_bodies() -> None:
    op = b'{"operationId":"o","operation":"PRODUCE","status":"PENDING","cardId":"c"}'
    assert [o.card_id for o in parse_body(op).operations] == ["c"]
    assert len(parse_body(b'{"operations":[' + op + b"," + op + b"]}").operations) == 2


def test_the_verifier_remembers_verified_tokens_until_they_expire() -> None:
    """`BearerVerifier` answers as `bearer_ok` does, for remembered tokens too."""
    creds = NotifyCredentials(
        client_id="id", client_secret="secret", static_token="static", token_ttl_seconds=60
    )
    verifier = BearerVerifier(creds, max_tokens=2)
    tokens = [issue_token(creds, now=NOW).access_token for _ in range(3)]
    later = NOW + timedelta(seconds=59)
    for when in (NOW, later):  # first verified, then remembered
        assert all(verifier.ok(f"Bearer {t}", now=when) for t in tokens)
    assert len(verifier._expiry) == 2  # bounded
    expired = NOW + timedelta(seconds=60)
    assert not any(verifier.ok(f"Bearer {t}", now=expired) for t in tokens)
    assert not verifier._expiry
    tampered = tokens[0][:-2] + ("AA" if not tokens[0].endswith("AA") else "BB")
    rotated = BearerVerifier(NotifyCredentials(client_id="id", client_secret="rotated"))
    for authorization in (f"Bearer {tampered}", f"Bearer {tokens[0]}x", "Basic x", None):
        assert not verifier.ok(authorization, now=NOW)
    assert not rotated.ok(f"Bearer {tokens[0]}", now=NOW)
    assert verifier.ok("bearer  static", now=expired)
    assert not verifier.ok("Bearer stati", now=NOW)


def test_nul_characters_are_stripped_and_the_operation_accepted() -> None:
    raw = (
        b'{"operationId":"o","operation":"PRODUCE","status":"PENDING","cardId":"c",'
        b'"details":{"reason":"a\\u0000b"},"newField":"x\\u0000"}'
    )
    parsed = parse_body(raw)
    assert not parsed.rejected
    (op,) = parsed.operations
    assert op.details.reason == "ab" and op.model_extra == {"newField": "x"}


@pytest.mark.parametrize(
    ("member", "field", "code"),
    [
        ('"startTime":"0001-01-01T00:00:00+01:00"', "startTime", "FIELD_INVALID_VALUE"),
        ('"endTime":"9999-12-31T23:59:59-01:00"', "endTime", "FIELD_INVALID_VALUE"),
        ('"startTime":"123"', "startTime", "FIELD_INVALID_FORMAT"),
        ('"details":{"shipment":{"lastUpdatedAt":0}}', "details.shipment.lastUpdatedAt",
         "FIELD_INVALID_FORMAT"),
        ('"x":' + "1" * 5000, "x", "FIELD_INVALID_VALUE"),
        ('"x":18446744073709551616', "x", "FIELD_INVALID_VALUE"),
        ('"x":' + "[" * 40 + "]" * 40, "x" + "[0]" * 29, "FIELD_INVALID_FORMAT"),
        ('"error":"\\ud800"', "error", "FIELD_INVALID_FORMAT"),
        ('"k\\nERROR forged":{"\\ud800":1}', '["k\\nERROR forged"]["\\ud800"]',
         "FIELD_INVALID_FORMAT"),
        ('"4111\\u00a01111 1111\\t1111":{"x":1e999}', '["************1111"].x',
         "FIELD_INVALID_VALUE"),
    ],
)  # fmt: skip
def test_what_cannot_be_processed_is_refused_by_field(member: str, field: str, code: str) -> None:
    """Values that parse but cannot be compared or stored are refused by name, one operation at
    a time (the others of the body stay accepted); a name from the body is written escaped."""
    good = '{"operationId":"good","operation":"PRODUCE","status":"PENDING","cardId":"c"}'
    bad = '{"operationId":"bad","operation":"PRODUCE","status":"PENDING","cardId":"c",' + member
    raw = ('{"operations":[' + good + "," + bad + "}]}").encode()
    parsed = parse_body(raw)
    assert [op.operation_id for op in parsed.operations] == ["good"]
    (rejected,) = parsed.rejected
    assert rejected.answer() == {
        "index": 1,
        "operationId": "bad",
        "field": "operations[1]" + ("" if field.startswith("[") else ".") + field,
    }
    assert rejected.error_code == code
    assert "\n" not in rejected.field and json.dumps(rejected.payload)  # storable


def test_lenient_where_d1_may_be() -> None:
    """A date alone, a leap second, a time without offset, unknown fields and values."""
    raw = (
        b'{"operationId":"o","operation":"FUTURE_OP","status":"NEW_STATUS","cardId":"c",'
        b'"startTime":"2016-12-31T23:59:60Z","endTime":"2026-01-02T03:04:05",'
        b'"details":{"status":"CARD_TELEPORTED","shipment":{"estimatedDeliveryDate":"2026-01-05",'
        b'"newCarrierField":{"a":[1,2]}}}}'
    )
    parsed = parse_body(raw)
    assert not parsed.rejected
    (op,) = parsed.operations
    assert op.start_time is not None and op.start_time.second == 59
    assert op.end_time is not None and op.end_time.utcoffset() is not None
    assert op.details.shipment is not None
    assert op.details.shipment.estimated_delivery_date is not None
    assert op.details.shipment.model_extra == {"newCarrierField": {"a": [1, 2]}}


_OP = '"operationId":"o","operation":"PRODUCE","status":"PENDING","cardId":"c"'
_EDGE_BODIES = [
    "{" + _OP + "}",
    '{"operations":[{' + _OP + "},{" + _OP + ',"issuerId":"other"}]}',
    '{"operations":[]}',
    '{"operations":{}}',
    "{" + _OP + ',"details":{"reason":"operations","shipment":{"message":"\\"operations\\""}}}',
    "{" + _OP + ',"\\u006fperations":[{' + _OP + "}]}",  # the key spelt with an escape
    '{"\\u006fperations":5,' + _OP + "}",
    "{" + _OP + ',"cardId":"second"}',  # a duplicate key: the last one counts
    "{" + _OP + ',"details":{"shipment":{"failedDeliveryAttempts":' + "9" * 30 + "}}}",
    "{" + _OP + ',"details":{"shipment":{"failedDeliveryAttempts":NaN}}}',
    "{" + _OP + ',"timestamp":1700000000.5,"endTime":"2026-01-01T00:00:00"}',
    "{" + _OP + ',"details":{"dueDate":"2026-01-01T00:00:00Z","shipment":null}}',
    "{" + _OP + ',"details":null,"x":' + "[" * 300 + "]" * 300 + "}",
    "{" + _OP + ',"error":"\\ud800 lone surrogate","details":{"reason":"\\ud83d\\ude00"}}',
    "{" + _OP + ',"details":{"reason":"a\\u0000b"}}',
    '{"operations":[{' + _OP + ',"error":"\\ud800","details":{"reason":"\\ud83d\\ude00"}}]}',
    '{"operations":[{' + _OP + ',"details":{"reason":"a\\u0000b"}}]}',
    "{" + _OP + "} trailing",
    "[{" + _OP + "}]",
    '"text"',
    "{" + _OP.replace('"c"', '"bad card"') + "}",
]


@pytest.mark.parametrize("text", _EDGE_BODIES)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_the_one_step_parse_decides_as_the_step_by_step_one(text: str, encoding: str) -> None:
    """`parse_body` validates the bytes in one step when it can be sure of the outcome: its
    answer must be exactly what `json.loads` and the model decide, operation by operation."""
    from d1.notifications import _parse_each

    raw = text.encode(encoding)

    def outcome(parse: object) -> object:
        try:
            parsed = parse()  # type: ignore[operator]
        except NotificationRejected as exc:
            return exc.body()
        return (
            [op.model_dump() for op in parsed.operations],
            [(r.answer(), r.error_code, r.payload) for r in parsed.rejected],
        )

    judged = outcome(lambda: _parse_each(raw, "issuer"))
    assert outcome(lambda: parse_body(raw, issuer_id="issuer")) == judged
