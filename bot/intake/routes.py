"""D1's door: `POST /notifications/d1/v2/issuers/{issuerId}/cards` and `POST /oauth2/token`.

Intake validates and dispatches, nothing else: credentials are judged by `d1.callback_auth`
and the body by `d1.notifications`, the recording is `storage.repositories` (through
`IntakeCommitter`), and the answer is 204 only after the commit. A body that cannot be read gets
a D1-style `{"errorCode", "error"}` naming what is wrong (never a value from the body); a body
with some bad operations gets 400 naming each (`rejectedOperations`) after the others are
stored and the bad ones quarantined, since D1 does not retry a 4xx; a busy database gets 503 so
that D1 retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.intake.committer import IntakeCommitter
from bot.intake.openapi import ISSUER_PLACEHOLDER, NOTIFICATIONS_PATH, openapi_document
from bot.metrics import (
    INTAKE_LATENCY,
    NOTIFICATIONS_DUPLICATE,
    NOTIFICATIONS_RECEIVED,
    NOTIFICATIONS_REJECTED,
    OPERATIONS_REJECTED,
)
from bot.runtime import BackgroundTask, Runtime, nothing_to_start
from d1.callback_auth import BearerVerifier, NotifyCredentials, basic_client_ok, issue_token
from d1.notifications import (
    NotificationRejected,
    ParsedBody,
    is_json_content_type,
    parse_body,
)
from storage.repositories.intake import QuarantinedOperation

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/token"
TOKEN_MAX_BODY_BYTES = 8 * 1024


class _TooLarge(Exception):
    pass


def credentials_from(runtime: Runtime) -> NotifyCredentials:
    s = runtime.settings
    return NotifyCredentials(
        client_id=s.d1_notify_client_id or None,
        client_secret=(
            s.d1_notify_client_secret.get_secret_value() if s.d1_notify_client_secret else None
        ),
        static_token=s.d1_notify_token.get_secret_value() if s.d1_notify_token else None,
        token_ttl_seconds=s.d1_notify_token_ttl_seconds,
    )


def committer_for(runtime: Runtime) -> IntakeCommitter:
    """The process's intake committer, stopped (after answering what is queued) with the app."""
    s = runtime.settings
    committer = IntakeCommitter(
        runtime.engine,
        workspace_id=s.d1bot_workspace_id,
        exceptions_channel=s.d1bot_exceptions_channel or None,
        extra_exception_statuses=s.extra_exception_statuses,
    )

    runtime.background.append(
        BackgroundTask(
            name="intake",
            start=nothing_to_start,
            stop=committer.stop,
            is_healthy=committer.is_healthy,
        )
    )
    return committer


def d1_error(status: int, code: str, error: str, **headers: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "error": error}, status_code=status, headers=headers)


