"""Composition root: build the runtime from settings, and the `serve`, `migrate`, `check` and
`quarantine` commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.delivery import worker as outbox
from bot.ops import checks
from bot.runtime import BackgroundTask, Runtime, nothing_to_start, slack_client_from
from bot.scheduled import scheduler
from bot.settings import Settings, load_settings
from d1.client import D1Client
from d1.errors import D1NotConfigured
from storage.db import make_engine

log = logging.getLogger("d1bot")

# How long `serve` waits, after SIGTERM/SIGINT, for in-flight requests before stopping the
# background tasks (keep it below the orchestrator's kill timeout, e.g. Kubernetes' 30 s).
GRACEFUL_SHUTDOWN_SECONDS = 20
# Intake's database thread runs Python for milliseconds at a time; every socket call of the
# event loop gives up the GIL and must wait for it to come back. At the default 5 ms a loaded
# loop spends most of its time waiting; 0.5 ms keeps it answering (bench/intake.py).
GIL_SWITCH_INTERVAL_SECONDS = 0.0005


def build_runtime(settings: Settings) -> Runtime:
    """Everything one server process needs, wired together."""
    engine = make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    runtime = Runtime(settings=settings, engine=engine)
    runtime.outbox_wakeup = asyncio.Event()
    wire_clients(runtime)
    outbox.install(runtime)  # delivers what intake and the jobs enqueue (bot/delivery/worker.py)
    scheduler.install(runtime)  # digests, stuck cards, reconciliation (bot/scheduled/scheduler.py)
    return runtime


def wire_clients(runtime: Runtime) -> None:
    """The shared Slack Web API client (when SLACK_BOT_TOKEN is set; one connection pool while
    the server runs) and the D1 client (when D1 is configured; closed when the server stops)."""
    client = slack_client_from(runtime.settings)
    runtime.slack_client = client
    if client is not None:
        runtime.background.append(slack_session_task(client))
    try:
        d1 = d1_client_from(runtime.settings)
    except D1NotConfigured as exc:
        log.warning("D1 is not configured, /card status and track will say so: %s", exc)
        return
    runtime.d1_client = d1

    runtime.background.append(
        BackgroundTask(name="d1-client", start=nothing_to_start, stop=d1.aclose)
    )


def slack_session_task(client: AsyncWebClient) -> BackgroundTask:
    """One aiohttp session (connection pool) for the client while the server runs; without it
    the SDK opens a session, and a connection, per call."""

    async def start() -> None:
        client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))

    async def stop() -> None:
        if client.session is not None:
            await client.session.close()
            client.session = None

    return BackgroundTask(name="slack-client", start=start, stop=stop)


def d1_client_from(settings: Settings, **overrides: Any) -> D1Client:
    """The D1 client from the `D1_*` settings, its calls counted in the metrics; raises
    `D1NotConfigured` naming what is missing."""
    private_key = settings.private_key_pem()
    if not settings.d1_issuer_id or not settings.d1_key_id or not private_key:
        raise D1NotConfigured(detail="D1_ISSUER_ID, D1_KEY_ID and D1_PRIVATE_KEY are needed")
    options: dict[str, Any] = {
        "api_url": settings.d1_api_url,
        "auth_url": settings.d1_auth_url,
        "issuer_id": settings.d1_issuer_id,
        "key_id": settings.d1_key_id,
        "private_key_pem": private_key,
        "client_cert": settings.d1_client_cert,
        "client_key": settings.d1_client_key,
        "timeout": settings.d1_timeout_seconds,
        "max_retries": settings.d1_max_retries,
        "observe": metrics.observe_d1_call,
    }
    options.update(overrides)
    return D1Client(**options)


def check(*, online: bool = False) -> int:
    """`d1bot check [--online]`: the settings report (bot/ops/checks.py); exit 1 on errors."""
    return checks.check(online=online, d1_client_from=d1_client_from)


def migrate_in_child(settings: Settings) -> bool:
    """The migrations in a child process (`python -m storage.migrate`): the server never loads
    Alembic (about 8 MB that would stay in its memory for nothing). False, logged, on failure."""
    done = subprocess.run(
        [sys.executable, "-m", "storage.migrate"],
        env={**os.environ, "DATABASE_URL": settings.database_url},
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        log.error("the database could not be migrated (exit status %d)", done.returncode)
    return done.returncode == 0


def quarantine(action: str, *, limit: int, item: int) -> int:
    """`d1bot quarantine list|show`: what intake refused, one line each or one in full."""
    from storage.repositories.quarantine import get_quarantined, list_quarantined

    engine = make_engine(load_settings().database_url)
    if action == "show":
        found = get_quarantined(engine, item)
        if found is None:
            print(f"No quarantined operation {item}.", file=sys.stderr)
            return 1
        print(f"#{found.id} received {found.received_at.isoformat()}")
        print(f"operation {found.operation_index}, operationId {found.operation_id or '-'}")
        print(f"refused: {found.error_code} at {found.field}")
        print(json.dumps(found.payload, indent=2, ensure_ascii=True))
        return 0
    rows = list_quarantined(engine, limit=limit)
    if not rows:
        print("The quarantine is empty.")
    for row in rows:
        print(
            f"#{row.id}  {row.received_at.isoformat(timespec='seconds')}  "
            f"{row.operation_id or '-'}  {row.error_code} at {row.field}"
        )
    return 0


def migrate(*, verbose: bool = False) -> int:
    """`d1bot migrate`: apply what the database lacks and say what that was; on failure one
    line naming the cause (the traceback too with `verbose`)."""
    from bot.logs import configure_logging
    from storage.migrate import head_revision, pending_revisions, upgrade

    configure_logging(level="INFO" if verbose else "WARNING")  # Alembic's INFO lines: verbose
    try:
        settings = load_settings()
    except ValidationError as exc:
        for problem in checks.validation_problems(exc):
            print(f"d1bot migrate: {problem}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        applied = pending_revisions(engine)
        upgrade(engine)
    except Exception as exc:
        if verbose:
            log.exception("migration failed")
        print(f"d1bot migrate failed: {_migrate_failure(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for revision, what in applied:
        print(f"applied {revision}: {what}")
    state = "now" if applied else "already"
    print(f"The database is {state} at {head_revision()}, the newest schema.")
    return 0


def _migrate_failure(exc: Exception) -> str:
    """One line for an operator: what failed and what to check (never the driver's text,
    which can name hosts and users)."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        return (
            "the database cannot be reached (OperationalError): check DATABASE_URL's host, "
            "port, user, password and database name, and that the server runs "
            "(--verbose for the details)"
        )
    return f"{type(exc).__name__} while migrating (--verbose for the details)"


