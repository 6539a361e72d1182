"""`/healthz` (liveness) and `/metrics` over real HTTP against a real database, and `d1bot
serve` as a process: JSON logs, the settings report at start, graceful stop on SIGTERM.
`/readyz` is tests/app/test_readiness.py's."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.runtime import BackgroundTask, Runtime
from bot.server import create_app
from bot.settings import load_settings
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT, FanoutRecord, OutboxRecord
from tests.servers import free_port, serve_asgi, wait_for

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)


def _runtime(engine: Engine, *tasks: BackgroundTask) -> Runtime:
    return Runtime(
        settings=load_settings(database_url="sqlite://"),
        engine=engine,
        clock=lambda: NOW,
        background=list(tasks),
    )


async def _noop() -> None:
    return None


def _task(name: str, healthy: bool | Exception) -> BackgroundTask:
    def is_healthy() -> bool:
        if isinstance(healthy, Exception):
            raise healthy
        return healthy

    return BackgroundTask(name=name, start=_noop, stop=_noop, is_healthy=is_healthy)


async def _get(runtime: Runtime, path: str) -> httpx.Response:
    async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
        return await http.get(base + path)


async def test_healthz_is_ok_when_the_tasks_run(engine: Engine) -> None:
    response = await _get(
        _runtime(engine, _task("outbox", True), _task("scheduler", True)), "/healthz"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and "reasons" not in body
    # routes may add tasks of their own (intake's group commit): every one is checked
    assert {"outbox", "scheduler"} <= set(body["checks"])
    assert set(body["checks"].values()) == {"ok"}
    assert response.headers["x-correlation-id"]


async def test_startup_moves_the_heap_out_of_the_collectors_sight(engine: Engine) -> None:
    """Full collections must not walk the startup heap again and again under load."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    response = await _get(_runtime(engine), "/healthz")
    assert response.status_code == 200
    assert gc.get_freeze_count() > 10_000


async def test_healthz_names_a_stopped_task(engine: Engine) -> None:
    runtime = _runtime(engine, _task("outbox", True), _task("scheduler", False))
    response = await _get(runtime, "/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["scheduler"] == "failing"
    assert body["checks"]["outbox"] == "ok"
    assert body["reasons"] == ["scheduler is not running"]


async def test_healthz_survives_a_task_whose_check_raises(engine: Engine) -> None:
    response = await _get(_runtime(engine, _task("outbox", RuntimeError("boom"))), "/healthz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["outbox health check failed (RuntimeError)"]


def _outbox(engine: Engine, *rows: tuple[str, timedelta]) -> None:
    with Session(engine) as session, session.begin():
        for state, age in rows:
            session.add(
                OutboxRecord(channel_id="C1", kind="card_event", state=state, created_at=NOW - age)
            )


def _samples(text: str) -> dict[str, float]:
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True) * bool(sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_reads_the_outbox_backlog_at_scrape_time(any_engine: Engine) -> None:
    runtime = _runtime(any_engine)
    async with serve_asgi(create_app(runtime)) as base, httpx.AsyncClient() as http:
        empty = await http.get(f"{base}/metrics")
        _outbox(
            any_engine,
            (OUTBOX_PENDING, timedelta(seconds=90)),
            (OUTBOX_PENDING, timedelta(seconds=5)),
            (OUTBOX_SENT, timedelta(hours=3)),
            (OUTBOX_DEAD, timedelta(hours=2)),
        )
        full = await http.get(f"{base}/metrics")
    assert empty.status_code == full.status_code == 200
    assert full.headers["content-type"].startswith("text/plain")
    before, after = _samples(empty.text), _samples(full.text)
    assert before["d1bot_outbox_pending"] == 0
    assert before["d1bot_outbox_oldest_pending_seconds"] == 0
    assert after["d1bot_outbox_pending"] == 2
    assert after["d1bot_outbox_oldest_pending_seconds"] == pytest.approx(90)


async def test_unexpanded_fanout_markers_count_in_the_backlog(engine: Engine) -> None:
    """A dead delivery worker leaves intake's fan-out markers unexpanded: they must show."""
    with Session(engine) as session, session.begin():
        session.add(FanoutRecord(card_id="c-1", event_id=1, received_at=NOW - timedelta(minutes=5)))
    _outbox(engine, (OUTBOX_PENDING, timedelta(seconds=30)))
    response = await _get(_runtime(engine), "/metrics")
    samples = _samples(response.text)
    assert samples["d1bot_outbox_pending"] == 2
    assert samples["d1bot_outbox_oldest_pending_seconds"] == pytest.approx(300)


async def test_metrics_lists_the_product_families(engine: Engine) -> None:
    response = await _get(_runtime(engine), "/metrics")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "d1bot_notifications_received",
        "d1bot_notifications_duplicate",
        "d1bot_notifications_rejected",
        "d1bot_intake_seconds",
        "d1bot_outbox_pending",
        "d1bot_outbox_oldest_pending_seconds",
        "d1bot_outbox_dead_letters",
        "d1bot_slack_calls",
        "d1bot_d1_calls",
        "d1bot_d1_call_seconds",
        "d1bot_digest_runs",
    } <= names


# --------------------------------------------------------------------------- d1bot serve


def _serve_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "D1", "LOG_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        PORT=str(port),
        LOG_FORMAT="json",
        SLACK_BOT_TOKEN="xoxb-1-2-servetesttoken",
    )
    return env


@pytest.mark.slow
async def test_serve_logs_json_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "serve",
        cwd=tmp_path,
        env=_serve_env(tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                except httpx.TransportError:
                    return False
                return r.status_code == 200

            await wait_for(healthy, timeout=30, message="serve to answer /healthz")
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert metrics.status_code == 200
        probe = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.ops.probe", "/healthz"],
            env=_serve_env(tmp_path, port),
            capture_output=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr  # the container's HEALTHCHECK, plain HTTP
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            stderr = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # uvicorn re-raises the signal once it has shut down, so that the parent sees it.
    assert code in (0, -signal.SIGTERM), stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    messages = [e["message"] for e in entries]
    assert "settings: WARNING: D1_ISSUER_ID is not set: D1 calls and notifications cannot be " \
        "matched (Thales gives you the id)" in messages  # fmt: skip
    assert "settings: ERROR: SLACK_SIGNING_SECRET is not set: Slack requests cannot be " \
        "verified (App Credentials > Signing Secret)" in messages  # fmt: skip
    assert all(e["level"] == "ERROR" for e in entries if "settings: ERROR" in e["message"])
    assert all(e["level"] == "WARNING" for e in entries if "settings: WARNING" in e["message"])
    assert all("color_message" not in e for e in entries)
    # uvicorn's own lines go through our handler; shutdown ran through the lifespan to the end
    stopping = messages.index("Shutting down")
    assert "Application shutdown complete." in messages[stopping:]
    assert "servetesttoken" not in stderr
