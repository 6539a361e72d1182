"""Fuzzing `/card`: generated texts against the parser (pure) and against the signed Slack
endpoint over real HTTP. The parser only ever answers a command or a `CommandError` whose
reply never repeats the input; a PAN anywhere is refused; the endpoint never answers 5xx and
no reply, channel message or audit row ever carries a PAN."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from bot.dev.localslack import LocalSlack
from bot.runtime import Runtime
from bot.server import create_app
from bot.settings import Settings
from bot.slack import commands as cmd
from d1.carddata import contains_pan, find_pans
from tests.reliability.threaded import served_in_thread
from tests.slack_signing import SIGNING_SECRET, command_body, signed_headers

PANS = ["4111111111111111", "5500 0000 0000 0004", "378282246310005", "4111-1111-1111-1111"]
WORDS = [
    "status", "track", "subscribe", "unsubscribe", "list", "digest", "help", "schedule",
    "post", "off", "production", "shipment", "return", "exceptions", "card-1", "crd_2",
    "trackingNumber=1Z999", "carrier=fedex", "shipmentDate=2026-05-01", "08:00", "Europe/Paris",
    "'", '"', "=", "--", "\\", "\t",
]  # fmt: skip
MARKER = st.from_regex(r"zq[a-z0-9]{8}", fullmatch=True)
TEXTS = st.one_of(
    st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(PANS), MARKER), max_size=6).map(
        " ".join
    ),
    st.text(max_size=120),
    st.tuples(st.sampled_from(WORDS), st.sampled_from(PANS)).map(lambda t: f"{t[0]} {t[1]}"),
)


# --------------------------------------------------------------------------- the parser


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, marker=MARKER)
def test_parser_answers_a_command_or_a_safe_refusal(text: str, marker: str) -> None:
    typed = f"{text} {marker}" if text.strip() else marker
    try:
        cmd.parse_command(typed)
    except cmd.CommandError as exc:
        assert marker not in exc.reply  # the input is never repeated
        assert not contains_pan(exc.reply)
        assert exc.pan_refused == contains_pan(typed)
    else:
        assert not contains_pan(typed), "a PAN reached a parsed command"


# --------------------------------------------------------------------------- the endpoint


@pytest.fixture
def endpoint(engine: Engine) -> Iterator[tuple[str, LocalSlack, httpx.Client]]:
    """The app's Slack endpoint, LocalSlack, and one client for all the examples of the test
    (a new client per example would cost more than the request: it loads the CA bundle)."""

    def app(slack: LocalSlack) -> Any:
        runtime = Runtime(
            settings=Settings(
                _env_file=None,  # type: ignore[call-arg]
                slack_bot_token="xoxb-test",
                slack_signing_secret=SIGNING_SECRET,
            ),
            engine=engine,
            slack_client=AsyncWebClient(token="xoxb-test", base_url=slack.base_url),
        )
        return create_app(runtime, run_background=False)

    with served_in_thread(app) as (url, slack), httpx.Client(timeout=30) as http:
        yield f"{url}/slack/events", slack, http


def _wait_for_reply(slack: LocalSlack, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while len(slack.responses) < count:
        assert time.monotonic() < deadline, "no reply at response_url"
        time.sleep(0.01)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=TEXTS)
def test_card_endpoint_never_fails_or_echoes_a_pan(
    endpoint: tuple[str, LocalSlack, httpx.Client], engine: Engine, text: str
) -> None:
    url, slack, http = endpoint
    expected = len(slack.responses) + 1
    body = command_body(text, response_url=slack.response_url())
    answer = http.post(url, content=body, headers=signed_headers(body))
    assert answer.status_code == 200, answer.text
    assert not find_pans(answer.text)
    _wait_for_reply(slack, expected)
    sent = json.dumps(slack.responses) + json.dumps([c.body for c in slack.calls])
    assert not find_pans(sent)
    with engine.connect() as conn:
        audit = json.dumps(
            [list(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM audit_log"))]
        )
    assert not find_pans(audit)
