"""Liveness and readiness: `GET /healthz` says the process and its tasks run (restart it when
not); `GET /readyz` says it can do its work (send it traffic when so).

Readiness checks, each exported as `d1bot_ready{check}` in `/metrics`:
- `database`: answers within 5 s and its schema is at the newest migration;
- `slack`: `auth.test` succeeds with SLACK_BOT_TOKEN (asked at most once a minute, failures
  again after 10 s);
- `d1`: the D1 settings are complete and the client was built;
- what the packages register in `Runtime.readiness_checks`: `delivery` (the outbox worker: not
  paused app-wide because Slack refuses the token). A paused channel is a metric, not
  unreadiness: the rest of the workspace is served.

Reasons name the class of an error, never its text (driver messages can name hosts and users).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.runtime import Runtime, slack_client_from
from bot.settings import Settings
from storage.repositories import health as health_repo

log = logging.getLogger(__name__)

DB_CHECK_TIMEOUT_SECONDS = 5.0
SLACK_CHECK_TIMEOUT_SECONDS = 10.0
SLACK_OK_CACHE_SECONDS = 60.0
SLACK_FAILURE_CACHE_SECONDS = 10.0


# --------------------------------------------------------------------------- liveness


def task_problems(runtime: Runtime) -> dict[str, str | None]:
    """Each background task, and why it is not running (None when it is)."""
    found: dict[str, str | None] = {}
    for task in runtime.background:
        try:
            healthy = bool(task.is_healthy())
        except Exception as exc:
            log.warning("health check of %s failed", task.name, exc_info=True)
            found[task.name] = f"{task.name} health check failed ({type(exc).__name__})"
            continue
        found[task.name] = None if healthy else f"{task.name} is not running"
    return found


def liveness(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """Whether the process and its tasks run: no I/O, so it answers even when all else fails."""
    problems = task_problems(runtime)
    checks = {name: "ok" if p is None else "failing" for name, p in problems.items()}
    reasons = [p for p in problems.values() if p]
    if reasons:
        return False, {"status": "unavailable", "checks": checks, "reasons": reasons}
    return True, {"status": "ok", "checks": checks}


# --------------------------------------------------------------------------- readiness


async def database_problem(runtime: Runtime) -> str | None:
    """None when the database answers and is migrated, else why not."""

    def probe() -> str | None:
        health_repo.ping(engine=runtime.engine)
        at, head = health_repo.schema_revision(engine=runtime.engine), health_repo.schema_head()
        if at != head:
            return f"database schema at {at or 'nothing'}, not {head}: run `d1bot migrate`"
        return None

    try:
        return await asyncio.wait_for(asyncio.to_thread(probe), DB_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"database did not answer within {DB_CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        log.warning("readiness: database unreachable", exc_info=True)
        return f"database unreachable ({type(exc).__name__})"


async def slack_auth_problem(
    settings: Settings, client: AsyncWebClient | None = None
) -> str | None:
    """None when Slack's `auth.test` accepts the bot token, else Slack's error code."""
    client = client or slack_client_from(settings)
    if client is None:
        return "SLACK_BOT_TOKEN is not set"
    try:
        await asyncio.wait_for(client.auth_test(), SLACK_CHECK_TIMEOUT_SECONDS)
    except SlackApiError as exc:
        return f"Slack auth.test refused the token ({exc.response.get('error', 'error')})"
    except TimeoutError:
        return f"Slack auth.test did not answer within {SLACK_CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        return f"Slack could not be reached ({type(exc).__name__})"
    return None


async def d1_token_problem(settings: Settings, client: Any) -> str | None:
    """None when D1 issues a token for our key (`client` is a `D1Client`), else why not."""
    try:
        await client.ensure_token()
    except Exception as exc:
        detail = getattr(exc, "error_code", None) or getattr(exc, "status", None)
        return f"no token from {settings.d1_auth_url} ({type(exc).__name__} {detail or ''})"
    finally:
        await client.aclose()
    return None


def d1_problem(runtime: Runtime) -> str | None:
    missing = runtime.settings.d1_missing()
    if missing:
        return "not set: " + ", ".join(missing)
    if runtime.d1_client is None:
        return "the D1 client could not be built (see the log at start)"
    return None


class Readiness:
    """The readiness checks of one server, with the Slack answer cached."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._slack: tuple[float, str | None] | None = None  # (valid until, problem)

    async def slack_problem(self) -> str | None:
        now = asyncio.get_running_loop().time()
        if self._slack is not None and now < self._slack[0]:
            return self._slack[1]
        problem = await slack_auth_problem(self.runtime.settings, self.runtime.slack_client)
        ttl = SLACK_FAILURE_CACHE_SECONDS if problem else SLACK_OK_CACHE_SECONDS
        self._slack = (now + ttl, problem)
        return problem

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether this server is ready, and the JSON body that says why (not)."""
        problems: dict[str, str | None] = {
            "database": await database_problem(self.runtime),
            "slack": await self.slack_problem(),
            "d1": d1_problem(self.runtime),
        }
        for name, check in self.runtime.readiness_checks.items():
            try:
                problems[name] = check()
            except Exception as exc:
                log.warning("readiness check %s failed", name, exc_info=True)
                problems[name] = f"check failed ({type(exc).__name__})"
        for name, problem in problems.items():
            metrics.READY.labels(check=name).set(0 if problem else 1)
        checks = {name: "ok" if p is None else "failing" for name, p in problems.items()}
        failed = [{"check": name, "reason": p} for name, p in problems.items() if p]
        if failed:
            return False, {"status": "unready", "checks": checks, "failed": failed}
        return True, {"status": "ready", "checks": checks}


__all__ = [
    "Readiness",
    "d1_token_problem",
    "database_problem",
    "liveness",
    "slack_auth_problem",
]
