"""`d1bot serve` as a real subprocess, wired to a D1 sandbox and LocalSlack served by the test.

    async with bot_stack(tmp_path, database_url=url) as stack:
        stack.subscribe("C1", "card-1")           # straight into the database
        bot = await stack.start_bot()            # a `d1bot serve` process on its own port
        stack.sandbox.create_card("card-1"); stack.sandbox.advance("card-1")
        bot.kill()                               # SIGKILL, no goodbye
        await stack.start_bot(port=bot.port)     # same port: D1's retries find it again

Everything the bot talks to is real HTTP on loopback; the environment the process gets is
written out here, so a test reads exactly which settings are in play.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.dev.localslack import LocalSlack
from d1.sandbox import Sandbox
from storage.db import make_engine
from storage.migrate import upgrade
from storage.repositories import subscriptions
from tests.d1_fixtures import TEST_KEYS, sandbox_config
from tests.servers import free_port, serve_asgi, wait_for
from tests.slack_signing import SIGNING_SECRET, command_body, post_signed

WORKSPACE = "T0REL"
NOTIFY_CLIENT_ID = "d1-reliability"
NOTIFY_CLIENT_SECRET = "reliability-secret-0123456789"
BOT_START_TIMEOUT = 60.0


def notifications_path(issuer_id: str = TEST_KEYS.issuer_id) -> str:
    return f"/notifications/d1/v2/issuers/{issuer_id}/cards"


@dataclass
class BotProcess:
    """One `d1bot serve` child process (its own session, so a kill takes its children too)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_ready(self, timeout: float = BOT_START_TIMEOUT) -> None:
        """Until `/healthz` answers 200 (database reachable, background tasks running)."""
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                if not self.alive():
                    raise AssertionError(
                        f"d1bot serve exited with {self.proc.returncode}:\n{self.tail()}"
                    )
                try:
                    return (await http.get(f"{self.url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, timeout=timeout, interval=0.1, message="d1bot serve ready")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait (SIGKILL if it does not stop in time); returns the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return int(self.proc.returncode)

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def bot_env(
    *,
    database_url: str,
    port: int,
    slack_url: str,
    d1_url: str,
    **overrides: str,
) -> dict[str, str]:
    """The whole environment of a `d1bot serve` child: nothing leaks in from the test's own."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-reliability",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "D1_API_URL": f"{d1_url}/banking/v1",
        "D1_AUTH_URL": f"{d1_url}/authz/v1",
        "D1_ISSUER_ID": TEST_KEYS.issuer_id,
        "D1_KEY_ID": TEST_KEYS.key_id,
        "D1_PRIVATE_KEY": TEST_KEYS.private_key_pem,
        "D1_NOTIFY_CLIENT_ID": NOTIFY_CLIENT_ID,
        "D1_NOTIFY_CLIENT_SECRET": NOTIFY_CLIENT_SECRET,
        "D1BOT_WORKSPACE_ID": WORKSPACE,
        "D1BOT_CHANNEL_RATE_PER_SECOND": "50",
        # LocalSlack enforces no rate limit unless a test asks it to: the app's own workspace
        # budget (240 a minute by default) would only make these tests wait.
        "D1BOT_WORKSPACE_RATE_PER_MINUTE": "60000",
        "D1BOT_BURST_THRESHOLD": "10000",
        # `bot_stack` migrates the database before any process starts; migrating again at each
        # start is a child Python process (about a second) that proves nothing here (serve's
        # own migration of a new database is exercised by tests/intake/test_intake_crash.py).
        "MIGRATE_ON_START": "false",
    }
    env.update(overrides)
    return env


def start_bot(env: dict[str, str], log: Path) -> BotProcess:
    """Start `d1bot serve` with exactly `env` (output appended to `log`)."""
    binary = Path(sys.executable).parent / "d1bot"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            start_new_session=True,
        )
    return BotProcess(proc=proc, port=int(env["PORT"]), log=log)


@dataclass
class BotStack:
    """LocalSlack and a D1 sandbox in the test's loop, a database, and bot processes."""

    tmp: Path
    database_url: str
    engine: Engine
    slack: LocalSlack
    sandbox: Sandbox
    d1_url: str
    bots: list[BotProcess] = field(default_factory=list)

    def env(self, port: int, **overrides: str) -> dict[str, str]:
        return bot_env(
            database_url=self.database_url,
            port=port,
            slack_url=self.slack.base_url,
            d1_url=self.d1_url,
            **overrides,
        )

    async def start_bot(
        self, *, port: int | None = None, ready: bool = True, **overrides: str
    ) -> BotProcess:
        port = port or free_port()
        bot = start_bot(self.env(port, **overrides), self.tmp / f"serve-{port}.log")
        self.bots.append(bot)
        if ready:
            await bot.wait_ready()
        return bot

    def point_d1_at(self, bot: BotProcess) -> None:
        """Make the sandbox deliver notifications to `bot` (Basic credentials, then Bearer)."""
        self.sandbox.set_callback(
            f"{bot.url}{notifications_path()}",
            client_id=NOTIFY_CLIENT_ID,
            client_secret=NOTIFY_CLIENT_SECRET,
        )

    def subscribe(self, channel: str, card_id: str, *, filter: str = "all") -> None:
        subscriptions.subscribe(
            self.engine,
            workspace_id=WORKSPACE,
            channel_id=channel,
            card_id=card_id,
            created_by="U1",
            filter=filter,
        )

    async def command(self, bot: BotProcess, text: str, http: httpx.AsyncClient) -> httpx.Response:
        """A signed `/card` request to `bot`, its reply going to LocalSlack's response_url."""
        body = command_body(text, response_url=self.slack.response_url(), team_id=WORKSPACE)
        return await post_signed(http, f"{bot.url}/slack/events", body)

    def outbox_settled(self) -> bool:
        """Nothing owed to Slack: no pending outbox row and no fan-out marker still to expand
        (read in one statement, so an expansion committing meanwhile cannot hide both)."""
        return (
            self.scalar(
                "SELECT (SELECT count(*) FROM outbox WHERE state NOT IN ('sent', 'dead'))"
                " + (SELECT count(*) FROM fanouts)"
            )
            == 0
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]


@contextlib.asynccontextmanager
async def bot_stack(
    tmp: Path, *, database_url: str | None = None, **sandbox_overrides: Any
) -> AsyncIterator[BotStack]:
    """A migrated database, LocalSlack, a served sandbox; every bot process stopped at exit
    (their logs are printed when the test failed, by pytest's captured output)."""
    url = database_url or f"sqlite:///{tmp / 'd1bot.db'}"
    engine = make_engine(url)
    upgrade(engine)
    options: dict[str, Any] = {
        "delivery_max_attempts": 10_000,
        "delivery_backoff_seconds": 0.02,
        "delivery_backoff_max_seconds": 0.2,
    }
    options.update(sandbox_overrides)
    sandbox = Sandbox(sandbox_config(**options))
    stack: BotStack | None = None
    try:
        async with LocalSlack() as slack, serve_asgi(sandbox.app) as d1_url:
            stack = BotStack(tmp, url, engine, slack, sandbox, d1_url)
            try:
                yield stack
            finally:
                for bot in stack.bots:  # off the loop: LocalSlack must answer while they stop
                    await asyncio.to_thread(bot.stop)
                for log in dict.fromkeys(bot.log for bot in stack.bots):
                    print(f"--- {log.name}\n{_tail(log)}")
    finally:
        engine.dispose()


__all__ = [
    "WORKSPACE",
    "BotProcess",
    "BotStack",
    "bot_env",
    "bot_stack",
    "notifications_path",
    "start_bot",
]