def oauth_error(status: int, code: str, description: str, **headers: str) -> JSONResponse:
    """RFC 6749 section 5.2 error answer."""
    return JSONResponse(
        {"error": code, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **headers},
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused early (Content-Length) or as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _reject(reason: str, response: Response) -> Response:
    NOTIFICATIONS_REJECTED.labels(reason=reason).inc()
    return response


def _refused_operations(parsed: ParsedBody) -> Response:
    """400 naming each refused operation: D1 does not retry a 4xx, and the valid operations of
    the request are stored already (the refused ones are in quarantine)."""
    rejected = parsed.rejected
    for r in rejected:
        log.info(
            "operation refused and quarantined: index %d, operationId %s, %s %s",
            r.index,
            r.operation_id,
            r.error_code,
            r.field,
        )
    OPERATIONS_REJECTED.inc(len(rejected))
    total = len(rejected) + len(parsed.operations)
    return _reject(
        "invalid",
        JSONResponse(
            {
                "errorCode": rejected[0].error_code,
                "error": f"{len(rejected)} of {total} operations refused, the others stored",
                "rejectedOperations": [r.answer() for r in rejected],
            },
            status_code=400,
        ),
    )


def notifications_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    settings = runtime.settings
    creds = credentials_from(runtime)
    verifier = BearerVerifier(creds)
    committer = committer_for(runtime)
    issuer = settings.d1_issuer_id
    max_body = settings.d1_notify_max_body_bytes

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        if not creds.configured:
            return _reject(
                "not_configured",
                d1_error(
                    401,
                    "AUTHORIZER_UNAUTHORIZED",
                    "notification credentials are not configured",
                    **{"WWW-Authenticate": "Bearer"},
                ),
            )
        headers = request.headers
        if not verifier.ok(headers.get("authorization"), now=runtime.clock()):
            return _reject(
                "unauthorized",
                d1_error(
                    401,
                    "AUTHORIZER_UNAUTHORIZED",
                    "missing or invalid Bearer token",
                    **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
                ),
            )
        issuer_id = request.path_params["issuerId"]
        if not settings.d1_issuer_id or issuer_id != settings.d1_issuer_id:
            return _reject("unknown_issuer", d1_error(404, "RESOURCE_NOT_FOUND", "issuerId"))
        if not is_json_content_type(headers.get("content-type")):
            return _reject("media_type", d1_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"))
        try:
            raw = await read_limited(request, max_body)
        except _TooLarge:
            return _reject("too_large", d1_error(413, "PAYLOAD_TOO_LARGE", "body"))
        try:
            parsed = parse_body(raw, issuer_id=issuer)
        except NotificationRejected as exc:
            log.info("notification refused: %s %s", exc.error_code, exc.field)
            return _reject("invalid", d1_error(400, exc.error_code, exc.field))
        try:
            result = await committer.record(
                parsed.operations,
                received_at=runtime.clock(),
                quarantined=[QuarantinedOperation(**vars(r)) for r in parsed.rejected],
            )
        except SQLAlchemyError as exc:  # busy, locked, unreachable: D1 retries
            log.warning("notification not stored, database unavailable: %s", type(exc).__name__)
            return _reject(
                "busy",
                d1_error(503, "SERVICE_UNAVAILABLE", "try again later", **{"Retry-After": "1"}),
            )
        except Exception:
            log.exception("notification not stored")
            return _reject("error", d1_error(500, "INTERNAL_ERROR", "not stored"))
        NOTIFICATIONS_RECEIVED.inc(len(result.new_event_ids))
        if result.duplicates:
            NOTIFICATIONS_DUPLICATE.inc(result.duplicates)
        if result.enqueued:
            runtime.wake_outbox()
        for card_id in result.gap_card_ids:
            try:
                runtime.report_gap(card_id)
            except Exception:  # a listener's failure must not undo a stored notification
                log.exception("gap listener failed")
        log.debug(
            "notification stored: %d new, %d duplicate, %d enqueued",
            len(result.new_event_ids),
            result.duplicates,
            result.enqueued,
        )
        INTAKE_LATENCY.observe(time.perf_counter() - started)
        if parsed.rejected:
            return _refused_operations(parsed)
        return Response(status_code=204)

    return receive


def token_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    creds = credentials_from(runtime)

    async def token(request: Request) -> Response:
        if not basic_client_ok(request.headers.get("authorization"), creds):
            return oauth_error(
                401,
                "invalid_client",
                "client authentication failed",
                **{"WWW-Authenticate": 'Basic realm="d1bot"'},
            )
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "expected a form-encoded body")
        try:
            raw = await read_limited(request, TOKEN_MAX_BODY_BYTES)
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (_TooLarge, UnicodeDecodeError):
            return oauth_error(400, "invalid_request", "unreadable body")
        grant = form.get("grant_type", [])
        if len(grant) != 1 or not grant[0]:
            return oauth_error(400, "invalid_request", "grant_type is required once")
        if grant[0] != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only client_credentials")
        answer = issue_token(creds, now=runtime.clock())
        scope = form.get("scope", [None])[0]
        if scope:
            answer.scope = scope
        return JSONResponse(
            answer.model_dump(exclude_none=True),
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return token


def openapi_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    document = openapi_document(runtime.settings.d1_issuer_id or ISSUER_PLACEHOLDER)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document)

    return openapi


def routes(runtime: Runtime) -> list[BaseRoute]:
    return [
        Route(NOTIFICATIONS_PATH, notifications_endpoint(runtime), methods=["POST"]),
        Route(TOKEN_PATH, token_endpoint(runtime), methods=["POST"]),
        Route("/openapi.json", openapi_endpoint(runtime), methods=["GET"]),
    ]
