"""Structured logging for the server: text or JSON lines, a correlation id on every record, and
a redaction filter on every handler so that card numbers and credentials never reach a log.

Redaction happens on the record itself (message, arguments, extra fields, exception and stack
text), before any formatter sees it: whatever a library or a feature module logs, the line that
is written holds masked PANs (last four digits only, `d1.carddata`'s one detector) and
`[REDACTED]` in place of Slack tokens, response URLs, Bearer/Basic credentials, JWTs, URL
passwords and PEM private keys.

Slack's libraries (Bolt and slack_sdk) log whole request and answer bodies: the unverified body
of a request whose signature failed, webhook payloads with a cardholder's name and address at
DEBUG. Their records keep what happened (the method, the URL, the status) and lose every
payload, at every level: nothing after the first `body:`, `params:`, `json:`, `{` ... is kept.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import traceback
from datetime import datetime, timezone
from typing import Any, TextIO

from d1.carddata import redact_pans

REDACTED = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"

# The correlation id of the request (or job) being served; "-" outside of one.
correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

# --------------------------------------------------------------------------- redaction (pure)

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole blocks; a block cut short (or with escaped newlines) up to its end.
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
            r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)",
            re.DOTALL,
        ),
        "[REDACTED PRIVATE KEY]",
    ),
    # Slack tokens: bot, user, app-level, refresh, configuration.
    (re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]+"), r"\1-" + REDACTED),
    # Authorization header values, wherever they are quoted.
    (re.compile(r"(?i)\b(bearer)(\s+|%20)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)\b(basic)(\s+|%20)[A-Za-z0-9+/=]{6,}"), r"\1\2" + REDACTED),
    # JWTs (D1 assertions and access tokens) even without a scheme in front.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Response URLs (they let anyone answer in the asker's name for 30 minutes).
    (
        re.compile(r"(?i)https?(?::|%3A)(?:/|%2F){2}hooks\.slack\.com(?:/|%2F)[^\s\"'<>,}&]+"),
        "https://hooks.slack.com/" + REDACTED,
    ),
    (
        re.compile(r"(?i)(\bresponse_url[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]+"),
        r"\1" + REDACTED,
    ),
    # Passwords in URLs (postgresql://user:secret@host/db).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # Secret-looking form fields and JSON members.
    (
        re.compile(
            r"(?i)(\b(?:client_secret|access_token|refresh_token|password|assertion|secret)"
            r"[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]+"
        ),
        r"\1" + REDACTED,
    ),
)


def redact(text: str) -> str:
    """`text` with card numbers masked and credentials replaced by `[REDACTED]`."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return redact_pans(text)


_SLACK_LIBRARIES = tuple(f"{os.sep}{name}{os.sep}" for name in ("slack_bolt", "slack_sdk"))
_SLACK_LOGGERS = ("slack_bolt", "slack_sdk", "d1bot.slack")
# Where a Slack library's message starts to carry a payload.
_PAYLOAD_START = re.compile(
    r"(?i)\b(?:params|files|data|json|body|headers|payload|query_params|req_args)\s*[:=]|[{\[]"
)
_WEBHOOK_URL = re.compile(r"\burl: \S+")
PAYLOAD_DROPPED = "[payload not logged]"


def from_slack_library(record: logging.LogRecord) -> bool:
    return record.name.startswith(_SLACK_LOGGERS) or any(
        part in record.pathname for part in _SLACK_LIBRARIES
    )


def without_payloads(message: str, *, webhook: bool = False) -> str:
    """A Slack library's log message cut where its first payload starts (request and answer
    bodies hold names, addresses and response URLs); a webhook's URL is a response URL."""
    if webhook:
        message = _WEBHOOK_URL.sub("url: (a response URL)", message)
    found = _PAYLOAD_START.search(message)
    return message if found is None else message[: found.start()].rstrip() + " " + PAYLOAD_DROPPED


# --------------------------------------------------------------------------- filters

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "correlation_id", "taskName", "color_message"}
)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        cleaned = redact(text)
        return value if cleaned == text else cleaned
    text = repr(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactionFilter(logging.Filter):
    """Rewrites a record so that no handler can write a PAN or a credential it carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_d1bot_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must still be logged, and redacted
            message = f"{record.msg!s} {record.args!r}"
        if from_slack_library(record):
            webhook = f"{os.sep}webhook{os.sep}" in record.pathname
            message = without_payloads(message, webhook=webhook)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, _redact_value(value))
        record._d1bot_redacted = True
        return True


class CorrelationFilter(logging.Filter):
    """Puts the current correlation id on the record (as `correlation_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        return True


# --------------------------------------------------------------------------- formatters


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", correlation_id.get()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_handler(*, fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """A stream handler with the correlation and redaction filters and the chosen format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler._d1bot = True  # type: ignore[attr-defined]
    return handler


def protect_handlers() -> int:
    """Add the redaction filter to every handler already attached to any logger (libraries
    that configured their own); returns how many were newly protected."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    added = 0
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactionFilter) for f in handler.filters):
                handler.addFilter(CorrelationFilter())
                handler.addFilter(RedactionFilter())
                added += 1
    return added


def configure_logging(
    *, level: str | int = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to one redacting handler on the root logger (idempotent: a
    previous d1bot handler is replaced). Returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_d1bot", False)]:
        root.removeHandler(old)
    handler = make_handler(fmt=fmt, stream=stream)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # uvicorn's own loggers go through ours (no access log of its own: the middleware logs).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    protect_handlers()
    return handler


__all__ = [
    "REDACTED",
    "CorrelationFilter",
    "JsonFormatter",
    "RedactionFilter",
    "configure_logging",
    "correlation_id",
    "from_slack_library",
    "make_handler",
    "protect_handlers",
    "redact",
    "without_payloads",
]
