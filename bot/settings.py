"""Settings from the environment (and `.env` when present), built in the composition root.

Every variable is documented in README.md's configuration reference. Secrets come only from the
environment. Each value is validated here, field by field (enums, ranges, URLs, Slack id
formats, token prefixes), with a message that names the fix and never the value (it may be a
secret). What is missing, the key files that do not parse and the database are checked by
`bot.ops.checks`, which makes the report `d1bot check` prints and `d1bot serve` logs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from storage.db import normalise_url

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_D1_API_URL = "https://api.d1.thalescloud.io/banking/v1"
DEFAULT_D1_AUTH_URL = "https://api.d1.thalescloud.io/authz/v1"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# Slack ids: upper-case letters and digits after a letter that says what the id is.
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]+$")
USERGROUP_ID = re.compile(r"^S[A-Z0-9]+$")
TEAM_ID = re.compile(r"^[TE][A-Z0-9]+$")
_STATUS = re.compile(r"^[A-Z][A-Z0-9_]*$")
CHANNEL_FIX = (
    "must be a channel id such as C0123ABCD (channel details > About, at the bottom), "
    "not a channel name"
)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
SqliteSync = Annotated[Literal["OFF", "NORMAL", "FULL", "EXTRA"], BeforeValidator(_upper)]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_lower)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]


def _http_url(value: str, example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as {example}")
    return value


def _ids(value: str | None, pattern: re.Pattern[str], fix: str) -> str | None:
    for item in (p.strip() for p in (value or "").split(",")):
        if item and not pattern.match(item):
            raise ValueError(fix)
    return value


class Settings(BaseSettings):
    """All configuration. Field names map to the upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,  # `NAME=` in .env means unset, not an empty secret
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    log_format: LogFormat = "text"
    log_level: LogLevel = "INFO"
    database_url: str = "sqlite:///./d1bot.db"
    sqlite_synchronous: SqliteSync = "FULL"
    migrate_on_start: bool = True
    # TLS of `d1bot serve` when no proxy terminates it (the --ssl-* options override these)
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_ca_certs: Path | None = None
    ssl_require_client_cert: bool = False

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL

    # D1 (issuer -> D1)
    d1_api_url: str = DEFAULT_D1_API_URL
    d1_auth_url: str = DEFAULT_D1_AUTH_URL
    d1_issuer_id: str | None = None
    d1_key_id: str | None = None
    d1_private_key: SecretStr | None = None
    d1_private_key_file: Path | None = None
    d1_client_cert: Path | None = None
    d1_client_key: Path | None = None
    d1_timeout_seconds: Positive = 10.0
    d1_max_retries: int = Field(3, ge=0, le=10)

    # D1 -> us (notification callbacks)
    d1_notify_client_id: str | None = None
    d1_notify_client_secret: SecretStr | None = None
    d1_notify_token: SecretStr | None = None
    d1_notify_token_ttl_seconds: Count = 900
    d1_notify_max_body_bytes: int = Field(1024 * 1024, ge=1024)

    # Product behaviour
    d1bot_exceptions_channel: str | None = None
    d1bot_digest_channel: str | None = None
    d1bot_digest_time: str = "08:00"
    d1bot_timezone: str = "UTC"
    d1bot_allowed_channels: str | None = None  # comma-separated channel ids
    d1bot_allowed_usergroups: str | None = None  # comma-separated user group ids
    d1bot_extra_exception_statuses: str | None = None  # comma-separated, e.g. "PENDING"
    d1bot_channel_rate_per_second: Positive = 1.0
    # chat.postMessage + chat.update of the whole app, in any 60 s (spread: rate/12 + 3 per 5 s)
    d1bot_workspace_rate_per_minute: Count = 240
    # chat.update of the whole app in any 60 s: Slack's Tier 3 (about 50), with a margin
    d1bot_update_rate_per_minute: Count = 45
    d1bot_outbox_max_attempts: Count = 12
    d1bot_outbox_lease_seconds: Positive = 8.0  # renewed while held: a dead worker's rows, after
    d1bot_burst_threshold: Count = 10  # more distinct cards than this at once -> one summary
    d1bot_reconcile_interval_minutes: Count = 30
    d1bot_reconcile_quiet_minutes: Count = 240
    d1bot_stuck_check_interval_minutes: Count = 15
    # Stuck-card thresholds in hours (see docs/scheduled-work.md).
    d1bot_stuck_requested_hours: Positive = 24  # CARD_PROD_REQUESTED / DATA_PREPARED
    d1bot_stuck_production_hours: Positive = 72  # CARD_PROD_READY / CARD_PROD_ONGOING
    d1bot_stuck_onhold_hours: Positive = 48  # CARD_PROD_ONHOLD
    d1bot_stuck_shipment_quiet_hours: Positive = 120  # shipped, no shipment update
    d1bot_stuck_overdue_hours: Positive = 48  # past the estimated delivery date, not delivered
    # The digest lists open exceptions nobody owns that are older than this.
    d1bot_triage_stale_hours: Positive = 24
    d1bot_reconcile_concurrency: Count = 4  # productionStatus calls in flight at once
    d1bot_reconcile_rate_per_second: Positive = 5.0  # productionStatus calls per second, at most
    d1bot_reconcile_batch: Count = 500  # quiet cards asked about per run, at most
    d1bot_scheduler_enabled: bool = True  # False: this replica runs no scheduled jobs
    d1bot_workspace_id: str = "T00000000"  # used until Slack tells us the team id
    d1bot_retention_days: Count = 30  # sent messages and job runs older than this are deleted
    d1bot_audit_retention_days: Count = 365

    @field_validator("d1bot_digest_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be HH:MM (24-hour clock)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, value: str) -> str:
        _http_url(value, DEFAULT_SLACK_API_URL)
        # slack_sdk joins URLs with urljoin: without the slash the last segment is lost.
        return value if value.endswith("/") else value + "/"

    @field_validator("d1_api_url", "d1_auth_url")
    @classmethod
    def _d1_url(cls, value: str, info: ValidationInfo) -> str:
        example = DEFAULT_D1_AUTH_URL if info.field_name == "d1_auth_url" else DEFAULT_D1_API_URL
        return _http_url(value, example)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            backend = make_url(normalise_url(value)).get_backend_name()
        except (ArgumentError, ValueError):
            backend = ""
        if backend not in {"sqlite", "postgresql"}:
            raise ValueError(
                "must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:5432/DATABASE"
            )
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError(
                "must be the bot token, which starts with xoxb- (OAuth & Permissions page)"
            )
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError(
                "must be an app-level token, which starts with xapp- (App-Level Tokens)"
            )
        return value

    @field_validator("d1bot_exceptions_channel", "d1bot_digest_channel", "d1bot_allowed_channels")
    @classmethod
    def _channels(cls, value: str | None) -> str | None:
        return _ids(value, CHANNEL_ID, CHANNEL_FIX)

    @field_validator("d1bot_allowed_usergroups")
    @classmethod
    def _usergroups(cls, value: str | None) -> str | None:
        return _ids(
            value, USERGROUP_ID, "must be user group ids such as S0123ABCD, comma-separated"
        )

    @field_validator("d1bot_workspace_id")
    @classmethod
    def _team(cls, value: str) -> str:
        return _ids(value, TEAM_ID, "must be a Slack team id such as T0123ABCD") or value

    @field_validator("d1bot_extra_exception_statuses")
    @classmethod
    def _statuses(cls, value: str | None) -> str | None:
        return _ids(value, _STATUS, "must be D1 statuses such as PENDING, comma-separated")

    @field_validator("d1bot_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Europe/Paris") from None
        return value

    # ------------------------------------------------------------------ derived values

    @staticmethod
    def _csv(value: str | None) -> frozenset[str]:
        return frozenset(p.strip() for p in (value or "").split(",") if p.strip())

    @property
    def allowed_channels(self) -> frozenset[str]:
        return self._csv(self.d1bot_allowed_channels)

    @property
    def allowed_usergroups(self) -> frozenset[str]:
        return self._csv(self.d1bot_allowed_usergroups)

    @property
    def extra_exception_statuses(self) -> frozenset[str]:
        return self._csv(self.d1bot_extra_exception_statuses)

    def private_key_pem(self) -> str | None:
        """The ES256 private key used to sign D1 token assertions (inline PEM or file)."""
        if self.d1_private_key is not None:
            return self.d1_private_key.get_secret_value()
        if self.d1_private_key_file is not None:
            return self.d1_private_key_file.read_text()
        return None

    @property
    def notify_auth_configured(self) -> bool:
        return bool(
            (self.d1_notify_client_id and self.d1_notify_client_secret) or self.d1_notify_token
        )

    def d1_missing(self) -> list[str]:
        """The D1 settings still missing (for `/readyz` and the report), empty when complete."""
        missing = [
            name
            for name, value in (
                ("D1_ISSUER_ID", self.d1_issuer_id),
                ("D1_KEY_ID", self.d1_key_id),
                ("D1_PRIVATE_KEY", self.d1_private_key or self.d1_private_key_file),
            )
            if not value
        ]
        if not self.notify_auth_configured:
            missing.append("D1_NOTIFY_CLIENT_ID/D1_NOTIFY_CLIENT_SECRET or D1_NOTIFY_TOKEN")
        return missing


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`); keyword overrides win (tests, `d1bot demo`)."""
    return Settings(**overrides)  # type: ignore[arg-type]


__all__ = ["Settings", "load_settings"]
