"""Settings from the environment (and `.env` when present), built in the composition root.

Every variable is documented in README.md's configuration reference. Secrets come only from the
environment. `Settings.problems()` gives the readable report that `d1bot check` prints and that
`d1bot serve` logs at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_D1_API_URL = "https://api.d1.thalescloud.io/banking/v1"
DEFAULT_D1_AUTH_URL = "https://api.d1.thalescloud.io/authz/v1"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Problem:
    """One finding of the settings report."""

    level: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.message}"


class Settings(BaseSettings):
    """All configuration. Field names map to the upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Server
    host: str = "127.0.0.1"
    port: int = 3000
    log_format: str = "text"  # text | json
    log_level: str = "INFO"
    database_url: str = "sqlite:///./d1bot.db"
    sqlite_synchronous: str = "FULL"
    migrate_on_start: bool = True

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
    d1_timeout_seconds: float = 10.0
    d1_max_retries: int = 3

    # D1 -> us (notification callbacks)
    d1_notify_client_id: str | None = None
    d1_notify_client_secret: SecretStr | None = None
    d1_notify_token: SecretStr | None = None
    d1_notify_token_ttl_seconds: int = 900
    d1_notify_max_body_bytes: int = 1024 * 1024

    # Product behaviour
    d1bot_exceptions_channel: str | None = None
    d1bot_digest_channel: str | None = None
    d1bot_digest_time: str = "08:00"
    d1bot_timezone: str = "UTC"
    d1bot_allowed_channels: str | None = None  # comma-separated channel ids
    d1bot_allowed_usergroups: str | None = None  # comma-separated user group ids
    d1bot_extra_exception_statuses: str | None = None  # comma-separated, e.g. "PENDING"
    d1bot_channel_rate_per_second: float = 1.0
    # chat.postMessage + chat.update of the whole app, in any 60 s (spread: rate/12 + 3 per 5 s)
    d1bot_workspace_rate_per_minute: int = 240
    d1bot_outbox_max_attempts: int = 12
    d1bot_outbox_lease_seconds: float = 8.0  # renewed while held: a dead worker's rows, after
    d1bot_burst_threshold: int = 10  # more distinct cards than this at once -> one summary
    d1bot_reconcile_interval_minutes: int = 30
    d1bot_reconcile_quiet_minutes: int = 240
    d1bot_stuck_check_interval_minutes: int = 15
    # Stuck-card thresholds in hours (see docs/scheduled-work.md).
    d1bot_stuck_requested_hours: float = 24  # CARD_PROD_REQUESTED / DATA_PREPARED
    d1bot_stuck_production_hours: float = 72  # CARD_PROD_READY / CARD_PROD_ONGOING
    d1bot_stuck_onhold_hours: float = 48  # CARD_PROD_ONHOLD
    d1bot_stuck_shipment_quiet_hours: float = 120  # shipped, no shipment update
    d1bot_stuck_overdue_hours: float = 48  # past the estimated delivery date, not delivered
    # The digest lists open exceptions nobody owns that are older than this.
    d1bot_triage_stale_hours: float = 24
    d1bot_reconcile_concurrency: int = 4  # productionStatus calls in flight at once
    d1bot_reconcile_rate_per_second: float = 5.0  # productionStatus calls per second, at most
    d1bot_reconcile_batch: int = 500  # quiet cards asked about per run, at most
    d1bot_scheduler_enabled: bool = True  # False: this replica runs no scheduled jobs
    d1bot_workspace_id: str = "T00000000"  # used until Slack tells us the team id
    d1bot_retention_days: int = 30  # sent messages and job runs older than this are deleted
    d1bot_audit_retention_days: int = 365

    @field_validator("d1bot_digest_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be HH:MM (24-hour clock)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins URLs with urljoin: without the slash the last segment is lost.
        return value if value.endswith("/") else value + "/"

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

    # ------------------------------------------------------------------ the report

    def problems(self) -> list[Problem]:
        """What is missing or wrong, in words an operator can act on."""
        found: list[Problem] = []

        def error(message: str) -> None:
            found.append(Problem("error", message))

        def warning(message: str) -> None:
            found.append(Problem("warning", message))

        if self.slack_signing_secret is None and self.slack_app_token is None:
            error("SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified")
        if self.slack_bot_token is None:
            error("SLACK_BOT_TOKEN is not set: nothing can be posted to Slack")
        if not self.d1_issuer_id:
            error("D1_ISSUER_ID is not set: D1 calls and notifications cannot be matched")
        if not self.d1_key_id:
            error("D1_KEY_ID is not set: D1 cannot pick the key that signs our token requests")
        if self.d1_private_key is None and self.d1_private_key_file is None:
            error("D1_PRIVATE_KEY (or D1_PRIVATE_KEY_FILE) is not set: D1 calls cannot be signed")
        elif self.d1_private_key_file is not None and not self.d1_private_key_file.is_file():
            error(f"D1_PRIVATE_KEY_FILE {self.d1_private_key_file} does not exist")
        if bool(self.d1_client_cert) != bool(self.d1_client_key):
            error("D1_CLIENT_CERT and D1_CLIENT_KEY go together: set both for mTLS, or neither")
        for name, path in (
            ("D1_CLIENT_CERT", self.d1_client_cert),
            ("D1_CLIENT_KEY", self.d1_client_key),
        ):
            if path is not None and not path.is_file():
                error(f"{name} {path} does not exist")
        if bool(self.d1_notify_client_id) != bool(self.d1_notify_client_secret):
            error("D1_NOTIFY_CLIENT_ID and D1_NOTIFY_CLIENT_SECRET go together")
        if not self.notify_auth_configured:
            error(
                "neither D1_NOTIFY_CLIENT_ID/D1_NOTIFY_CLIENT_SECRET nor D1_NOTIFY_TOKEN is set: "
                "the notification endpoint refuses every request"
            )
        if self.d1_client_cert is None and not self.d1_api_url.startswith("http://127."):
            warning("D1_CLIENT_CERT is not set: D1 requires mTLS in production")
        try:
            ZoneInfo(self.d1bot_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            error(f"D1BOT_TIMEZONE {self.d1bot_timezone!r} is not a known IANA timezone")
        if not self.d1bot_exceptions_channel:
            warning(
                "D1BOT_EXCEPTIONS_CHANNEL is not set: exceptions reach subscribed channels only"
            )
        if self.log_format not in {"text", "json"}:
            error("LOG_FORMAT must be 'text' or 'json'")
        return found


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`); keyword overrides win (tests, `d1bot demo`)."""
    return Settings(**overrides)  # type: ignore[arg-type]


__all__ = ["Problem", "Settings", "load_settings"]
