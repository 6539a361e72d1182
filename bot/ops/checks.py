"""The settings report of `d1bot check` and `d1bot serve`: every problem at once, each naming
the variable and the fix, never a value (it may be a secret).

Three sources: the field validators of `bot.settings.Settings` (a value that is wrong), what is
missing, and what can only be checked by opening it: key files, the database and, with
`--online`, Slack's `auth.test` and a D1 token. Missing optional integrations (D1, the
exceptions channel) are warnings: the bot runs without them and `/readyz` says what is missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import ValidationError

from bot.settings import Settings, load_settings

log = logging.getLogger("d1bot")

KEYGEN_FIX = (
    "create one with `openssl ecparam -name prime256v1 -genkey -noout | "
    "openssl pkcs8 -topk8 -nocrypt -out d1-signing.pem`"
)


@dataclass(frozen=True)
class Problem:
    """One finding. `invalid`: a value is wrong (serve refuses to start), as opposed to
    missing (serve starts; `/readyz` stays red where it matters)."""

    level: str  # "error" | "warning"
    message: str
    invalid: bool = False

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.message}"


def _invalid(name: str, fix: str) -> Problem:
    return Problem("error", f"{name} is invalid: {fix}", invalid=True)


def validation_problems(exc: ValidationError) -> list[Problem]:
    """Pydantic's errors as problems naming the variables (never the values)."""
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
        found.append(_invalid(name, str(error["msg"]).removeprefix("Value error, ")))
    return found


def load_checked() -> tuple[Settings, list[Problem]]:
    """The settings and every problem with them. Fields with invalid values fall back to their
    defaults so that the rest can still be checked: one bad value hides nothing else."""
    try:
        return (settings := load_settings()), missing_problems(settings) + file_problems(settings)
    except ValidationError as exc:
        invalid = validation_problems(exc)
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        defaults = {name: Settings.model_fields[name].default for name in bad}
        settings = load_settings(**defaults)
        missing = [p for p in missing_problems(settings) if not _names_any(p, bad)]
        return settings, invalid + missing + file_problems(settings)


def _names_any(problem: Problem, fields: set[str]) -> bool:
    return any(problem.message.startswith(name.upper()) for name in fields)


def missing_problems(settings: Settings) -> list[Problem]:
    """What is not set, or set half (a pair where one half is missing)."""
    found: list[Problem] = []
    s = settings
    if s.slack_signing_secret is None and s.slack_app_token is None:
        found.append(Problem("error", "SLACK_SIGNING_SECRET is not set: Slack requests cannot "
                             "be verified (App Credentials > Signing Secret)"))  # fmt: skip
    if s.slack_bot_token is None:
        found.append(Problem("error", "SLACK_BOT_TOKEN is not set: nothing can be posted to "
                             "Slack (OAuth & Permissions > Bot User OAuth Token)"))  # fmt: skip
    for name in s.d1_missing():
        found.append(Problem("warning", f"{name} is not set: {_D1_WHY.get(name, _NOTIFY_WHY)}"))
    if bool(s.d1_client_cert) != bool(s.d1_client_key):
        found.append(Problem("error", "D1_CLIENT_CERT and D1_CLIENT_KEY go together: set both "
                             "for mTLS, or neither", invalid=True))  # fmt: skip
    if bool(s.d1_notify_client_id) != bool(s.d1_notify_client_secret):
        found.append(Problem("error", "D1_NOTIFY_CLIENT_ID and D1_NOTIFY_CLIENT_SECRET go "
                             "together: set both, or neither", invalid=True))  # fmt: skip
    if s.d1_client_cert is None and not s.d1_api_url.startswith("http://127."):
        found.append(Problem("warning", "D1_CLIENT_CERT is not set: D1 requires mTLS in "
                             "production"))  # fmt: skip
    if not s.d1bot_exceptions_channel:
        found.append(Problem("warning", "D1BOT_EXCEPTIONS_CHANNEL is not set: exceptions reach "
                             "subscribed channels only"))  # fmt: skip
    return found


_D1_WHY = {
    "D1_ISSUER_ID": "D1 calls and notifications cannot be matched (Thales gives you the id)",
    "D1_KEY_ID": "D1 cannot pick the key that signs our token requests (the kid Thales gave)",
    "D1_PRIVATE_KEY": f"D1 calls cannot be signed: set D1_PRIVATE_KEY_FILE; {KEYGEN_FIX}",
}
_NOTIFY_WHY = "the notification endpoint refuses every request from D1"


