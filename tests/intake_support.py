"""Helpers for the intake tests: a runtime with notification credentials, and DB snapshots."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.runtime import Runtime
from bot.server import create_app
from bot.settings import load_settings
from tests.servers import serve_asgi

ISSUER = "issuer-001"
CLIENT_ID = "d1-client"
CLIENT_SECRET = "s3cret-for-tests-only"
STATIC_TOKEN = "static-token-for-tests"
PATH = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
TABLES = ("cards", "events", "outbox", "fanouts", "quarantine")


def make_runtime(engine: Engine, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "d1_issuer_id": ISSUER,
        "d1_notify_client_id": CLIENT_ID,
        "d1_notify_client_secret": CLIENT_SECRET,
        "d1_notify_token": STATIC_TOKEN,
        "d1bot_exceptions_channel": "CEXCEPTIONS",
        "d1bot_workspace_id": "T1",
        "_env_file": None,
    }
    values.update(overrides)
    return Runtime(settings=load_settings(**values), engine=engine)


@contextlib.asynccontextmanager
async def intake_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app under uvicorn on loopback."""
    async with (
        serve_asgi(create_app(runtime)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(token: str = STATIC_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of the intake tables, to prove a refused request changed nothing."""
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))] for t in TABLES}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
