"""Operations endpoints: `GET /healthz` for load balancers and orchestrators, `GET /metrics`
for Prometheus.

`/healthz` answers 200 only when the database answers and every background task (outbox worker,
scheduler) reports itself healthy; otherwise 503 with the reasons, in words. `/metrics` refreshes
the outbox gauges from the database at scrape time, so they are right whichever replica sent the
messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import metrics
from bot.runtime import Runtime
from storage.repositories import health as health_repo

log = logging.getLogger(__name__)

DB_CHECK_TIMEOUT_SECONDS = 5.0


async def _database_problem(runtime: Runtime) -> str | None:
    """None when the database answers, else why not (the class of error, never its text:
    driver messages can name hosts and users)."""
    try:
        await asyncio.wait_for(
            asyncio.to_thread(health_repo.ping, engine=runtime.engine), DB_CHECK_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return f"database did not answer within {DB_CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        log.warning("health check: database unreachable", exc_info=True)
        return f"database unreachable ({type(exc).__name__})"
    return None


def _task_problems(runtime: Runtime) -> dict[str, str | None]:
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


async def health_report(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """Whether this process can do its work, and the JSON body that says why (not)."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    db_problem = await _database_problem(runtime)
    checks["database"] = "ok" if db_problem is None else "failing"
    if db_problem:
        reasons.append(db_problem)
    for name, problem in _task_problems(runtime).items():
        checks[name] = "ok" if problem is None else "failing"
        if problem:
            reasons.append(problem)
    if reasons:
        return False, {"status": "unavailable", "checks": checks, "reasons": reasons}
    return True, {"status": "ok", "checks": checks}


async def refresh_outbox_gauges(runtime: Runtime) -> None:
    """Set the outbox depth and oldest-pending age from the database (best effort)."""
    try:
        backlog = await asyncio.to_thread(health_repo.outbox_backlog, engine=runtime.engine)
    except Exception:
        log.warning("could not read the outbox backlog for /metrics", exc_info=True)
        return
    metrics.OUTBOX_DEPTH.set(backlog.pending)
    metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds(runtime.clock()))


def routes(runtime: Runtime) -> list[BaseRoute]:
    async def healthz(_request: Request) -> Response:
        ok, body = await health_report(runtime)
        if not ok:
            log.warning("health check failing: %s", "; ".join(body["reasons"]))
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        await refresh_outbox_gauges(runtime)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