def file_problems(settings: Settings) -> list[Problem]:
    """Key and certificate files that are missing or do not parse."""
    found: list[Problem] = []
    key_file = settings.d1_private_key_file
    if settings.d1_private_key is not None:
        pem = settings.d1_private_key.get_secret_value().encode()
        found += _es256_problem("D1_PRIVATE_KEY", pem)
    elif key_file is not None:
        if not key_file.is_file():
            found.append(_invalid("D1_PRIVATE_KEY_FILE", f"{key_file} does not exist"))
        else:
            found += _es256_problem("D1_PRIVATE_KEY_FILE", key_file.read_bytes())
    for name, path, parse in (
        ("D1_CLIENT_CERT", settings.d1_client_cert, _parses_as_certificate),
        ("D1_CLIENT_KEY", settings.d1_client_key, _parses_as_private_key),
        ("SSL_CERTFILE", settings.ssl_certfile, _parses_as_certificate),
        ("SSL_KEYFILE", settings.ssl_keyfile, _parses_as_private_key),
        ("SSL_CA_CERTS", settings.ssl_ca_certs, _parses_as_certificate),
    ):
        if path is None:
            continue
        if not path.is_file():
            found.append(_invalid(name, f"{path} does not exist"))
        elif not parse(path):
            what = "a PEM certificate" if parse is _parses_as_certificate else "a PEM private key"
            found.append(_invalid(name, f"{path} does not hold {what} (unencrypted)"))
    return found


def _es256_problem(name: str, pem: bytes) -> list[Problem]:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return [_invalid(name, f"not an unencrypted PEM private key: {KEYGEN_FIX}")]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return [_invalid(name, f"D1 needs an ES256 (P-256) key: {KEYGEN_FIX}")]
    return []


def _parses_as_certificate(path: Path) -> bool:
    try:
        x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return False
    return True


def _parses_as_private_key(path: Path) -> bool:
    try:
        load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return False
    return True


def database_problems(settings: Settings) -> list[Problem]:
    """Whether DATABASE_URL answers, and at which schema revision."""
    from sqlalchemy.engine import make_url

    from storage.db import make_engine, normalise_url
    from storage.migrate import current_revision, head_revision

    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database or "")
        if not path.parent.is_dir():
            return [_invalid("DATABASE_URL", f"the folder {path.parent} does not exist")]
        if not path.exists():  # not created here: `migrate` or `serve` creates it
            return [Problem("warning", f"DATABASE_URL: {path} does not exist yet; "
                            "`d1bot migrate` (or `d1bot serve`) creates it")]  # fmt: skip
    engine = make_engine(settings.database_url)
    try:
        revision = current_revision(engine)
    except Exception as exc:  # the class only: driver messages can name hosts and users
        return [Problem("error", f"DATABASE_URL does not answer ({type(exc).__name__}): check "
                        "the host, port, credentials and that the database exists")]  # fmt: skip
    finally:
        engine.dispose()
    if revision != head_revision():
        fix = "run `d1bot migrate`" + (
            " (or let `d1bot serve` do it at start)" if settings.migrate_on_start else ""
        )
        return [Problem("warning", f"DATABASE_URL's schema is not up to date: {fix}")]
    return []


def online_problems(settings: Settings, d1_client_from: Callable[[Settings], Any]) -> list[Problem]:
    """Slack's `auth.test` with SLACK_BOT_TOKEN, and a D1 token with the D1 settings (the
    client built by `d1_client_from`, the composition root's)."""
    from bot.ops.readiness import d1_token_problem, slack_auth_problem

    found = []
    if settings.slack_bot_token is not None:
        problem = asyncio.run(slack_auth_problem(settings))
        if problem:
            found.append(Problem("error", f"SLACK_BOT_TOKEN: {problem}"))
    d1_calls = ("D1_ISSUER_ID", "D1_KEY_ID", "D1_PRIVATE_KEY")
    if not set(d1_calls) & set(settings.d1_missing()) and not file_problems(settings):
        problem = asyncio.run(d1_token_problem(settings, d1_client_from(settings)))
        if problem:
            found.append(Problem("error", f"D1_AUTH_URL, D1_KEY_ID or the key: {problem}"))
    return found


def render(problems: list[Problem]) -> str:
    """The report as text: errors first, then warnings."""
    if not problems:
        return "Settings look complete."
    ordered = sorted(problems, key=lambda p: p.level != "error")
    return "\n".join(str(p) for p in ordered)


def check(*, online: bool, d1_client_from: Callable[[Settings], Any]) -> int:
    """`d1bot check [--online]`: print the report; exit 1 when it holds an error."""
    settings, problems = load_checked()
    problems += database_problems(settings)
    if online:
        problems += online_problems(settings, d1_client_from)
    print(render(problems))
    return 1 if any(p.level == "error" for p in problems) else 0


def log_report(problems: list[Problem]) -> None:
    """The report in the log, one record per finding, at the finding's level."""
    for problem in problems:
        level = logging.ERROR if problem.level == "error" else logging.WARNING
        log.log(level, "settings: %s", problem)


__all__ = ["Problem", "check", "load_checked", "log_report", "render"]
