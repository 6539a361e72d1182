"""Logging: redaction of card numbers and credentials on every path a record can take, JSON and
text formats, correlation ids from the request to the access line."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.dev.localslack import LocalSlack
from bot.logs import redact
from bot.server import CorrelationMiddleware
from tests.logcapture import captured_logs
from tests.servers import serve_asgi

PANS = ["4111111111111111", "5500 0000 0000 0004", "3782-822463-10005", "6011000990139424"]
BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP_TOKEN = "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef0123456789"
USER_TOKEN = "xoxp-1111-2222-3333-deadbeefcafe"
BEARER = "Bearer abc.DEF-ghi_jkl~mno+pqr/stu="
BASIC = "Basic ZDFjbGllbnQ6c3VwZXJzZWNyZXQ="
CARDHOLDER = "ADA LOVELACE"
JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJpc3N1ZXIifQ.c2lnbmF0dXJlLXBhcnQ"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


PEM = _pem()
PEM_BODY_LINE = PEM.splitlines()[1]
SECRETS = [
    *PANS,
    *(p.replace(" ", "").replace("-", "") for p in PANS),
    BOT_TOKEN.split("-", 1)[1],
    APP_TOKEN.split("-", 1)[1],
    USER_TOKEN.split("-", 1)[1],
    BEARER.split(" ", 1)[1],
    BASIC.split(" ", 1)[1],
    JWT,
    PEM_BODY_LINE,
]


def assert_clean(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"secrets in the log: {leaked}\n{text}"


# --------------------------------------------------------------------------- redact (pure)


@pytest.mark.parametrize("pan", PANS)
def test_redact_masks_pans_keeping_last_four(pan: str) -> None:
    out = redact(f"card {pan} failed")
    digits = pan.replace(" ", "").replace("-", "")
    assert digits not in out.replace(" ", "").replace("-", "")
    assert out.startswith("card ") and out.endswith(" failed")
    assert out.replace(" ", "").replace("-", "").count("*") == len(digits) - 4
    assert digits[-4:] in out.replace(" ", "").replace("-", "")


def test_redact_leaves_ordinary_numbers_alone() -> None:
    text = "card C-123 order 1234567890123 (not Luhn) at 2025-01-31T10:00:00Z, 17 ops, id 42"
    assert redact(text) == text


def test_redact_finds_a_pan_next_to_another_number() -> None:
    out = redact("pan 4111111111111111 5 and 4111111111111111123456789")
    assert "4111111111111111 " not in out
    assert "************1111 5" in out
    # a 25-digit run is not a card number
    assert "4111111111111111123456789" in out


@pytest.mark.parametrize(
    "secret,kept",
    [
        (BOT_TOKEN, "xoxb-"),
        (APP_TOKEN, "xapp-"),
        (USER_TOKEN, "xoxp-"),
        (f"Authorization: {BEARER}", "Authorization: Bearer"),
        (f"authorization={BASIC}", "authorization=Basic"),
        (JWT, ""),
        ("postgresql://d1bot:s3cr3tpw@db:5432/d1bot", "postgresql://d1bot:"),
        ("grant_type=client_credentials&client_secret=hunter2hunter2", "grant_type="),
        ('{"access_token": "tok-abc-123", "expires_in": 900}', '"expires_in": 900'),
        ("https://hooks.slack.com/commands/T1/1234567890/deadbeef", "hooks.slack.com/"),
        ("response_url=https%3A%2F%2Fhooks.slack.com%2Factions%2Fdeadbeef&x=1", "&x=1"),
        ("{'response_url': 'https://example.test/r/deadbeef'}", "response_url"),
    ],
)
def test_redact_removes_credentials(secret: str, kept: str) -> None:
    out = redact(f"x {secret} y")
    assert "[REDACTED" in out
    assert kept in out
    for part in ("1234567890", "A0123456789", "deadbeef", "abc.DEF", "ZDFjbGll", "s3cr3tpw"):
        assert part not in out
    assert "hunter2" not in out and "tok-abc-123" not in out and "c2lnbmF0dXJl" not in out


def test_redact_removes_private_keys_whole_or_escaped() -> None:
    assert PEM_BODY_LINE not in redact(f"key={PEM}")
    assert PEM_BODY_LINE not in redact(repr({"d1_private_key": PEM}))
    truncated = PEM[: len(PEM) // 2]
    assert PEM_BODY_LINE not in redact(truncated)


# --------------------------------------------------------------------------- every log path


def _raise_with(secret: str) -> None:
    card_number = secret  # a local, as a traceback with locals would show
    raise ValueError(f"D1 refused card {card_number}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_survives_any_logging_path(fmt: str) -> None:
    log = logging.getLogger("d1bot.test")
    with captured_logs(fmt=fmt) as stream:
        log.info("plain %s and %s", PANS[0], BOT_TOKEN)
        log.info("mapping %(pan)s %(auth)s", {"pan": PANS[1], "auth": BEARER})
        log.warning("f-string card %s token %s", PANS[2], APP_TOKEN)
        log.info("extra fields", extra={"pan": PANS[3], "header": BASIC, "ids": [PANS[0]]})
        log.info("int arg %d", int(PANS[0]))
        log.info("bad format %s %s", PANS[0])  # one argument short
        log.info(PEM)
        log.info("user %s", USER_TOKEN, stack_info=True)
        try:
            _raise_with(PANS[0])
        except ValueError:
            log.exception("call failed with %s", JWT)
        try:
            try:
                _raise_with(PANS[1])
            except ValueError as inner:
                raise RuntimeError(f"wrapped {BOT_TOKEN}") from inner
        except RuntimeError:
            log.error("chained", exc_info=True)
        logging.getLogger("some.library").debug("headers={'Authorization': '%s'}", BEARER)
    text = stream.getvalue()
    assert_clean(text)
    assert "************1111" in text
    assert "ValueError: D1 refused card ************1111" in text.replace("\\n", "\n")
    if fmt == "json":
        entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert len(entries) == 11
        assert {e["level"] for e in entries} >= {"INFO", "WARNING", "ERROR", "DEBUG"}
        assert all(e["correlation_id"] == "-" for e in entries)
        extra = next(e for e in entries if e["message"] == "extra fields")
        assert extra["pan"] == "************9424" and "[REDACTED]" in extra["header"]
        assert any("exception" in e for e in entries)


async def test_slack_sdk_debug_logs_hold_no_token() -> None:
    """slack_sdk logs every request's parameters at DEBUG: a card number or token in a message
    body would be written as is without the filter."""
    async with LocalSlack() as slack:
        with captured_logs(level="DEBUG") as stream:
            client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
            await client.chat_postMessage(channel="C1", text=f"card {PANS[0]} {USER_TOKEN}")
            await client.auth_test()
    text = stream.getvalue()
    assert "slack_sdk" in text  # the library did log its requests
    assert_clean(text)


def test_slack_libraries_keep_what_happened_and_lose_their_payloads() -> None:
    from bot.logs import PAYLOAD_DROPPED, without_payloads

    sent = without_payloads(
        "Sending a request - url: POST https://slack.com/api/chat.postMessage, "
        "params: {}, json: {'text': 'ADA LOVELACE'}"
    )
    assert sent == (
        "Sending a request - url: POST https://slack.com/api/chat.postMessage, " + PAYLOAD_DROPPED
    )
    webhook = without_payloads("Sending a request - url: http://x/r/1, body: {}", webhook=True)
    assert "http://x/r/1" not in webhook and "{" not in webhook
    assert without_payloads("Unhandled request ({'type': 'x'})").startswith("Unhandled request")
    assert without_payloads("A retry handler found: X") == "A retry handler found: X"


async def test_a_slack_library_record_loses_its_payload_at_every_level() -> None:
    with captured_logs(level="DEBUG") as stream:
        for level in (logging.DEBUG, logging.INFO, logging.WARNING):
            logging.getLogger("slack_bolt.Anything").log(
                level, "request body: {'user': 'ADA LOVELACE', 'pan': '4111+1111+1111+1111'}"
            )
    text = stream.getvalue()
    assert text.count("request body:") == 0 and text.count("request [payload not logged]") == 3
    assert "ADA" not in text and "4111+1111" not in text


# --------------------------------------------------------------------------- access log


def _app() -> CorrelationMiddleware:
    log = logging.getLogger("d1bot.test.app")

    async def hello(request: Request) -> PlainTextResponse:
        log.info("serving %s", request.path_params["card"])
        return PlainTextResponse("ok")

    async def boom(_request: Request) -> PlainTextResponse:
        raise ValueError(f"cannot handle {PANS[0]} with {BOT_TOKEN}")

    return CorrelationMiddleware(
        Starlette(routes=[Route("/cards/{card}", hello), Route("/boom", boom)])
    )


async def test_access_line_carries_the_callers_correlation_id() -> None:
    with captured_logs(fmt="json") as stream:
        async with serve_asgi(_app(), log_config=None) as base, httpx.AsyncClient() as http:
            given = await http.get(f"{base}/cards/C1", headers={"x-correlation-id": "d1-abc_1"})
            by_request_id = await http.get(f"{base}/cards/C2", headers={"x-request-id": "req-9"})
            made = await http.get(f"{base}/cards/C3", headers={"x-correlation-id": "bad id!"})
    assert given.headers["x-correlation-id"] == "d1-abc_1"
    assert by_request_id.headers["x-correlation-id"] == "req-9"
    made_id = made.headers["x-correlation-id"]
    assert made_id != "bad id!" and len(made_id) == 32
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [e for e in entries if e["logger"] == "d1bot.access"]
    assert [(e["http_path"], e["http_status"], e["correlation_id"]) for e in access] == [
        ("/cards/C1", 200, "d1-abc_1"),
        ("/cards/C2", 200, "req-9"),
        ("/cards/C3", 200, made_id),
    ]
    assert all(e["http_method"] == "GET" and e["duration_ms"] >= 0 for e in access)
    # records logged while serving a request carry its id
    serving = [e for e in entries if e["message"].startswith("serving ")]
    assert [e["correlation_id"] for e in serving] == ["d1-abc_1", "req-9", made_id]


async def test_secrets_in_paths_queries_and_crashes_stay_out_of_the_logs() -> None:
    with captured_logs(fmt="text") as stream:
        async with serve_asgi(_app(), log_config=None) as base, httpx.AsyncClient() as http:
            await http.get(
                f"{base}/cards/{PANS[0]}",
                params={"token": BOT_TOKEN},
                headers={"authorization": BEARER},
            )
            crashed = await http.get(f"{base}/boom")
    text = stream.getvalue()
    assert crashed.status_code == 500
    assert "Exception in ASGI application" in text  # uvicorn's traceback went through us
    assert "GET /boom 500" in text
    assert "GET /cards/************1111 200" in text
    access = [line for line in text.splitlines() if "d1bot.access" in line]
    assert len(access) == 2 and not any("token=" in line for line in access)  # no query strings
    assert_clean(text)


# --------------------------------------------------------------------------- the product's doors


async def test_product_paths_log_no_card_numbers_or_credentials(engine) -> None:
    """Notifications (accepted, malformed, unauthenticated), the token endpoint, `/card`
    commands and Slack delivery, all at DEBUG: the captured log holds no secret, no name and
    no response URL."""
    from bot.delivery import worker as outbox
    from tests.intake_support import PATH, bearer, intake_client, make_runtime
    from tests.servers import wait_for
    from tests.slack_signing import SIGNING_SECRET, command_body, signed_headers

    operation = {
        "operationId": "op-redaction-1",
        "operation": "PRODUCE",
        "status": "FAILED",
        "startTime": "2025-03-04T08:00:00Z",
        "endTime": "2025-03-04T08:01:00Z",
        "cardId": "card-redaction-1",
        "error": f"embossing refused for {PANS[0]}",
        "details": {
            "status": "DATA_EXCEPTION",
            "reason": f"PAN {PANS[1]} rejected",
            "shipment": {"carrier": "ups", "status": "FAILED_ATTEMPT", "signedBy": CARDHOLDER},
        },
        "unknownField": PANS[2],
    }
    async with LocalSlack() as slack:
        runtime = make_runtime(
            engine,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.base_url,
        )
        outbox.install(runtime)
        with captured_logs(level="DEBUG") as stream:
            async with intake_client(runtime) as http:
                accepted = await http.post(PATH, json={"operations": [operation]}, headers=bearer())
                malformed = await http.post(
                    PATH,
                    content=f'{{"operations": [{{"cardId": "{PANS[0]}", "status": ',
                    headers={**bearer(), "content-type": "application/json"},
                )
                refused = await http.post(PATH, json=operation, headers={"authorization": BEARER})
                token = await http.post(
                    "/oauth2/token",
                    content="grant_type=client_credentials",
                    headers={
                        "authorization": BASIC,
                        "content-type": "application/x-www-form-urlencoded",
                    },
                )
                for text in (f"status {PANS[0]}", f"subscribe {PANS[3]}", f"status {BOT_TOKEN}"):
                    body = command_body(text, response_url=slack.response_url(), team_id="T1")
                    answer = await http.post(
                        "/slack/events", content=body, headers=signed_headers(body)
                    )
                    assert answer.status_code == 200
                await wait_for(lambda: len(slack.responses) >= 3, message="command replies")
                await wait_for(
                    lambda: slack.messages(channel="CEXCEPTIONS"), message="the exception alert"
                )
    assert accepted.status_code == 204
    assert malformed.status_code == 400
    assert refused.status_code == 401
    assert token.status_code == 401
    text = stream.getvalue()
    assert "POST /slack/events 200" in text and f"POST {PATH} 204" in text
    assert "Slack chat.postMessage answered 200" in text  # the delivery's DEBUG lines
    assert_clean(text)
    assert CARDHOLDER not in text and "/response/" not in text


async def test_notifications_d1_sent_well_are_logged_at_debug_refusals_at_info(engine) -> None:
    """D1 sends notifications by the hundred a second: at INFO, only the refused ones get an
    access line."""
    from tests.intake_support import PATH, bearer, intake_client, make_runtime

    operation = {
        "operationId": "op-access-1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "startTime": "2025-03-04T08:00:00Z",
        "cardId": "card-access-1",
        "details": {"status": "CARD_PROD_REQUESTED"},
    }
    with captured_logs(fmt="json", level="INFO") as stream:
        async with intake_client(make_runtime(engine)) as http:
            stored = await http.post(PATH, json=operation, headers=bearer())
            refused = await http.post(PATH, json=operation, headers={"authorization": BEARER})
    assert (stored.status_code, refused.status_code) == (204, 401)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [(e["http_status"], e["level"]) for e in entries if e["logger"] == "d1bot.access"]
    assert access == [(401, "INFO")]
