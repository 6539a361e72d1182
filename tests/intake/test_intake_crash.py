"""Crash test: `d1bot serve` killed with SIGKILL mid-stream loses nothing it answered 204 to."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from storage.db import make_engine
from tests.intake_support import ISSUER, PATH, STATIC_TOKEN, bearer
from tests.servers import free_port, wait_for

pytestmark = pytest.mark.slow

SENDERS = 8
KILL_AFTER_ACKS = 120


def _start(db_url: str, port: int, log: Path, *, migrate: bool = True) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": db_url,
        "D1_ISSUER_ID": ISSUER,
        "D1_NOTIFY_TOKEN": STATIC_TOKEN,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "MIGRATE_ON_START": "true" if migrate else "false",
    }
    bin_dir = Path(sys.executable).parent
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(bin_dir / "d1bot"), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            start_new_session=True,
        )


async def _ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"d1bot serve exited with {proc.returncode}")
    try:
        r = await client.post(PATH, content=b"{}", headers={"Content-Type": "application/json"})
    except httpx.TransportError:
        return False
    return r.status_code == 401


def _operation(sender: int, n: int) -> dict:
    return {
        "operationId": f"op-{sender}-{n}",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": f"card-{sender}-{n % 5}",
        "startTime": "2026-05-01T07:00:00Z",
        "endTime": f"2026-05-01T08:{n % 60:02d}:00Z",
        "details": {"status": "CARD_PROD_ONGOING"},
    }


async def test_every_acknowledged_notification_survives_sigkill(tmp_path: Path) -> None:
    """SIGKILL to the server mid-stream (a power cut, as far as the process knows): every
    notification answered 204 is in the database when it comes back."""
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    log = tmp_path / "serve.log"
    port = free_port()
    proc = _start(db_url, port, log)
    acked: set[str] = set()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_for(lambda: _ready(client, proc), timeout=60, message="server start")

            async def sender(i: int) -> None:
                n = 0
                while True:
                    op = _operation(i, n)
                    n += 1
                    try:
                        r = await client.post(PATH, json=op, headers=bearer())
                    except httpx.TransportError:
                        return  # the server is gone: this one was not acknowledged
                    if r.status_code == 204:
                        acked.add(op["operationId"])
                        if len(acked) >= KILL_AFTER_ACKS and proc.poll() is None:
                            os.killpg(proc.pid, signal.SIGKILL)

            await asyncio.wait_for(asyncio.gather(*(sender(i) for i in range(SENDERS))), 90)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        # Restart on the same database: it must come up and hold every acknowledged operation.
        # (The first start migrated it; migrating again is a child process that changes nothing.)
        proc = _start(db_url, port, log, migrate=False)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_for(lambda: _ready(client, proc), timeout=60, message="server restart")
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                stored = set(
                    conn.execute(sa.text("SELECT operation_id FROM events")).scalars().all()
                )
        finally:
            engine.dispose()
        assert len(acked) >= KILL_AFTER_ACKS
        missing = acked - stored
        assert not missing, f"{len(missing)} acknowledged notifications lost"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
