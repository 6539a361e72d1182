"""Callback credentials and body parsing (pure: `d1.notifications`)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from d1.notifications import (
    BearerVerifier,
    NotificationRejected,
    NotifyCredentials,
    basic_client_ok,
    bearer_ok,
    is_json_content_type,
    issue_token,
    issued_token_ok,
    parse_body,
)

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
    assert [o.card_id for o in parse_body(op)] == ["c"]
    assert len(parse_body(b'{"operations":[' + op + b"," + op + b"]}")) == 2


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


def test_nul_characters_are_refused_by_field() -> None:
    raw = (
        b'{"operationId":"o","operation":"PRODUCE","status":"PENDING","cardId":"c",'
        b'"details":{"reason":"a\\u0000b"}}'
    )
    with pytest.raises(NotificationRejected) as caught:
        parse_body(raw)
    assert caught.value.body() == {"errorCode": "FIELD_INVALID_FORMAT", "error": "details.reason"}


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
    """`parse_body` validates the bytes in one step when it can be sure of the outcome: when it
    answers, it must be exactly what `json.loads` and the model decide (operations, and
    whether the body is bulk, which names the field of a foreign issuer)."""
    from d1.notifications import _parse_judged, _parse_valid

    raw = text.encode(encoding)
    try:
        judged: object = _parse_judged(raw)
    except NotificationRejected as exc:
        judged = exc.body()
    except RecursionError:  # json.loads' own limit: the one-step parse has a lower one
        pytest.skip("nested too deep for json.loads")
    one_step = _parse_valid(raw)
    if one_step is not None:
        assert isinstance(judged, tuple)
        assert [op.model_dump() for op in one_step[0]] == [op.model_dump() for op in judged[0]]
        assert one_step[1] == judged[1]
    try:
        answered: object = parse_body(raw)
    except NotificationRejected as exc:
        answered = exc.body()
    if isinstance(judged, tuple):
        assert isinstance(answered, list)
        assert [op.model_dump() for op in answered] == [op.model_dump() for op in judged[0]]
    else:
        assert answered == judged
