"""D1's door: `POST /notifications/d1/v2/issuers/{issuerId}/cards` and `POST /oauth2/token`.

Intake validates and dispatches, nothing else: credentials and the body are judged by
`d1.notifications`, the recording is `storage.repositories` (through the group committer), and
the answer is 204 only after the commit. Bad input gets a D1-style `{"errorCode", "error"}`
naming what is wrong (never a value from the body); a busy database gets 503 so that D1 retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import parse_qs

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from bot.intake_writer import IntakeWriter, WriterUnavailable
from bot.metrics import (
    INTAKE_LATENCY,
    NOTIFICATIONS_DUPLICATE,
    NOTIFICATIONS_RECEIVED,
    NOTIFICATIONS_REJECTED,
)
from bot.runtime import BackgroundTask, Runtime
from d1.notifications import (
    BearerVerifier,
    NotificationRejected,
    NotifyCredentials,
    basic_client_ok,
    is_json_content_type,
    issue_token,
    parse_body,
)
from storage.repositories.group_commit import BatchStats, GroupCommitter
from storage.repositories.intake import IntakeResult

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/notifications/d1/v2/issuers/{issuerId}/cards"
TOKEN_PATH = "/oauth2/token"
TOKEN_MAX_BODY_BYTES = 8 * 1024
COMMITTER_KEY = "intake_committer"


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


class InlineIntake:
    """Notifications parsed and recorded on the server's own event loop (`GroupCommitter`)."""

    def __init__(self, committer: GroupCommitter, issuer_id: str | None) -> None:
        self.committer = committer
        self.issuer_id = issuer_id

    @property
    def stats(self) -> BatchStats:
        return self.committer.stats

    async def record(self, raw: bytes, *, received_at: datetime) -> IntakeResult:
        operations = parse_body(raw, issuer_id=self.issuer_id)
        return await self.committer.submit(operations, received_at=received_at)


Intake = InlineIntake | IntakeWriter


def intake_for(runtime: Runtime) -> Intake:
    """The process's one intake writer (a process or in-process, `D1BOT_INTAKE_WRITER`),
    created once and stopped with the app."""
    intake = runtime.extras.get(COMMITTER_KEY)
    if intake is not None:
        return intake
    s = runtime.settings
    gather_seconds = s.intake_commit_delay_ms / 1000
    if s.d1bot_intake_writer == "process":
        intake = IntakeWriter(
            runtime.engine,
            workspace_id=s.d1bot_workspace_id,
            exceptions_channel=s.d1bot_exceptions_channel or None,
            extra_exception_statuses=sorted(s.extra_exception_statuses),
            issuer_id=s.d1_issuer_id,
            gather_seconds=gather_seconds,
            gather_target=s.d1bot_intake_commit_siblings,
            log_level=s.log_level,
            log_format=s.log_format,
        )
        start, stop, healthy = intake.start, intake.stop, intake.is_healthy
    else:
        committer = GroupCommitter(
            runtime.engine,
            workspace_id=s.d1bot_workspace_id,
            exceptions_channel=s.d1bot_exceptions_channel or None,
            extra_exception_statuses=s.extra_exception_statuses,
            gather_seconds=gather_seconds,
            gather_target=s.d1bot_intake_commit_siblings,
        )
        intake = InlineIntake(committer, s.d1_issuer_id)
        start, stop, healthy = committer.start, committer.stop, committer.is_healthy
    runtime.extras[COMMITTER_KEY] = intake
    runtime.background.append(
        BackgroundTask(name="intake writer", start=start, stop=stop, is_healthy=healthy)
    )
    return intake


def d1_error(status: int, code: str, error: str, **headers: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "error": error}, status_code=status, headers=headers)


def oauth_error(status: int, code: str, description: str, **headers: str) -> JSONResponse:
    """RFC 6749 section 5.2 error answer."""
    return JSONResponse(
        {"error": code, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **headers},
    )


async def read_limited(request: Request, limit: int, *, declared: str | None = None) -> bytes:
    """The body, refusing early (Content-Length, `declared` when the caller has read it) or as
    soon as it passes `limit` bytes. Reads the ASGI messages directly: `request.stream()` is an
    async generator, whose setup and teardown cost as much per request as the read itself."""
    if declared is None:
        declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _reject(reason: str, response: Response) -> Response:
    NOTIFICATIONS_REJECTED.labels(reason=reason).inc()
    return response


def _notification_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Authorization, Content-Type and Content-Length, the first of each as Starlette's
    `Headers.get` finds it, in one pass over the raw headers (three `Headers.get` walk them
    three times, decoding each name)."""
    authorization = content_type = length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1")
    return authorization, content_type, length


def notifications_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    settings = runtime.settings
    creds = credentials_from(runtime)
    verifier = BearerVerifier(creds)
    intake = intake_for(runtime)
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
        authorization, content_type, length = _notification_headers(request.scope)
        if not verifier.ok(authorization, now=runtime.clock()):
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
        if not is_json_content_type(content_type):
            return _reject("media_type", d1_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"))
        try:
            raw = await read_limited(request, max_body, declared=length)
        except _TooLarge:
            return _reject("too_large", d1_error(413, "PAYLOAD_TOO_LARGE", "body"))
        try:
            result = await intake.record(raw, received_at=runtime.clock())
        except NotificationRejected as exc:
            log.info("notification refused: %s %s", exc.error_code, exc.field)
            return _reject("invalid", d1_error(400, exc.error_code, exc.field))
        except (SQLAlchemyError, WriterUnavailable) as exc:  # busy, locked, unreachable: D1 retries
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


def routes(runtime: Runtime) -> list[BaseRoute]:
    return [
        Route(NOTIFICATIONS_PATH, notifications_endpoint(runtime), methods=["POST"]),
        Route(TOKEN_PATH, token_endpoint(runtime), methods=["POST"]),
    ]