def _str(path: object) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class TLSOptions:
    """TLS for `d1bot serve` when no proxy terminates it; `require_client_cert` is mTLS."""

    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    require_client_cert: bool = False

    def or_settings(self, settings: Settings) -> TLSOptions:
        """These options, else the SSL_* settings (a container sets those, not flags)."""
        if self.certfile:
            return self
        return TLSOptions(
            certfile=_str(settings.ssl_certfile),
            keyfile=_str(settings.ssl_keyfile),
            ca_certs=_str(settings.ssl_ca_certs),
            require_client_cert=settings.ssl_require_client_cert,
        )

    def problem(self) -> str | None:
        if self.require_client_cert and not self.ca_certs:
            return "--require-client-cert (SSL_REQUIRE_CLIENT_CERT) needs --ssl-ca-certs"
        if bool(self.certfile) != bool(self.keyfile):
            return "--ssl-certfile and --ssl-keyfile (SSL_CERTFILE, SSL_KEYFILE) go together"
        return None

    def uvicorn_kwargs(self) -> dict[str, Any]:
        if not self.certfile:
            return {}
        kwargs: dict[str, Any] = {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}
        if self.ca_certs:
            kwargs["ssl_ca_certs"] = self.ca_certs
        if self.require_client_cert:
            kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return kwargs


def serve(
    *, host: str | None, port: int | None, migrate: bool = True, tls: TLSOptions | None = None
) -> int:
    import uvicorn

    from bot.logs import configure_logging
    from bot.server import create_app

    settings, problems = checks.load_checked()
    if any(p.invalid for p in problems):
        configure_logging()
        checks.log_report(problems)
        log.error("not starting: fix the settings above (`d1bot check` lists them all)")
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    checks.log_report(problems)
    tls = (tls or TLSOptions()).or_settings(settings)
    if tls.problem():
        log.error("not starting: %s", tls.problem())
        return 2
    if migrate and settings.migrate_on_start and not migrate_in_child(settings):
        return 2
    runtime = build_runtime(settings)
    app = create_app(runtime)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,  # bot.server logs one line per request, with its correlation id
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **tls.uvicorn_kwargs(),
    )
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(serve(host=None, port=None))
